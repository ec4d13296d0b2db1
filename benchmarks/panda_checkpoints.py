"""What panda mode's checkpoint after every epoch costs: training with and without it, side by
side in one run, on one BLAS thread (digits, hidden [128, 64], Adam, batch norm, dropout 0.9,
batch 64). Each timing is the best of `--repeats` runs, since the machine may be shared. Then
how exact a continued run is: 3 + 3 epochs through the files vs 6, max |Δθ| per dtype.

    python benchmarks/panda_checkpoints.py [--epochs 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from model import TrainConfig, get_backend, train
from model.checkpoint import Checkpoint
from sweeper.data.builtin import digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threadpool_limits(1)
    X, y = digits()
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    data = (X[:1400].T, y[:1400], X[1400:].T, y[1400:], 10)
    config = TrainConfig(
        hidden_units=[128, 64], epochs=args.epochs, keep_prob=0.9, batch_norm=True, batch_size=64
    )
    with tempfile.TemporaryDirectory() as folder:

        def keep(checkpoint: Checkpoint, metrics: dict[str, float]) -> None:
            checkpoint.save(Path(folder) / f"epoch-{checkpoint.progress.epoch}")

        def seconds(**kwargs: object) -> float:
            start = time.perf_counter()
            train(config, *data, **kwargs)
            return time.perf_counter() - start

        seconds()  # warm-up: BLAS and the workspaces' first allocation
        runs = [(seconds(), seconds(on_checkpoint=keep)) for _ in range(args.repeats)]  # alternated
        plain, kept = (min(column) for column in zip(*runs, strict=True))
        size = sum(f.stat().st_size for f in (Path(folder) / "epoch-1").iterdir())
    per_epoch = 1000 * (kept - plain) / args.epochs
    print(
        f"{args.epochs} epochs: {plain:.3f} s without checkpoints, {kept:.3f} s with one per "
        f"epoch ({kept / plain:.3f}×; {per_epoch:.1f} ms and {size / 1024:.0f} KiB per checkpoint)"
    )
    with tempfile.TemporaryDirectory() as folder:
        for dtype in ("float32", "float64"):
            backend = get_backend(dtype=dtype)
            six, three = (dataclasses.replace(config, epochs=n) for n in (6, 3))
            whole = train(six, *data, backend=backend).network.theta
            train(three, *data, backend=backend).checkpoint().save(Path(folder) / dtype)
            day1 = Checkpoint.load(Path(folder) / dtype)
            continued = train(six, *data, backend=backend, resume=day1).network.theta
            print(f"{dtype}: 3 + 3 epochs vs 6, max |Δθ| = {abs(continued - whole).max():.3g}")


if __name__ == "__main__":
    main()

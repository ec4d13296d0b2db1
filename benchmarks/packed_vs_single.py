"""Packed vs one-by-one training: K small networks on one core, side by side in one run.

For each shape and K, the same K configurations (one architecture; learning rate and seed differ
per network, as in a sweep) are trained one after another with `model.train` and together with
`model.stacked.train_members`, on one BLAS thread, and the throughput of each is printed as
models·epochs per second with their ratio. The data are Gaussian features with random labels
(speed does not depend on what is learned): 1024 training and 256 dev examples. Each timing is
the best of `--repeats` runs, since the machine may be shared.

    python benchmarks/packed_vs_single.py [--ks 1 4 16 64] [--epochs 2] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from model import TrainConfig, train
from model.stacked import train_members

# (name, n_x, hidden widths, classes, batch size): the brief's shape first, then the issue's
SHAPES = [
    ("64-32-32-10 b64", 64, [32, 32], 10, 64),
    ("64-32-10 b32", 64, [32], 10, 32),
    ("64-128-128-10 b64", 64, [128, 128], 10, 64),
    ("2-16-16-1 b32", 2, [16, 16], 2, 32),
    ("784-256-10 b128", 784, [256], 10, 128),
]
M_TRAIN, M_DEV = 1024, 256


@dataclass
class Row:
    shape: str
    K: int
    single_models_epochs_per_s: float
    packed_models_epochs_per_s: float
    ratio: float


def configs(K: int, hidden: list[int], batch: int, epochs: int) -> list[TrainConfig]:
    rates = np.geomspace(1e-4, 1e-1, K)
    return [
        TrainConfig(
            hidden_units=hidden, batch_size=batch, epochs=epochs, learning_rate=float(a), seed=k
        )
        for k, a in enumerate(rates)
    ]


def best_time(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(shape: tuple, K: int, epochs: int, repeats: int) -> Row:
    name, n_x, hidden, classes, batch = shape
    rng = np.random.default_rng(0)
    X = rng.standard_normal((M_TRAIN + M_DEV, n_x)).astype(np.float32)
    y = rng.integers(0, classes, M_TRAIN + M_DEV)
    data = (X[:M_TRAIN].T, y[:M_TRAIN], X[M_TRAIN:].T, y[M_TRAIN:], classes)
    pack = configs(K, hidden, batch, epochs)
    single = best_time(lambda: [train(config, *data) for config in pack], repeats)
    packed = best_time(lambda: train_members(pack, *data), repeats)
    work = K * epochs
    return Row(name, K, work / single, work / packed, single / packed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    rows = []
    with threadpool_limits(limits=1):  # one core, as one trial task has
        measure(SHAPES[0], 1, 1, 1)  # warm-up: imports, first allocations
        print(f"{'shape':<20}{'K':>4}{'single m·e/s':>15}{'packed m·e/s':>15}{'ratio':>8}")
        for shape in SHAPES:
            for K in args.ks:
                row = measure(shape, K, args.epochs, args.repeats)
                rows.append(row)
                print(
                    f"{row.shape:<20}{row.K:>4}{row.single_models_epochs_per_s:>15.1f}"
                    f"{row.packed_models_epochs_per_s:>15.1f}{row.ratio:>7.2f}×",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as file:
            json.dump([asdict(row) for row in rows], file, indent=2)


if __name__ == "__main__":
    main()

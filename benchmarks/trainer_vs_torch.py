"""Trainer speed: our NumPy MLP vs PyTorch on CPU, one thread each, same run.

Same MLP, data, batch size, Adam and float32 on both sides. Prints samples/s and the ratio per
shape, the machine's single-thread float32 GEMM GFLOP/s, and the fraction of that peak the large
shape reaches (training FLOPs: 2·n_l·n_{l−1} per example for each of forward, dW and dA_prev).

    python benchmarks/trainer_vs_torch.py [--json FILE] [--epochs N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from model import TrainConfig, train

try:
    import torch
except ImportError:  # pragma: no cover - the bench extra installs it
    raise SystemExit("PyTorch is needed: pip install -e '.[bench]'") from None


@dataclass(frozen=True)
class Shape:
    name: str
    dims: tuple[int, ...]
    batch_size: int
    examples: int


SHAPES = [
    Shape("40-256-256-10/b128", (40, 256, 256, 10), 128, 16_384),
    Shape("40-64-64-10/b32", (40, 64, 64, 10), 32, 8_192),
    Shape("784-512-512-10/b256", (784, 512, 512, 10), 256, 8_192),
    Shape("64-128-128-128-10/b64", (64, 128, 128, 128, 10), 64, 8_192),
]
LARGE = "784-512-512-10/b256"


def make_data(shape: Shape, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((shape.examples, shape.dims[0]), dtype=np.float32)
    y = rng.integers(0, shape.dims[-1], shape.examples)
    return X, y


def time_ours(shape: Shape, X: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Samples/s of our trainer (the whole epoch: shuffle, forward, cost, backward, Adam)."""
    config = TrainConfig(
        learning_rate=1e-3,
        optimizer="adam",
        num_layers=len(shape.dims) - 2,
        hidden_units=shape.dims[1],
        batch_size=shape.batch_size,
        epochs=epochs,
    )
    # X.T: the notes' (n_x, m) over data stored one example per row, as both sides get it
    train(TrainConfig(**{**config.to_dict(), "epochs": 1}), X.T, y, n_classes=shape.dims[-1])
    start = time.perf_counter()
    train(config, X.T, y, n_classes=shape.dims[-1])
    return epochs * shape.examples / (time.perf_counter() - start)


def time_torch(shape: Shape, X: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Samples/s of the same loop in PyTorch: shuffle, forward, loss, backward, Adam step."""
    torch.manual_seed(0)
    modules: list[torch.nn.Module] = []
    for n_in, n_out in itertools.pairwise(shape.dims[:-1]):
        modules += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*modules, torch.nn.Linear(shape.dims[-2], shape.dims[-1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def epoch() -> None:
        perm = torch.randperm(shape.examples)
        Xs, ys = Xt[perm], yt[perm]
        total = 0.0
        for t in range(0, shape.examples, shape.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xs[t : t + shape.batch_size]), ys[t : t + shape.batch_size])
            loss.backward()
            optimizer.step()
            total += loss.item()

    epoch()
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    return epochs * shape.examples / (time.perf_counter() - start)


def gemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Best single-thread float32 GEMM rate of this machine's BLAS (numpy's). Taken before and
    after the shapes (the best of both counts): a peak measured in a slow moment of a shared
    machine would flatter every fraction of it."""
    rng = np.random.default_rng(0)
    A, B = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    C = np.empty((n, n), dtype=np.float32)
    np.matmul(A, B, out=C)
    best = min(_timed(lambda: np.matmul(A, B, out=C)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def training_flops_per_example(dims: tuple[int, ...]) -> int:
    """Forward, dW and dA_prev GEMMs; the input layer needs no dA_prev."""
    weights = [n_out * n_in for n_in, n_out in itertools.pairwise(dims)]
    return 2 * (3 * sum(weights) - weights[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with threadpool_limits(limits=1):
        peak = gemm_gflops()
        print(f"single-thread float32 GEMM: {peak:.1f} GFLOP/s")
        print(f"{'shape':26} {'ours/s':>10} {'torch/s':>10} {'ratio':>7}")
        for shape in SHAPES:
            X, y = make_data(shape)
            # alternated, so a slow spell of a shared machine falls on both sides alike
            runs = [
                (time_ours(shape, X, y, args.epochs), time_torch(shape, X, y, args.epochs))
                for _ in range(args.repeats)
            ]
            ours, ref = (max(side) for side in zip(*runs, strict=True))
            rows.append({"name": shape.name, "ours": ours, "torch": ref, "ratio": ours / ref})
            print(f"{shape.name:26} {ours:10.0f} {ref:10.0f} {ours / ref:7.2f}")
        peak = max(peak, gemm_gflops())
        print(f"single-thread float32 GEMM, best of before and after: {peak:.1f} GFLOP/s")
    large = next(s for s in SHAPES if s.name == LARGE)
    large_row = next(r for r in rows if r["name"] == LARGE)
    gflops_per_sample = training_flops_per_example(large.dims) / 1e9
    fraction, torch_fraction = (large_row[k] * gflops_per_sample / peak for k in ("ours", "torch"))
    print(f"large shape: ours {fraction:.0%} of GEMM peak, torch {torch_fraction:.0%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "shapes": rows,
                    "gemm_gflops": peak,
                    "large_fraction_of_peak": fraction,
                    "torch_large_fraction_of_peak": torch_fraction,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()

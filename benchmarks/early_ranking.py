"""How well a network's first epochs rank its best: what decides where a pruner may judge.

For each data set of `search_quality`, `--configs` random configurations of its space run all
`--epochs` epochs (the same trainer, one BLAS thread). For each early epoch e the script prints
the Spearman rank correlation between the best dev accuracy up to epoch e and the best over all
epochs, and how many of the configurations in the top quarter by the latter a successive-halving
rung at e (keeping the top third) would have kept. A low correlation at e means a rung at e
prunes by luck; the recipe's first rung at a fifth of the epochs comes from the spirals' row.

    python benchmarks/early_ranking.py [--configs 96] [--epochs 15] [--at 1 3 5 8]
                                       [--datasets ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import optuna
from scipy.stats import spearmanr
from search_quality import DATASETS, OBJECTIVE, SPACE, load, run_args_fixed, threadpool_limits_one

from sweeper.data.datasets import Dataset
from sweeper.run.fit import fit, kept_network
from sweeper.spec import scales


def curves(data: Dataset, space: scales.Space, configs: int, epochs: int) -> np.ndarray:
    """(n, epochs): the dev accuracy per epoch of each of `configs` random configurations that
    trained every epoch (a diverged one has no best to rank)."""
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    rows = []
    for _ in range(configs):
        values = scales.sample(study.ask(), space)
        curve: list[float] = []

        def record(epoch: int, metrics: dict[str, float], curve: list[float] = curve) -> bool:
            curve.append(metrics.get(OBJECTIVE.metric, np.nan))
            return False  # never stop: every configuration runs all epochs

        fit(run_args_fixed(epochs, 0) | values, data, record, "numpy", kept_network(OBJECTIVE))
        if len(curve) == epochs and np.isfinite(curve).all():
            rows.append(curve)
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--at", type=int, nargs="+", default=[1, 3, 5, 8])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = {k: scales.Param.model_validate(v) for k, v in SPACE.items()}
    print(f"{'dataset':16} {'n':>3} epoch  Spearman ρ  top quarter kept by a rung (top third)")
    with tempfile.TemporaryDirectory() as folder, threadpool_limits_one():
        for dataset in args.datasets:
            data, _ = load(dataset, Path(folder))
            accuracy = curves(data, space, args.configs, args.epochs)
            n, best = len(accuracy), accuracy.max(axis=1)
            top = best >= np.quantile(best, 0.75)
            for epoch in args.at:
                early = accuracy[:, :epoch].max(axis=1)
                kept = early >= np.quantile(early, 2 / 3)
                rho = spearmanr(early, best).statistic
                print(f"{dataset:16} {n:3} {epoch:5}  {rho:10.2f}  {top[kept].sum()}/{top.sum()}")


if __name__ == "__main__":
    main()

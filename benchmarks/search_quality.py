"""Search quality: does pruning pay, and does coarse-to-fine beat random at the same budget?

For each dataset and seed, the same trial budget and epochs run as
  (a) random         one random stage, no pruning
  (b) random+prune   one random stage, --pruner (ASHA or Hyperband, first rung at --grace
                     epochs, η = 3)
  (c) coarse-to-fine a random stage (60% of the budget, pruned) then a TPE stage zoomed on its
                     top third (40%, pruned), widened by 10% of each range, warm-started
through the real sweeper (Ray tasks, StudyServer, Optuna journal, MLflow). Prints epochs used,
wall time, best dev accuracy and the test accuracy of that trial, per variant (mean of seeds).

The flower is the course's generator with --flower-size points (2000: a 400-example dev set,
0.25 points an example; the course's 400 points leave 80, too coarse to measure 0.5 points).

    python benchmarks/search_quality.py [--trials 40] [--epochs 20] [--seeds 3] [--pack 1]
                                        [--json FILE]

With `--pack 16` or `--pack auto` the same runs go in packed trials (issue 20): compare the
best dev accuracy with a `--pack 1` run of the same seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from sweeper.data.builtin import flower
from sweeper.results.summary import load_view
from sweeper.run import sweep
from sweeper.run.dispatch import start_ray

DATASETS = ("digits", "flower", "moons")
SPACE = {
    "learning_rate": {"scale": "log", "low": 1e-4, "high": 1.0},
    "beta": {"scale": "one_minus_log", "low": 0.5, "high": 0.999},
    "num_layers": {"scale": "int", "low": 1, "high": 3},
    "hidden_units": {"scale": "pow2", "low": 4, "high": 128},
    "batch_size": {"scale": "pow2", "low": 16, "high": 256},
}


def stages(variant: str, trials: int, seed: int, grace: int, pruner: str) -> list[dict[str, Any]]:
    pruned = {"type": pruner, "min_epochs": grace, "reduction_factor": 3}
    if variant == "random":
        return [{"name": "all", "trials": trials, "sampler": "random", "seed": seed}]
    if variant == "random+prune":
        return [
            {"name": "all", "trials": trials, "sampler": "random", "pruner": pruned, "seed": seed}
        ]
    coarse = round(0.6 * trials)
    return [
        {"name": "coarse", "trials": coarse, "sampler": "random", "pruner": pruned, "seed": seed},
        {
            "name": "fine",
            "trials": trials - coarse,
            "sampler": "tpe",
            "pruner": pruned,
            "zoom": {"top": 0.34, "margin": 0.1},
            "seed": seed,
        },
    ]


def data_sources(root: Path, flower_size: int) -> dict[str, dict[str, str]]:
    """Each dataset's `data` source (and target): the flower written at its benchmark size."""
    X, y = flower(m=flower_size)
    path = root / f"flower-{flower_size}.parquet"
    pq.write_table(pa.table({"x1": X[:, 0], "x2": X[:, 1], "y": y}), path)
    return {
        name: {"source": str(path), "target": "y"}
        if name == "flower"
        else {"source": f"builtin:{name}"}
        for name in DATASETS
    }


def run_one(
    root: Path, dataset: str, data: dict[str, str], variant: str, seed: int, args: Namespace
) -> dict[str, Any]:
    name = f"{dataset}-{variant.replace('+', '-')}-{seed}"
    spec = {
        "name": name,
        "dir": str(root / name),
        "data": {**data, "split": {"dev": 0.2, "test": 0.2, "seed": 0}},
        "train": {"epochs": args.epochs, "optimizer": "adam", "seed": seed},
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": SPACE,
        "stages": stages(variant, args.trials, seed, args.grace, args.pruner),
        "resources": {"pack": args.pack},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    plan = sweep.prepare(path)
    started = time.perf_counter()
    sweep.run(plan)
    wall = time.perf_counter() - started
    view = load_view(plan.folder)
    best = view.ranked()[0]
    return {
        "dataset": dataset,
        "variant": variant,
        "seed": seed,
        "epochs_used": sum(len(r.history) for r in view.rows),
        "wall_s": wall,
        "best_dev": best.value,
        "test_of_best": best.metrics["test_accuracy"],
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for variant in dict.fromkeys(r["variant"] for r in runs):
            mine = [r for r in runs if r["dataset"] == dataset and r["variant"] == variant]
            table.append(
                {"dataset": dataset, "variant": variant}
                | {
                    k: statistics.mean(r[k] for r in mine)
                    for k in ("epochs_used", "wall_s", "best_dev", "test_of_best")
                }
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--grace", type=int, default=2, help="the pruner's first rung, in epochs")
    parser.add_argument("--pruner", choices=("asha", "hyperband"), default="asha")
    parser.add_argument("--flower-size", type=int, default=2000)
    parser.add_argument(
        "--pack", type=lambda v: v if v == "auto" else int(v), default=1, help="resources.pack"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    start_ray(None)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        sources = data_sources(root, args.flower_size)
        for dataset in args.datasets:
            for seed in range(args.seeds):
                for variant in ("random", "random+prune", "coarse-to-fine"):
                    runs.append(run_one(root, dataset, sources[dataset], variant, seed, args))
    table = summarize(runs)
    header = f"{'dataset':8} {'variant':15} {'epochs':>7} {'wall s':>7} {'best dev':>9} {'test':>7}"
    print(header)
    for row in table:
        print(
            f"{row['dataset']:8} {row['variant']:15} {row['epochs_used']:7.0f} "
            f"{row['wall_s']:7.1f} {row['best_dev']:9.4f} {row['test_of_best']:7.4f}"
        )
    for dataset in dict.fromkeys(r["dataset"] for r in table):
        rows = {r["variant"]: r for r in table if r["dataset"] == dataset}
        share = rows["random+prune"]["epochs_used"] / rows["random"]["epochs_used"]
        print(
            f"{dataset}: pruning uses {share:.0%} of the epochs, best dev "
            f"{100 * (rows['random+prune']['best_dev'] - rows['random']['best_dev']):+.2f} points; "
            f"coarse-to-fine vs random+prune "
            f"{100 * (rows['coarse-to-fine']['best_dev'] - rows['random+prune']['best_dev']):+.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "table": table}, indent=2))


if __name__ == "__main__":
    main()

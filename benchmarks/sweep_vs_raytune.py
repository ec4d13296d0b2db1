"""A real sweep, the sweeper vs Ray Tune: same trainer, space, budget, epochs, pruner, concurrency.

Both train our NumPy networks on scikit-learn's digits with Adam, sampling learning rate (log),
β1 (1 − β on a log scale), hidden layers, units and mini-batch size (powers of two) at random,
with ASHA on the per-epoch dev accuracy. Ray Tune runs Tuner + OptunaSearch(RandomSampler) +
ASHAScheduler + MLflowLoggerCallback; the sweeper runs one random stage with ASHA (and, with
--coarse-to-fine, a random stage then a zoomed TPE stage of the same total budget). Prints wall
time and the best trial's dev and test accuracy for each.

    python benchmarks/sweep_vs_raytune.py [--trials 40] [--epochs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import ray
import yaml
from threadpoolctl import threadpool_limits

from sweeper.data.datasets import load_dataset
from sweeper.results.summary import load_view
from sweeper.run import sweep
from sweeper.run.dispatch import start_ray
from sweeper.run.fit import fit
from sweeper.spec.schema import DataSpec

DATA = {"source": "builtin:digits", "split": {"dev": 0.2, "test": 0.2, "seed": 0}}
SPACE = {
    "learning_rate": {"scale": "log", "low": 1e-4, "high": 1e-1},
    "beta": {"scale": "one_minus_log", "low": 0.8, "high": 0.999},
    "num_layers": {"scale": "int", "low": 1, "high": 3},
    "hidden_units": {"scale": "pow2", "low": 16, "high": 256},
    "batch_size": {"scale": "pow2", "low": 32, "high": 256},
}
GRACE = 2  # ASHA's first rung, in epochs, on both sides


def sweeper_run(folder: Path, trials: int, epochs: int, coarse_to_fine: bool) -> dict[str, Any]:
    asha = {"type": "asha", "min_epochs": GRACE, "reduction_factor": 3}
    stages = [{"name": "random", "trials": trials, "sampler": "random", "pruner": asha}]
    if coarse_to_fine:
        coarse = round(0.6 * trials)
        stages = [
            {"name": "coarse", "trials": coarse, "sampler": "random", "pruner": asha},
            {
                "name": "fine",
                "trials": trials - coarse,
                "sampler": "tpe",
                "pruner": asha,
                "zoom": {"top": 0.25, "margin": 0.05},
            },
        ]
    spec = {
        "name": "vs-tune-c2f" if coarse_to_fine else "vs-tune",
        "dir": str(folder / ("c2f" if coarse_to_fine else "random")),
        "data": DATA,
        "train": {"epochs": epochs, "optimizer": "adam"},
        "space": SPACE,
        "stages": stages,
        "resources": {"concurrency": 2},
    }
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    plan = sweep.prepare(path)
    started = time.perf_counter()
    sweep.run(plan)
    wall = time.perf_counter() - started
    best = load_view(plan.folder).ranked()[0]
    return {
        "wall_s": wall,
        "best_dev": best["value"],
        "test_of_best": best["metrics"]["test_accuracy"],
    }


def raytune_run(folder: Path, trials: int, epochs: int) -> dict[str, Any]:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    dataset = ray.put(load_dataset(DataSpec.model_validate(DATA)))

    def trainable(config: dict[str, Any]) -> None:
        options = {
            "epochs": epochs,
            "optimizer": "adam",
            "learning_rate": config["learning_rate"],
            "beta": 1 - config["one_minus_beta"],
            "num_layers": config["num_layers"],
            "hidden_units": 2 ** config["log2_hidden_units"],
            "batch_size": 2 ** config["log2_batch_size"],
        }

        def report(epoch: int, metrics: dict[str, float]) -> bool:
            if epoch < epochs:
                tune.report(metrics)
            return False

        with threadpool_limits(limits=1):
            tune.report(fit(options, ray.get(dataset), report, "numpy").metrics)

    space = {  # the same scaled coordinates the sweeper samples uniformly
        "learning_rate": tune.loguniform(1e-4, 1e-1),
        "one_minus_beta": tune.loguniform(1e-3, 0.2),
        "num_layers": tune.randint(1, 4),
        "log2_hidden_units": tune.randint(4, 9),
        "log2_batch_size": tune.randint(5, 9),
    }
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="dev_accuracy",
            mode="max",
            num_samples=trials,
            max_concurrent_trials=2,
            search_alg=OptunaSearch(sampler=optuna.samplers.RandomSampler(seed=0)),
            scheduler=ASHAScheduler(max_t=epochs, grace_period=GRACE, reduction_factor=3),
        ),
        run_config=tune.RunConfig(
            storage_path=str(folder / "tune"),
            verbose=0,
            callbacks=[
                MLflowLoggerCallback(
                    tracking_uri=f"sqlite:///{folder / 'tune.db'}", experiment_name="vs"
                )
            ],
        ),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    best = results.get_best_result(metric="dev_accuracy", mode="max", scope="last")
    return {
        "wall_s": wall,
        "best_dev": best.metrics["dev_accuracy"],
        "test_of_best": best.metrics.get("test_accuracy", float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    start_ray(None)
    out: dict[str, Any] = {"trials": args.trials, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as folder:
        out["sweeper"] = sweeper_run(Path(folder), args.trials, args.epochs, False)
        out["sweeper_coarse_to_fine"] = sweeper_run(Path(folder), args.trials, args.epochs, True)
        out["raytune"] = raytune_run(Path(folder), args.trials, args.epochs)
    ray.shutdown()
    for name in ("sweeper", "sweeper_coarse_to_fine", "raytune"):
        r = out[name]
        print(
            f"{name:24} wall {r['wall_s']:6.1f} s  best dev {r['best_dev']:.4f}  "
            f"its test {r['test_of_best']:.4f}"
        )
    out["wall_ratio"] = out["sweeper"]["wall_s"] / out["raytune"]["wall_s"]
    print(f"sweeper wall time / Ray Tune's: {out['wall_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

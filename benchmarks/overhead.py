"""Orchestrator overhead: trials that (nearly) train nothing, the sweeper vs Ray Tune, same run.

Sweeper: the full path (Ray tasks, the StudyServer, Optuna journal storage, MLflow on SQLite with
live runs: RUNNING at the start, every epoch's metrics while it trains; kept models on, the
default top 3); each trial trains a 1-unit network on 32 examples for 5 epochs (about a
millisecond of work; `--epochs` for more) and reports every epoch. Ray Tune: Tuner +
OptunaSearch + ASHA + MLflowLoggerCallback (SQLite), a function trainable that reports as many
epochs and trains nothing.
Same N and concurrency. Prints trials/min, ms/trial and the ratio; the driver's memory at 100
trials and at the end; and Optuna `ask()` time at 100 vs 5000 trials in a journal storage.

    python benchmarks/overhead.py [--trials 500] [--concurrency 2] [--epochs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import yaml

from sweeper.run import sweep
from sweeper.run.dispatch import start_ray
from sweeper.search.study import make_storage


def tiny_data(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 2))
    path = folder / "tiny.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "y": (X[:, 0] > 0).astype(int)}), path)
    return path


def sweeper_run(folder: Path, trials: int, concurrency: int, epochs: int) -> dict[str, Any]:
    spec = {
        "name": "overhead",
        "dir": str(folder / "sweep"),
        "data": {
            "source": str(tiny_data(folder)),
            "target": "y",
            "split": {"dev": 0.25, "test": 0.25},
        },
        "train": {"epochs": epochs, "num_layers": 1, "hidden_units": 1, "batch_size": 32},
        "space": {"learning_rate": {"scale": "log", "low": 1e-4, "high": 1e-1}},
        "stages": [
            {"name": "all", "trials": trials, "sampler": "random", "pruner": {"type": "asha"}}
        ],
        "resources": {"concurrency": concurrency},
    }
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(spec))
    plan = sweep.prepare(path)
    driver = psutil.Process()
    memory: dict[str, float] = {}

    def on_progress(progress: Any) -> None:
        done = progress.counts["complete"] + progress.counts["pruned"]
        if done in (100, trials):
            memory[f"rss_mb_at_{done}"] = driver.memory_info().rss / 2**20

    started = time.perf_counter()
    sweep.run(plan, on_progress)
    wall = time.perf_counter() - started
    return {"wall_s": wall, **memory}


def raytune_run(folder: Path, trials: int, concurrency: int, epochs: int) -> dict[str, Any]:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict[str, float]) -> None:
        for epoch in range(epochs):
            tune.report({"dev_accuracy": 0.5 + 0.01 * epoch * config["learning_rate"]})

    tuner = tune.Tuner(
        trainable,
        param_space={"learning_rate": tune.loguniform(1e-4, 1e-1)},
        tune_config=tune.TuneConfig(
            metric="dev_accuracy",
            mode="max",
            num_samples=trials,
            max_concurrent_trials=concurrency,
            search_alg=OptunaSearch(),
            scheduler=ASHAScheduler(max_t=epochs, grace_period=1),
        ),
        run_config=tune.RunConfig(
            storage_path=str(folder / "tune"),
            verbose=0,
            callbacks=[
                MLflowLoggerCallback(
                    tracking_uri=f"sqlite:///{folder / 'tune-mlflow.db'}",
                    experiment_name="overhead",
                )
            ],
        ),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    assert len(results) == trials
    return {"wall_s": wall}


def ask_scaling(folder: Path, total: int = 5000) -> dict[str, float]:
    """Mean ms of ask()+tell() around trial 100 and trial `total`: random sampler, the
    StudyServer's single-writer journal."""
    (folder / "ask").mkdir()
    storage = make_storage(None, folder / "ask", single_writer=True)  # as the StudyServer has it
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    distributions = {"x": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    times = []
    for _ in range(total):
        started = time.perf_counter()
        trial = study.ask(distributions)
        study.tell(trial, trial.params["x"])
        times.append(time.perf_counter() - started)
    return {
        "ask_tell_ms_at_100": 1000 * float(np.mean(times[90:110])),
        f"ask_tell_ms_at_{total}": 1000 * float(np.mean(times[-20:])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="epochs each trial reports")
    parser.add_argument("--skip-raytune", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    start_ray(None)
    out: dict[str, Any] = {
        "trials": args.trials,
        "concurrency": args.concurrency,
        "epochs": args.epochs,
    }
    with tempfile.TemporaryDirectory() as folder:
        ours = sweeper_run(Path(folder), args.trials, args.concurrency, args.epochs)
        out["sweeper"] = ours
        if not args.skip_raytune:
            out["raytune"] = raytune_run(Path(folder), args.trials, args.concurrency, args.epochs)
        out["ask_scaling"] = ask_scaling(Path(folder))
    ray.shutdown()

    for name in ("sweeper", "raytune"):
        if name in out:
            wall = out[name]["wall_s"]
            out[name]["trials_per_min"] = 60 * args.trials / wall
            out[name]["ms_per_trial"] = 1000 * wall / args.trials
            print(
                f"{name:8} {out[name]['trials_per_min']:8.0f} trials/min  "
                f"{out[name]['ms_per_trial']:7.1f} ms/trial"
            )
    if "raytune" in out:
        out["ratio"] = out["sweeper"]["trials_per_min"] / out["raytune"]["trials_per_min"]
        print(f"sweeper / Ray Tune throughput: {out['ratio']:.1f}x")
    memory = {k: round(v, 1) for k, v in ours.items() if k.startswith("rss")}
    print(f"driver RSS (MiB): {memory}")
    print(f"Optuna ask+tell (ms): {out['ask_scaling']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Search quality against the peers: the best model found for the same trials and epochs.

For each data set, budget and seed, the same trainer (model.train through `sweeper.run.fit.fit`,
the best epoch's model kept: `objective.at: best`), search space and epochs run as
  (a) recipe     the plan `budget: {trials: N}` expands to (sweeper.search.recipe), its stages
                 driven through the sweeper's own make_sampler / make_pruner / zoom.next_stage
  (b) tpe+hb     Optuna TPESampler + HyperbandPruner in one stage (a plain Optuna user's setup)
  (c) gp         Optuna GPSampler, no pruning
  thorough       `budget: {trials: N, search: thorough}`'s plan (one unpruned stage of the
                 sweeper's own `sampler: gp`), run as (a) is, with `--methods thorough`
  (d) random     RandomSampler, no pruning
  (e) raytune    Ray Tune + OptunaSearch(TPE) + ASHA driving the same `fit` (--raytune)
(a)-(d) run in this process, one trial at a time, so wall times compare search cost, not
scheduling. With --pack K…, (a) also runs through the real sweeper once per `resources.pack`
value (method `pack=K`), the values back to back for each seed, to show what packing does to the
best model at equal trial count and to the wall time (`--methods` with no name runs only these;
`--fixed-structure`:
depth, width and batch size fixed there (two layers of 64, batch 64), as where `pack: auto`
packs). With --raytune, (e) runs through Ray Tune and (a) again through the real sweeper
(`sweeper.run.sweep`: Ray tasks, StudyServer, Optuna journal, MLflow), both with the same
concurrency, for the wall-time comparison.

The best model of (a)-(d) is the best COMPLETE trial's (a pruned trial keeps no model; one that a
stage's `patience` ended is complete and keeps its own); of (e), Ray Tune's best result over
every reported epoch (scope "all": its most generous reading), its test accuracy that of the
trial's best epoch (known where the trial ran to the end). Epochs count what each trial trained.
Data sets are generated in code, a few thousand examples each; three are hard (the best MLP is
far from 100%): 20 classes with 20% label noise, five interleaved spirals, and 200 features of
which 40 are weakly informative.

    python benchmarks/search_quality.py [--budgets 24 64] [--seeds 5] [--epochs 15]
        [--datasets ...] [--methods recipe tpe+hb gp random thorough] [--raytune] [--pack 1 auto]
        [--json FILE] [--figure FILE.png]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import make_classification

from sweeper.data.builtin import digits, flower, moons
from sweeper.data.datasets import Dataset, load_dataset
from sweeper.records import decide
from sweeper.run.fit import fit, kept_network
from sweeper.search.patience import Patience, stops_now
from sweeper.search.recipe import recipe
from sweeper.search.study import make_pruner, make_sampler
from sweeper.search.zoom import next_stage
from sweeper.spec import scales
from sweeper.spec.schema import DataSpec, Objective, Split
from sweeper.spec.stages import Stage

SPACE = {
    "learning_rate": {"scale": "log", "low": 1e-4, "high": 1.0},
    "beta": {"scale": "one_minus_log", "low": 0.5, "high": 0.999},
    "num_layers": {"scale": "int", "low": 1, "high": 3},
    "hidden_units": {"scale": "pow2", "low": 8, "high": 128},
    "batch_size": {"scale": "pow2", "low": 16, "high": 256},
    "l2": {"scale": "log", "low": 1e-3, "high": 10.0},
}
OBJECTIVE = Objective(metric="dev_accuracy", direction="maximize", at="best")


def spirals(arms: int = 5, m: int = 3000, noise: float = 0.3, seed: int = 0):
    """`arms` interleaved spirals, two turns each: a 2-d problem whose boundary needs capacity."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, arms, m)
    r = rng.uniform(0.2, 4 * np.pi, m)
    angle = r + 2 * np.pi * y / arms
    X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    return X + noise * rng.standard_normal(X.shape), y


def noisy_classes(seed: int = 0):
    """20 classes, 15 informative of 30 features, 20% of labels flipped at random."""
    return make_classification(
        n_samples=3000, n_features=30, n_informative=15, n_redundant=5, n_classes=20,
        n_clusters_per_class=1, flip_y=0.2, class_sep=1.5, random_state=seed,
    )  # fmt: skip


def wide_weak(seed: int = 0):
    """200 features, 40 of them weakly informative (class_sep 0.5), 4 classes."""
    return make_classification(
        n_samples=2500, n_features=200, n_informative=40, n_redundant=0, n_classes=4,
        class_sep=0.5, flip_y=0.02, random_state=seed,
    )  # fmt: skip


DATASETS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": digits,
    "moons": lambda: moons(m=2000),
    "flower": lambda: flower(m=2000),
    "classes20-noisy": noisy_classes,  # hard
    "spirals5": spirals,  # hard
    "wide-weak": wide_weak,  # hard
}
HARD = ("classes20-noisy", "spirals5", "wide-weak")


def load(name: str, root: Path) -> tuple[Dataset, dict[str, Any]]:
    """The data set split 60/20/20 and standardized as the sweeper does, and its `data` spec."""
    X, y = DATASETS[name]()
    path = root / f"{name}.parquet"
    columns = {f"x{i}": X[:, i].astype(np.float32) for i in range(X.shape[1])}
    pq.write_table(pa.table(columns | {"y": np.asarray(y)}), path)
    data = DataSpec(source=str(path), target="y", split=Split(dev=0.2, test=0.2, seed=0))
    return load_dataset(data), data.model_dump()


@dataclass
class Trial:
    """What a search run records per trial, in order."""

    seconds: float  # since the search started, at the trial's end
    epochs: int
    complete: bool
    dev: float | None  # its kept model's dev accuracy (COMPLETE only)
    test: float | None


@dataclass
class Run:
    dataset: str
    method: str
    budget: int
    seed: int
    trials: list[Trial] = field(default_factory=list)

    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.complete]
        return max(done, key=lambda t: t.dev) if done else None

    def summary(self) -> dict[str, Any]:
        best = self.best()
        return {
            "dataset": self.dataset,
            "method": self.method,
            "budget": self.budget,
            "seed": self.seed,
            "best_dev": best.dev if best else math.nan,
            "test_of_best": best.test if best else math.nan,
            "epochs_used": sum(t.epochs for t in self.trials),
            "wall_s": self.trials[-1].seconds if self.trials else 0.0,
        }


def run_stage(
    study: optuna.Study,
    space: scales.Space,
    n: int,
    fixed: dict[str, Any],
    data: Dataset,
    run: Run,
    patience: int | None = None,
) -> None:
    """`n` trials of one study, one at a time, as the StudyServer would record them (a trial
    that `patience` epochs without improvement stopped is COMPLETE, see `StudyServer.report`)."""
    started = time.perf_counter() - (run.trials[-1].seconds if run.trials else 0.0)
    for _ in range(n):
        trial = study.ask()
        values = scales.sample(trial, space)
        stall = Patience(patience, maximize=True) if patience is not None else None

        def report(
            epoch: int,
            metrics: dict[str, float],
            trial: optuna.Trial = trial,
            stall: Patience | None = stall,
        ) -> bool:
            value = metrics.get(OBJECTIVE.metric, math.nan)
            return stops_now(trial, epoch, value, stall, manual=False)  # as StudyServer.report

        result = fit(fixed | values, data, report, "numpy", kept_network(OBJECTIVE))
        verdict = decide(result, OBJECTIVE.metric, trial.user_attrs.get("reason"))
        if verdict.reason is not None:  # as StudyServer.tell tags it (a diverged trial's, for GP)
            trial.set_user_attr("reason", verdict.reason)
        study.tell(trial, verdict.value, state=verdict.state)
        complete = verdict.state == optuna.trial.TrialState.COMPLETE
        run.trials.append(
            Trial(
                time.perf_counter() - started,
                len(result.history),
                complete,
                verdict.value if complete else None,
                result.metrics.get("test_accuracy") if complete else None,
            )
        )


def run_recipe(stages: list[Stage], space: scales.Space, epochs: int, run: Run) -> Run:
    """(a): each stage opened as `StudyServer.open_stage` opens it (box, warm start, sampler and
    pruner from the sweeper's own functions), its trials run in this process."""
    seed, fixed, data = run.seed, run_args_fixed(epochs, run.seed), DATA[run.dataset]
    previous: tuple[scales.Space, optuna.Study] | None = None
    for index, stage in enumerate(stages):
        study = optuna.create_study(direction="maximize")
        stage_space = space
        if stage.zoom is not None and previous is not None:
            stage_space, warm = next_stage(
                previous[0], previous[1].get_trials(deepcopy=False), stage.zoom, True, "s", set()
            )
            study.add_trials(warm)
        study.sampler = make_sampler(stage, seed + index, scales.distributions(stage_space))
        study.pruner = make_pruner(stage.pruner, epochs)
        run_stage(study, stage_space, stage.trials, fixed, data, run, stage.patience)
        previous = (stage_space, study)
    return run


def run_args_fixed(epochs: int, seed: int) -> dict[str, Any]:
    return {"epochs": epochs, "optimizer": "adam", "seed": seed}


PEERS: dict[str, Callable[[int, int], tuple[optuna.samplers.BaseSampler, Any]]] = {
    "tpe+hb": lambda seed, epochs: (
        optuna.samplers.TPESampler(seed=seed),
        optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3),
    ),
    "gp": lambda seed, epochs: (optuna.samplers.GPSampler(seed=seed), optuna.pruners.NopPruner()),
    "random": lambda seed, epochs: (
        optuna.samplers.RandomSampler(seed=seed),
        optuna.pruners.NopPruner(),
    ),
}
DATA: dict[str, Dataset] = {}
BUDGET_PLANS = {"recipe": "frugal", "thorough": "thorough"}  # method → `budget.search`


def run_method(method: str, space: scales.Space, budget: int, epochs: int, seed: int, dataset: str):
    run = Run(dataset, method, budget, seed)
    if method in BUDGET_PLANS:
        return run_recipe(recipe(budget, epochs, search=BUDGET_PLANS[method]), space, epochs, run)
    sampler, pruner = PEERS[method](seed, epochs)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    run_stage(study, space, budget, run_args_fixed(epochs, seed), DATA[dataset], run)
    return run


def raytune_run(dataset: str, data: dict[str, Any], budget: int, epochs: int, seed: int) -> Run:
    """(e): Ray Tune + OptunaSearch(TPE) + ASHA (grace 1 epoch, η = 3) over the same space in
    the same scaled coordinates, `concurrency` trials at a time, each training with `fit`."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch
    from threadpoolctl import threadpool_limits

    dataset_ref = ray.put(DATA[dataset])
    space = {k: scales.Param.model_validate(v) for k, v in SPACE.items()}

    def trainable(config: dict[str, Any]) -> None:
        values = {name: p.decode(config[p.optuna_name(name)]) for name, p in space.items()}

        def scored(metrics: dict[str, float]) -> dict[str, float]:
            """A diverged epoch has no dev metrics: Ray Tune needs the objective in every
            report, so it scores as the worst possible."""
            return {OBJECTIVE.metric: -math.inf} | metrics

        def report(epoch: int, metrics: dict[str, float]) -> bool:
            if epoch < epochs:  # the last epoch reports the kept model's metrics, test included
                tune.report(scored(metrics))
            return False

        with threadpool_limits(limits=1):
            options, data = run_args_fixed(epochs, seed) | values, ray.get(dataset_ref)
            result = fit(options, data, report, "numpy", kept_network(OBJECTIVE))
            tune.report(scored(result.metrics))

    tune_space = {}
    for name, p in space.items():
        d = p.distribution()
        key = p.optuna_name(name)
        if isinstance(d, optuna.distributions.IntDistribution):
            tune_space[key] = tune.randint(d.low, d.high + 1)
        else:
            tune_space[key] = (tune.loguniform if d.log else tune.uniform)(d.low, d.high)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=tune_space,
        tune_config=tune.TuneConfig(
            metric=OBJECTIVE.metric,
            mode="max",
            num_samples=budget,
            max_concurrent_trials=CONCURRENCY,
            search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed)),
            scheduler=ASHAScheduler(max_t=epochs, grace_period=1, reduction_factor=3),
        ),
        run_config=tune.RunConfig(storage_path=str(ROOT / "tune"), verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    best = results.get_best_result(metric=OBJECTIVE.metric, mode="max", scope="all")
    frame = best.metrics_dataframe  # a stopped trial's rows have no test_accuracy
    row = frame.sort_values([OBJECTIVE.metric, "test_accuracy"], ascending=False).iloc[0]
    epochs_used = sum(len(r.metrics_dataframe) for r in results)
    run = Run(dataset, "raytune", budget, seed)
    run.trials.append(Trial(wall, epochs_used, True, row[OBJECTIVE.metric], row["test_accuracy"]))
    return run


def sweeper_run(
    dataset: str, data: dict[str, Any], budget: int, epochs: int, seed: int, pack: str | None = None
) -> Run:
    """(a) through the real sweeper, from a space.yaml with `budget: {trials: N, seed: S}`
    (wall time vs Ray Tune; with `pack`, that `resources.pack`). The stages' samplers are
    seeded S + their index, as in `run_recipe`, so that one trial at a time the sweep trains
    what `run_recipe` trains."""
    import yaml

    from sweeper.results.summary import load_view
    from sweeper.run import sweep

    fixed = FIXED_STRUCTURE if pack is not None else None
    name = f"{dataset}-{budget}-{seed}-{pack or 'tune'}{'-fixed' if fixed else ''}"
    resources: dict[str, Any] = {"concurrency": CONCURRENCY}
    if pack is not None:
        resources["pack"] = pack if pack == "auto" else int(pack)
    spec = {
        "name": name,
        "dir": str(ROOT / name),
        "data": data,
        "train": run_args_fixed(epochs, seed) | (fixed or {}),
        "objective": OBJECTIVE.model_dump(),
        "space": {k: v for k, v in SPACE.items() if not fixed or k not in STRUCTURE},
        "budget": {"trials": budget, "seed": seed},
        "resources": resources,
    }
    path = ROOT / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    plan = sweep.prepare(path)
    started = time.perf_counter()
    sweep.run(plan)
    wall = time.perf_counter() - started
    view = load_view(plan.folder)
    best = view.ranked()[0]
    run = Run(dataset, f"pack={pack}" if pack else "recipe-sweeper", budget, seed)
    epochs_used = sum(len(r.history) for r in view.rows)
    run.trials.append(Trial(wall, epochs_used, True, best.value, best.metrics["test_accuracy"]))
    return run


ROOT = Path()
CONCURRENCY = 2
STRUCTURE = ("num_layers", "hidden_units", "batch_size")  # the params of SPACE a pack shares
FIXED_STRUCTURE: dict[str, Any] | None = None  # --fixed-structure: their values in `pack=` runs


def table(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard error over seeds, per data set, budget and method."""
    out = []
    keys = dict.fromkeys((s["dataset"], s["budget"], s["method"]) for s in summaries)
    for dataset, budget, method in keys:
        mine = [
            s
            for s in summaries
            if (s["dataset"], s["budget"], s["method"]) == (dataset, budget, method)
        ]
        row = {"dataset": dataset, "budget": budget, "method": method, "seeds": len(mine)}
        for k in ("best_dev", "test_of_best", "epochs_used", "wall_s"):
            values = [s[k] for s in mine]
            row[k] = statistics.mean(values)
            row[k + "_se"] = (
                statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
            )
        out.append(row)
    return out


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's bars, each line saying whether it holds and by how much."""
    lines = []
    for budget in dict.fromkeys(r["budget"] for r in rows):
        at = {(r["dataset"], r["method"]): r for r in rows if r["budget"] == budget}
        datasets = list(dict.fromkeys(d for d, _ in at))
        gains = []
        for d in datasets:
            a = at.get((d, "recipe"))
            peers = [at[(d, m)] for m in PEERS if (d, m) in at]
            if a is None or not peers:
                continue
            top = max(peers, key=lambda r: r["best_dev"])
            # one standard error: the recipe's own (strict), and that of the difference
            own = a["best_dev_se"]
            diff = math.hypot(a["best_dev_se"], top["best_dev_se"])
            gap = a["best_dev"] - top["best_dev"]
            lines.append(
                f"{budget:3} {d:16} recipe {a['best_dev']:.4f} vs best peer {top['method']} "
                f"{top['best_dev']:.4f}: {100 * gap:+.2f} points; within 1 s.e. of the recipe "
                f"({100 * own:.2f}): {_ok(gap >= -own - 1e-9)}, of the difference "
                f"({100 * diff:.2f}): {_ok(gap >= -diff - 1e-9)}"
            )
            if (d, "tpe+hb") in at:
                gains.append(a["best_dev"] - at[(d, "tpe+hb")]["best_dev"])
            if (d, "random") in at:
                share = a["epochs_used"] / at[(d, "random")]["epochs_used"]
                lines.append(f"    epochs vs random: {share:.0%} ({_ok(share <= 0.5)})")
        if gains:
            mean = statistics.mean(gains)
            lines.append(
                f"{budget:3} mean over data sets, recipe − tpe+hb: {100 * mean:+.2f} points "
                f"({_ok(mean > 0)})"
            )
    for budget in dict.fromkeys(r["budget"] for r in rows):
        at = {(r["dataset"], r["method"]): r for r in rows if r["budget"] == budget}
        for d in dict.fromkeys(d for d, _ in at):
            a, e = at.get((d, "recipe-sweeper")), at.get((d, "raytune"))
            if a and e:
                ratio = a["wall_s"] / e["wall_s"]
                ok = ratio <= 1 / 3 and a["best_dev"] >= e["best_dev"]
                lines.append(
                    f"{budget:3} {d:16} sweeper {a['wall_s']:.1f} s, best {a['best_dev']:.4f}; "
                    f"Ray Tune {e['wall_s']:.1f} s, best {e['best_dev']:.4f}: wall ratio "
                    f"{ratio:.2f} ({_ok(ok)})"
                )
    return lines


def pack_lines(summaries: list[dict[str, Any]]) -> list[str]:
    """Each `pack=K` run against `pack=1` of the same data set, budget and seed: the best dev
    difference (mean ± s.e. over seeds, paired) and the wall-time ratio (pack 1 ÷ pack K)."""
    lines = []
    alone = {
        (s["dataset"], s["budget"], s["seed"]): s for s in summaries if s["method"] == "pack=1"
    }
    packed = [s for s in summaries if s["method"].startswith("pack=") and s["method"] != "pack=1"]
    for key in dict.fromkeys((s["dataset"], s["budget"], s["method"]) for s in packed):
        pairs = [
            (s, alone[(s["dataset"], s["budget"], s["seed"])])
            for s in packed
            if (s["dataset"], s["budget"], s["method"]) == key
            and (s["dataset"], s["budget"], s["seed"]) in alone
        ]
        if not pairs:
            continue
        gaps = [p["best_dev"] - a["best_dev"] for p, a in pairs]
        speeds = [a["wall_s"] / p["wall_s"] for p, a in pairs]
        se = statistics.stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else 0.0
        dataset, budget, method = key
        lines.append(
            f"{budget:3} {dataset:16} {method} − pack=1, best dev: "
            f"{100 * statistics.mean(gaps):+.2f} ± {100 * se:.2f} points ({len(pairs)} seeds); "
            f"wall ×{statistics.mean(speeds):.2f} (per seed "
            f"{', '.join(f'{x:.2f}' for x in speeds)})"
        )
    return lines


def _ok(met: bool) -> str:
    return "ok" if met else "NOT MET"


def figure(runs: list[Run], path: Path) -> None:
    """Best-so-far dev accuracy against wall time per method (mean over seeds, drawn once every
    seed has a model), one panel per data set, at the largest budget run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = max(r.budget for r in runs)
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    columns = min(3, len(datasets))
    rows = math.ceil(len(datasets) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(datasets) :]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        for method in dict.fromkeys(r.method for r in runs):
            mine = [  # runs recorded trial by trial (not Ray Tune's or a merged summary)
                r
                for r in runs
                if (r.dataset, r.method, r.budget) == (dataset, method, budget)
                and len(r.trials) == budget
            ]
            if not mine:
                continue
            end = statistics.mean(r.trials[-1].seconds for r in mine)
            grid = np.linspace(0, end, 50)
            curves = [best_so_far(r, grid) for r in mine]
            ax.plot(grid, np.mean(curves, axis=0), label=method)  # from when every seed has one
        ax.set_title(f"{dataset} ({budget} trials)")
        ax.set_xlabel("wall time (s)")
    for row in axes:
        row[0].set_ylabel("best dev accuracy so far")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def best_so_far(run: Run, grid: np.ndarray) -> np.ndarray:
    out, best, i = np.full(len(grid), np.nan), -math.inf, 0
    for j, t in enumerate(grid):
        while i < len(run.trials) and run.trials[i].seconds <= t:
            if run.trials[i].complete:
                best = max(best, run.trials[i].dev)
            i += 1
        out[j] = best if best > -math.inf else np.nan
    return out


def main() -> None:
    global CONCURRENCY, FIXED_STRUCTURE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[24, 64])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="*", default=["recipe", *PEERS])
    parser.add_argument("--raytune", action="store_true", help="also (e) and (a) as a sweep")
    parser.add_argument(
        "--pack", nargs="+", default=[], help="also (a) as a sweep with each resources.pack"
    )
    parser.add_argument(
        "--fixed-structure", action="store_true", help="--pack runs: depth, width, batch fixed"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="trials at a time in (e)")
    parser.add_argument("--json", type=Path, help="write every run, trial by trial, and the table")
    parser.add_argument("--figure", type=Path, help="best-so-far vs wall time (PNG)")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="tabulate the runs of earlier --json files, run none"
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    CONCURRENCY = args.concurrency
    if args.fixed_structure:
        FIXED_STRUCTURE = {"hidden_units": [64, 64], "batch_size": 64}
    if args.merge:
        runs = [
            Run(**(r | {"trials": [Trial(**t) for t in r["trials"]]}))
            for path in args.merge
            for r in json.loads(path.read_text())["runs"]
        ]
    else:
        runs = measure(args)
    rows = table([r.summary() for r in runs])
    print(f"{'budget':>6} {'dataset':16} {'method':15} {'seeds':>5} {'best dev':>16} "
          f"{'its test':>16} {'epochs':>12} {'wall s':>14}")  # fmt: skip
    for r in rows:
        print(
            f"{r['budget']:6} {r['dataset']:16} {r['method']:15} {r['seeds']:5} "
            f"{r['best_dev']:.4f} ± {r['best_dev_se']:.4f} {r['test_of_best']:.4f} ± "
            f"{r['test_of_best_se']:.4f} {r['epochs_used']:6.0f} ± {r['epochs_used_se']:3.0f} "
            f"{r['wall_s']:7.1f} ± {r['wall_s_se']:4.1f}"
        )
    for line in verdicts(rows) + pack_lines([r.summary() for r in runs]):
        print(line)
    if args.json:
        runs_json = [asdict(r) for r in runs]
        arguments = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        arguments["merge"] = [str(p) for p in args.merge or []]
        args.json.write_text(
            json.dumps({"args": arguments, "table": rows, "runs": runs_json}, indent=1)
        )
    if args.figure:
        figure(runs, args.figure)


def measure(args: argparse.Namespace) -> list[Run]:
    global ROOT
    space = {k: scales.Param.model_validate(v) for k, v in SPACE.items()}
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as folder, threadpool_limits_one():
        ROOT = Path(folder)
        specs = {}
        for dataset in args.datasets:
            DATA[dataset], specs[dataset] = load(dataset, ROOT)
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        for budget in args.budgets:
            for dataset in args.datasets:
                for seed in seeds:
                    for method in args.methods:
                        runs.append(run_method(method, space, budget, args.epochs, seed, dataset))
                        print(json.dumps(runs[-1].summary()), flush=True)
        if args.raytune or args.pack:
            from sweeper.run.dispatch import start_ray

            start_ray(None)
        for budget in args.budgets:
            for dataset in args.datasets:
                for seed in seeds:
                    drivers = [sweeper_run, raytune_run] if args.raytune else []
                    drivers += [functools.partial(sweeper_run, pack=pack) for pack in args.pack]
                    for driver in drivers:
                        runs.append(driver(dataset, specs[dataset], budget, args.epochs, seed))
                        print(json.dumps(runs[-1].summary()), flush=True)
    return runs


def threadpool_limits_one():
    """One BLAS thread, as a sweeper trial task with one CPU has."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


if __name__ == "__main__":
    main()

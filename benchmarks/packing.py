"""Packed vs one-per-task training: the trainer alone per shape, then whole sweeps, in one run.

1. Shapes. For each shape and K, the same K configurations (one architecture; learning rate and
   seed differ per network, as in a sweep) are trained one after another with `model.train` and
   together with `model.stacked.train_members`, on one BLAS thread (one trial task's core).
   Printed: samples/s (examples × epochs × networks per second) and trials/hour (networks of
   `--epochs` epochs per hour) of each, and their ratio. The data are Gaussian features with
   random labels (speed does not depend on what is learned): 1024 training, 256 dev examples.
   Each timing is the best of `--repeats`, the two ways interleaved, since the machine may be
   shared.
2. Sweeps. The same sweep through the real sweeper (Ray tasks, StudyServer, Optuna journal,
   MLflow) with `resources.pack` 1, 16 and auto: built-in digits, `--trials` small trials (the
   learning rate, β, L2 and dropout searched, with the width and batch size), `--epochs`
   epochs, concurrency 2 (--fixed-structure: width and batch size 32, not searched). Per seed
   the variants run back to back; printed: wall time,
   trials/hour, best dev accuracy and exact counts, then the mean over seeds and the ratios.

   With --profile-server DIR, the StudyServer actor accounts its CPU seconds by method, by
   MLflow writer job and by thread (printed, and DIR/<sweep>/cpu.json), and profiles each of
   its threads with cProfile (DIR/<sweep>/<thread>.prof, for pstats or snakeviz).

    python benchmarks/packing.py [--ks 1 4 16 64] [--epochs 2] [--repeats 3]
                                 [--sweep-trials 64] [--sweep-epochs 20] [--seeds 3]
                                 [--skip-shapes] [--skip-sweeps] [--json FILE]
                                 [--profile-server DIR] [--fixed-structure]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
from threadpoolctl import threadpool_limits

from model import TrainConfig, train
from model.stacked import train_members

# (name, n_x, hidden widths, classes, batch size): the shapes, then one more small one
SHAPES = [
    ("64-32-10 b32", 64, [32], 10, 32),
    ("64-128-128-10 b64", 64, [128, 128], 10, 64),
    ("2-16-16-1 b32", 2, [16, 16], 2, 32),
    ("784-256-10 b128", 784, [256], 10, 128),
    ("64-32-32-10 b64", 64, [32, 32], 10, 64),
]
M_TRAIN, M_DEV = 1024, 256
PACKS = (1, 16, "auto")


@dataclass
class ShapeRow:
    shape: str
    K: int
    single_samples_per_s: float
    packed_samples_per_s: float
    single_trials_per_hour: float
    packed_trials_per_hour: float
    ratio: float


def configs(K: int, hidden: list[int], batch: int, epochs: int) -> list[TrainConfig]:
    rates = np.geomspace(1e-4, 1e-1, K)
    return [
        TrainConfig(
            hidden_units=hidden, batch_size=batch, epochs=epochs, learning_rate=float(a), seed=k
        )
        for k, a in enumerate(rates)
    ]


def best_times(runs: list[Callable[[], object]], repeats: int) -> list[float]:
    """The best time of each run, the runs interleaved so that a busy moment hits all alike."""
    times = [[] for _ in runs]
    for _ in range(repeats):
        for run, measured in zip(runs, times, strict=True):
            start = time.perf_counter()
            run()
            measured.append(time.perf_counter() - start)
    return [min(measured) for measured in times]


def measure_shape(shape: tuple, K: int, epochs: int, repeats: int) -> ShapeRow:
    name, n_x, hidden, classes, batch = shape
    rng = np.random.default_rng(0)
    X = rng.standard_normal((M_TRAIN + M_DEV, n_x)).astype(np.float32)
    y = rng.integers(0, classes, M_TRAIN + M_DEV)
    data = (X[:M_TRAIN].T, y[:M_TRAIN], X[M_TRAIN:].T, y[M_TRAIN:], classes)
    pack = configs(K, hidden, batch, epochs)
    single, packed = best_times(
        [lambda: [train(config, *data) for config in pack], lambda: train_members(pack, *data)],
        repeats,
    )
    samples = K * epochs * M_TRAIN
    return ShapeRow(
        name,
        K,
        samples / single,
        samples / packed,
        3600 * K / single,
        3600 * K / packed,
        single / packed,
    )


def shapes(args: argparse.Namespace) -> list[ShapeRow]:
    rows = []
    with threadpool_limits(limits=1):  # one core, as one trial task has
        measure_shape(SHAPES[0], 1, 1, 1)  # warm-up: imports, first allocations
        print(
            f"{'shape':<20}{'K':>4}{'single samples/s':>18}{'packed samples/s':>18}"
            f"{'single trials/h':>17}{'packed trials/h':>17}{'ratio':>8}"
        )
        for shape in SHAPES:
            for K in args.ks:
                row = measure_shape(shape, K, args.epochs, args.repeats)
                rows.append(row)
                print(
                    f"{row.shape:<20}{row.K:>4}{row.single_samples_per_s:>18,.0f}"
                    f"{row.packed_samples_per_s:>18,.0f}{row.single_trials_per_hour:>17,.0f}"
                    f"{row.packed_trials_per_hour:>17,.0f}{row.ratio:>7.2f}×",
                    flush=True,
                )
    return rows


def sweep_spec(
    root: Path,
    dataset: str,
    pack: int | str,
    seed: int,
    trials: int,
    epochs: int,
    fixed_structure: bool = False,
) -> Path:
    """The benchmark sweep; `fixed_structure`: width 32 and batch size 32 fixed, not searched
    (where `pack: auto` packs: a stage that searches them runs one trial per task)."""
    name = f"{dataset}-pack{pack}-{seed}"
    spec = {
        "name": name,
        "dir": str(root / name),
        "data": {"source": f"builtin:{dataset}", "split": {"dev": 0.2, "test": 0.2, "seed": 0}},
        "train": {"epochs": epochs, "optimizer": "adam", "seed": seed},
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": {
            "learning_rate": {"scale": "log", "low": 1e-4, "high": 1e-1},
            "beta": {"scale": "one_minus_log", "low": 0.5, "high": 0.999},
            "l2": {"scale": "log", "low": 1e-5, "high": 1.0},
            "keep_prob": {"scale": "uniform", "low": 0.5, "high": 1.0},
            "hidden_units": {"scale": "pow2", "low": 8, "high": 32},
            "batch_size": {"scale": "pow2", "low": 16, "high": 64},
        },
        "stages": [{"name": "all", "trials": trials, "sampler": "random", "seed": seed}],
        "resources": {"concurrency": 2, "pack": pack},
    }
    if fixed_structure:
        for option in ("hidden_units", "batch_size"):
            del spec["space"][option]
            spec["train"][option] = 32
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# the kind of each of the sweep's processes, by its title; a Ray worker is "ray::IDLE" until its
# first task or actor names it; any other descendant is Ray's own (raylet, GCS, agents)
PROCESS_KINDS = {
    "ray::train_trials": "trainers",
    "ray::StudyServer": "server",
    "ray::ProfiledServer": "server",
}


class CpuMeter:
    """CPU seconds used by this process and its descendants (the local Ray: its workers, the
    StudyServer actor, raylet …) while it runs, by kind of process: on a machine shared with
    other work the wall time says little, the CPU time of the sweep's own processes much more.
    Polled, since the StudyServer's process is gone by the time the sweep returns."""

    def __init__(self, every_s: float = 0.25):
        self.every_s = every_s
        self.last: dict[int, tuple[str, float]] = {}
        self.start = self._poll_once()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _kind(self, process: psutil.Process) -> str:
        if process.pid == os.getpid():
            return "driver"
        title = " ".join(process.cmdline())
        named = [kind for prefix, kind in PROCESS_KINDS.items() if title.startswith(prefix)]
        if named:
            return named[0]
        known = self.last.get(process.pid)
        return known[0] if known else "idle worker" if title.startswith("ray::IDLE") else "ray"

    def _poll_once(self) -> dict[int, float]:
        seen = {}
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
                self.last[process.pid] = (self._kind(process), times.user + times.system)
            except psutil.Error:
                continue
            seen[process.pid] = times.user + times.system
        return seen

    def _poll(self) -> None:
        while not self.stopped.wait(self.every_s):
            self._poll_once()

    def stop(self) -> dict[str, float]:
        self.stopped.set()
        self.thread.join()
        self._poll_once()
        used: dict[str, float] = {}
        for pid, (kind, seconds) in self.last.items():
            used[kind] = used.get(kind, 0.0) + seconds - self.start.get(pid, 0.0)
        return used


SERVER_METHODS = ("open_stage", "ask", "ask_like", "report_pack", "tell", "close_stage",
                  "finish_sweep", "flush")  # fmt: skip


def job_kind(what: str) -> str:
    """A writer job's kind from its description (`Recorder`): trial numbers left out."""
    if what.startswith("trials "):
        return "trial runs"
    return re.sub(r"^.*trial \d+: ", "", re.sub(r" stage .*$", " stage", what))


def profiled_server(folder: Path) -> type:
    """A StudyServer that accounts its CPU time: per method (its thread's CPU time around each
    call), per MLflow writer job (the same, in the writer's thread), per thread (psutil), and
    profiles each thread with cProfile (wall clock, for where the time goes within them).
    Everything is written to `folder` at each `flush`, the driver's last call to the actor."""
    import cProfile
    import sys

    from sweeper.run.server import StudyServer

    class ProfiledServer(StudyServer):
        def __init__(self, *args: Any, **kwargs: Any):
            self.profiles: dict[str, cProfile.Profile] = {}
            self.cpu: dict[str, float] = {}
            self.calls: dict[str, int] = {}
            self.started_cpu = time.process_time()

            def start(*_: Any) -> None:  # the first event of each new thread
                sys.setprofile(None)
                self._profile(threading.current_thread().name)

            threading.setprofile(start)
            self._profile("methods")
            t = time.thread_time()
            super().__init__(*args, **kwargs)
            self._count("method __init__", t)
            writer_next_job = self.recorder._next_job

            def next_job() -> tuple[str, Callable[[Any], None]]:
                what, job = writer_next_job()

                def timed(tracker: Any) -> None:
                    t = time.thread_time()
                    try:
                        job(tracker)
                    finally:
                        self._count("writer " + job_kind(what), t)

                return what, timed

            self.recorder._next_job = next_job  # type: ignore[method-assign]
            writer_drop_model = self.recorder.drop_model

            def drop_model(stage: str, number: int) -> None:
                waiting = getattr(self.recorder, "_waiting_saves", {}).get((stage, number))
                if waiting is not None and waiting[0] in self.recorder._jobs:
                    self._count("saves never written (pushed out first)", time.thread_time())
                writer_drop_model(stage, number)

            self.recorder.drop_model = drop_model  # type: ignore[method-assign]

        def _count(self, kind: str, since: float) -> None:
            self.cpu[kind] = self.cpu.get(kind, 0.0) + time.thread_time() - since
            self.calls[kind] = self.calls.get(kind, 0) + 1

        def _profile(self, name: str) -> None:
            profile = self.profiles[name] = cProfile.Profile()
            profile.enable()

        def flush(self) -> list[str]:
            errors = super().flush()
            folder.mkdir(parents=True, exist_ok=True)
            for name, profile in self.profiles.items():
                profile.create_stats()
                profile.dump_stats(folder / f"{name}.prof")
            names = {t.native_id: t.name for t in threading.enumerate()}
            threads = {
                names.get(t.id, f"thread {t.id}"): t.user_time + t.system_time
                for t in psutil.Process().threads()
            }
            process = psutil.Process().cpu_times()
            accounts = {
                "code": sys.modules[StudyServer.__module__].__file__,
                "process CPU s (all threads, since start)": process.user + process.system,
                "process CPU s since __init__": time.process_time() - self.started_cpu,
                "by thread": threads,
                "by method and writer job": self.cpu,
                "calls": self.calls,
            }
            (folder / "cpu.json").write_text(json.dumps(accounts, indent=1))
            return errors

    def timed(name: str) -> Callable[..., Any]:
        method = getattr(ProfiledServer, name)

        @functools.wraps(method)  # and its concurrency group
        def timed_method(self: ProfiledServer, *args: Any, **kwargs: Any) -> Any:
            t = time.thread_time()
            try:
                return method(self, *args, **kwargs)
            finally:
                self._count("method " + name, t)

        return timed_method

    for name in SERVER_METHODS:  # on the class: Ray calls an actor's methods through it
        setattr(ProfiledServer, name, timed(name))
    return ProfiledServer


def print_profile(folder: Path) -> None:
    """The StudyServer's CPU seconds: by thread, and by method and writer job."""
    accounts = json.loads((folder / "cpu.json").read_text())
    print(f"  StudyServer {folder.name}:", end="")
    for key, value in accounts.items():
        if isinstance(value, str):
            print(f"\n    {key}: {value}", end="")
        elif isinstance(value, dict):
            parts = sorted(value.items(), key=lambda kv: -kv[1])
            shown = [
                f"{k} {v}" if isinstance(v, int) else f"{k} {v:.2f}"
                for k, v in parts
                if isinstance(v, int) or v >= 0.005  # idle threads left out
            ]
            print(f"\n    {key}: " + ", ".join(shown), end="")
        else:
            print(f"\n    {key}: {value:.2f}", end="")
    print()


def run_sweep(path: Path, profile: Path | None = None) -> dict[str, Any]:
    from sweeper.results.summary import load_view
    from sweeper.run import server, sweep

    if profile is not None:
        original, server.StudyServer = server.StudyServer, profiled_server(profile)
    plan = sweep.prepare(path)
    meter = CpuMeter()
    started = time.perf_counter()
    try:
        result = sweep.run(plan)
    finally:
        if profile is not None:
            server.StudyServer = original
    wall = time.perf_counter() - started
    cpu = meter.stop()
    if profile is not None:
        print_profile(profile)
    counts = result.stages[0].counts
    view = load_view(plan.folder)
    best = view.ranked()[0]
    # the trials' own span, first ask to last tell: without the sweep's fixed costs (starting
    # the StudyServer, the stage's figures, the report), what a long sweep gets per hour
    span_s = (max(r.end_ms for r in view.rows) - min(r.start_ms for r in view.rows)) / 1000
    return {
        "wall_s": wall,
        "trials_per_hour": 3600 * sum(counts.values()) / wall,
        "trials_span_s": span_s,
        "trials_per_hour_in_span": 3600 * sum(counts.values()) / span_s,
        "cpu_s": cpu,
        # trials per hour if the sweep had the 2 cores to itself: its CPU time spread on them
        "trials_per_cpu_hour": 3600 * sum(counts.values()) / sum(cpu.values()),
        "best_dev": best.value,
        "counts": dict(counts),
    }


def sweeps(args: argparse.Namespace) -> list[dict[str, Any]]:
    from sweeper.run.dispatch import start_ray

    start_ray(None)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        print(
            f"\n{'pack':>5}{'seed':>5}{'wall s':>8}{'span s':>8}{'trials/h':>10}{'in span':>9}"
            f"{'CPU s':>7}{'trials/CPU-h':>13}{'best dev':>10}  CPU s by process; counts"
        )
        for seed in range(args.seeds):
            for pack in PACKS:
                path = sweep_spec(
                    root,
                    args.dataset,
                    pack,
                    seed,
                    args.sweep_trials,
                    args.sweep_epochs,
                    args.fixed_structure,
                )
                profile = args.profile_server and args.profile_server / f"pack{pack}-{seed}"
                run = {"pack": pack, "seed": seed} | run_sweep(path, profile)
                runs.append(run)
                by_kind = " ".join(f"{k} {v:.1f}" for k, v in sorted(run["cpu_s"].items()))
                print(
                    f"{pack!s:>5}{seed:>5}{run['wall_s']:>8.1f}{run['trials_span_s']:>8.1f}"
                    f"{run['trials_per_hour']:>10,.0f}{run['trials_per_hour_in_span']:>9,.0f}"
                    f"{sum(run['cpu_s'].values()):>7.1f}"
                    f"{run['trials_per_cpu_hour']:>13,.0f}{run['best_dev']:>10.4f}  "
                    f"{by_kind}; {run['counts']}",
                    flush=True,
                )
    one = [r for r in runs if r["pack"] == 1]
    for pack in PACKS:
        mine = [r for r in runs if r["pack"] == pack]
        by_wall = [o["wall_s"] / r["wall_s"] for o, r in zip(one, mine, strict=True)]
        by_span = [o["trials_span_s"] / r["trials_span_s"] for o, r in zip(one, mine, strict=True)]
        by_cpu = [
            r["trials_per_cpu_hour"] / o["trials_per_cpu_hour"]
            for o, r in zip(one, mine, strict=True)
        ]
        # a trainer that ran between two polls of the sampler (a tiny sweep) is not seen at all
        by_trainers = [
            o["cpu_s"].get("trainers", math.nan) / r["cpu_s"].get("trainers", math.nan)
            for o, r in zip(one, mine, strict=True)
        ]
        print(
            f"pack {pack}: trials/hour ×{statistics.mean(by_wall):.2f} vs pack 1 by wall time "
            f"(per seed {', '.join(f'{x:.2f}' for x in by_wall)}), ×{statistics.mean(by_span):.2f} "
            f"in the trials' span (per seed {', '.join(f'{x:.2f}' for x in by_span)}), "
            f"×{statistics.mean(by_cpu):.2f} "
            f"by CPU time (per seed {', '.join(f'{x:.2f}' for x in by_cpu)}), "
            f"×{statistics.mean(by_trainers):.2f} by the trainers' CPU time; mean best dev "
            f"{statistics.mean(r['best_dev'] for r in mine):.4f}"
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-trials", type=int, default=64)
    parser.add_argument("--sweep-epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dataset", default="digits", help="a built-in dataset for the sweeps")
    parser.add_argument(
        "--fixed-structure", action="store_true", help="sweeps: width and batch size not searched"
    )
    parser.add_argument("--skip-shapes", action="store_true")
    parser.add_argument("--skip-sweeps", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    parser.add_argument("--profile-server", type=Path, help="cProfile the StudyServer into DIR")
    args = parser.parse_args()
    found: dict[str, Any] = {}
    if not args.skip_shapes:
        found["shapes"] = [asdict(row) for row in shapes(args)]
    if not args.skip_sweeps:
        found["sweeps"] = sweeps(args)
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()

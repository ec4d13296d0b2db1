"""What the end-to-end tests share: a spec template, the CLI as a real process, and the check
that a sweep holds exactly its trials in Optuna and MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import psutil
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeper.run.folder import SweepFolder
from sweeper.search.study import make_storage, study_name

ROOT = Path(__file__).resolve().parents[2]
# the console script pip installed, the command a user runs (not `python -m`, which reaches
# `main` by another way: the script once skipped it, and with it the umask)
SWEEPER = str(Path(sys.executable).with_name("sweeper"))
SPEC = """\
name: {name}
data:
  source: {source}
  target: label
train: {{epochs: {epochs}, optimizer: adam}}
objective: {objective}
space:
  learning_rate: {{scale: log, low: 1.0e-3, high: 3.0e-2}}
  beta: {{scale: one_minus_log, low: 0.8, high: 0.99}}
  hidden_units: {{scale: pow2, low: 8, high: 32}}
  batch_size: {{scale: pow2, low: 16, high: 64}}
stages:
{stages}
resources: {resources}
"""
MLFLOW_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}


def write_spec(
    tmp_path: Path,
    name: str,
    stages: str,
    source="builtin:flower",
    epochs=4,
    resources="{concurrency: 2}",
    objective="{metric: dev_accuracy, direction: maximize}",
) -> Path:
    path = tmp_path / f"{name}.yaml"
    spec = SPEC.format(
        name=name,
        source=source,
        stages=stages,
        epochs=epochs,
        resources=resources,
        objective=objective,
    )
    path.write_text(spec)
    return path


def cli(
    *args: str,
    cwd: Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    answer: str | None = None,
) -> subprocess.CompletedProcess:
    """`sweeper ARGS` as its own process, to completion (`env`: variables added; `answer`: what
    the user types at a prompt)."""
    return subprocess.run(
        [SWEEPER, *args],
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        input=answer,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def start_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`sweeper ARGS` in a new process group, as a terminal would run it."""
    return subprocess.Popen(
        [SWEEPER, *args],
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    os.killpg(process.pid, sig)


def kill_driver(driver: subprocess.Popen) -> None:
    """SIGKILL the driver's process group, and wait until its Ray processes are gone too."""
    ray_processes = psutil.Process(driver.pid).children(recursive=True)
    kill_group(driver, signal.SIGKILL)
    driver.wait(timeout=30)
    _, alive = psutil.wait_procs(ray_processes, timeout=30)
    for process in alive:  # what the kill of a machine or container would take with it
        process.kill()


def wait_for(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    seen: Callable[[], object] | None = None,
) -> object:
    """`condition()` once it is true; else an AssertionError saying what `seen()` showed last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    last = f"; last seen: {seen()!r}" if seen else f"; last: {found!r}"
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{last}")


def trials(
    folder: Path, sweep: str, stage: str, optuna_url: str | None = None
) -> list[optuna.trial.FrozenTrial]:
    """A stage's own trials (warm-start copies and queued retries left out); [] if none yet."""
    if optuna_url is None and not (folder / "optuna.journal").exists():
        return []
    storage = make_storage(optuna_url, folder)
    if study_name(sweep, stage) not in optuna.get_all_study_names(storage):
        return []
    study = optuna.load_study(study_name=study_name(sweep, stage), storage=storage)
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if "warm_start_from" not in t.user_attrs and t.state != TrialState.WAITING
    ]


def finished(folder: Path, sweep: str, stage: str, optuna_url: str | None = None) -> int:
    return sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        for t in trials(folder, sweep, stage, optuna_url)
    )


def mlflow_runs(folder: Path, name: str, tracking_uri: str | None = None) -> tuple[list, list]:
    """(trial runs, all runs) of a sweep's experiment (in its folder's SQLite store by default)."""
    client = MlflowClient(tracking_uri or f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=10_000)
    return [r for r in runs if r.data.tags.get("sweeper.kind") == "trial"], runs


def assert_exact(
    folder: Path,
    sweep: str,
    targets: dict[str, int],
    optuna_url: str | None = None,
    tracking_uri: str | None = None,
) -> None:
    """Each stage has exactly its target of finished trials, none left running, and exactly one
    MLflow run per Optuna trial, in the matching state; no run is left RUNNING; the stage's best
    `models.keep` completed trials, by the spec's objective direction, hold a model each."""
    spec = SweepFolder(folder).load_spec()
    sign = -1 if spec.objective.direction == "maximize" else 1
    keep = spec.models.keep
    runs, all_runs = mlflow_runs(folder, sweep, tracking_uri)
    assert not [r.info.run_name for r in all_runs if r.info.status == "RUNNING"]
    keys = Counter((r.data.tags["sweeper.stage"], int(r.data.tags["sweeper.trial"])) for r in runs)
    assert max(keys.values()) == 1, "a trial was logged twice"
    for stage, target in targets.items():
        own = trials(folder, sweep, stage, optuna_url)
        assert finished(folder, sweep, stage, optuna_url) == target
        assert all(t.state.is_finished() for t in own)
        assert len({t.number for t in own}) == len(own)
        logged = {
            int(r.data.tags["sweeper.trial"]): r.info.status
            for r in runs
            if r.data.tags["sweeper.stage"] == stage
        }
        assert logged == {t.number: MLFLOW_STATUS[t.state.name] for t in own}
        # the stage's best `keep` completed trials hold a model each, and no other trial does
        completed = sorted(
            (t for t in own if t.state == TrialState.COMPLETE),
            key=lambda t: (sign * t.value, t.number),
        )
        with_model = {
            int(r.data.tags["sweeper.trial"])
            for r in runs
            if r.data.tags["sweeper.stage"] == stage and "sweeper.model" in r.data.tags
        }
        best = completed if keep == "all" else completed[:keep]
        assert with_model == {t.number for t in best}, "a model missing or extra"
    if tracking_uri is None:  # on disk: one model folder per kept model, nothing left staged
        assert len(list(folder.glob("artifacts/*/artifacts/model/MLmodel"))) == sum(
            1 for r in runs if "sweeper.model" in r.data.tags
        )
        assert not list(folder.glob("models-pending/*/*"))

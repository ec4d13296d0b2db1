"""Real sweeps: real Ray tasks, a real Optuna journal, a real MLflow SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from sweeper import sweep
from sweeper.results import best, status
from sweeper.study import make_storage, study_name

SPEC = """\
name: {name}
data:
  source: {source}
  target: label
train: {{epochs: {epochs}, optimizer: adam}}
objective: {{metric: dev_accuracy, direction: maximize}}
space:
  learning_rate: {{scale: log, low: 1.0e-3, high: 3.0e-2}}
  beta: {{scale: one_minus_log, low: 0.8, high: 0.99}}
  hidden_units: {{scale: pow2, low: 8, high: 32}}
  batch_size: {{scale: pow2, low: 16, high: 64}}
stages:
{stages}
resources: {{concurrency: 2}}
"""


def _write_spec(tmp_path: Path, name: str, stages: str, source="builtin:flower", epochs=4) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, source=source, stages=stages, epochs=epochs))
    return path


def _mlflow_trials(folder: Path, name: str):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=10_000)
    return [r for r in runs if r.data.tags.get("sweeper.kind") == "trial"], runs


def test_sweep_records_exactly_n_trials_everywhere(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stages = (
        "  - {name: coarse, trials: 6, sampler: random, pruner: {type: asha, min_epochs: 1}}\n"
        "  - {name: fine, trials: 4, sampler: tpe, zoom: {top: 0.5, margin: 0.1}}"
    )
    spec, folder = sweep.prepare(_write_spec(tmp_path, "exact", stages))
    sweep.run(spec, folder)

    storage = make_storage(None, folder.path)
    trials = {}
    for stage, target in (("coarse", 6), ("fine", 4)):
        study = optuna.load_study(study_name=study_name("exact", stage), storage=storage)
        own = [t for t in study.trials if "warm_start_from" not in t.user_attrs]
        assert len(own) == target
        assert all(t.state.is_finished() for t in study.trials)
        trials[stage] = {t.number: t for t in own}

    runs, all_runs = _mlflow_trials(folder.path, "exact")
    assert not [r for r in all_runs if r.info.status == "RUNNING"]
    assert len(runs) == 10
    keys = Counter((r.data.tags["sweeper.stage"], int(r.data.tags["sweeper.trial"])) for r in runs)
    assert max(keys.values()) == 1  # no duplicates
    status_map = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for run in runs:
        trial = trials[run.data.tags["sweeper.stage"]][int(run.data.tags["sweeper.trial"])]
        assert run.info.status == status_map[trial.state.name]
        assert run.data.tags["sweeper.node_id"]
        assert float(run.data.params["learning_rate"]) == pytest.approx(
            trial.params["learning_rate"]
        )
        assert float(run.data.params["beta"]) == pytest.approx(1 - trial.params["one_minus_beta"])
        assert int(run.data.params["batch_size"]) == 2 ** trial.params["log2_batch_size"]
        if trial.state.name == "COMPLETE":
            assert run.data.metrics["dev_accuracy"] == pytest.approx(trial.value)
            assert "test_accuracy" in run.data.metrics

    top = best(folder)
    every = [t for s in trials.values() for t in s.values() if t.state.name == "COMPLETE"]
    assert top["value"] == pytest.approx(max(t.value for t in every))
    summary = status(folder)
    assert [(s["complete"] + s["pruned"], s["running"]) for s in summary["stages"]] == [
        (6, 0),
        (4, 0),
    ]

    # every fine-stage trial lies inside the zoom box that stage recorded
    fine = summary["stages"][1]["space"]
    for t in trials["fine"].values():
        assert (
            fine["learning_rate"]["low"]
            <= t.params["learning_rate"]
            <= fine["learning_rate"]["high"]
        )

    # launching again with the same spec resumes a finished sweep: nothing new runs
    sweep.run(*sweep.prepare(tmp_path / "exact.yaml"))
    assert len(_mlflow_trials(folder.path, "exact")[0]) == 10


def test_diverging_trials_are_recorded_and_the_sweep_goes_on(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write_spec(tmp_path, "diverge", "  - {name: only, trials: 3}")
    text = path.read_text().replace(
        "{scale: log, low: 1.0e-3, high: 3.0e-2}", "{scale: log, low: 1.0e+5, high: 1.0e+6}"
    )
    path.write_text(text.replace("optimizer: adam", "optimizer: gd"))
    spec, folder = sweep.prepare(path)
    sweep.run(spec, folder)
    runs, _ = _mlflow_trials(folder.path, "diverge")
    assert len(runs) == 3
    assert {r.data.tags["sweeper.reason"] for r in runs} == {"diverged"}
    assert {r.info.status for r in runs} == {"KILLED"}


def test_cli_sweep_on_a_parquet_file_with_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    label = np.where(X[:, 0] * X[:, 1] > 0, "same", "different")
    pq.write_table(
        pa.table({"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "label": label}),
        tmp_path / "pairs.parquet",
    )
    _write_spec(tmp_path, "pairs", "  - {name: only, trials: 3}", source="pairs.parquet")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cli = [sys.executable, "-m", "sweeper.cli"]
    launched = subprocess.run(
        [*cli, "launch", "pairs.yaml", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr
    shown = subprocess.run(
        [*cli, "status", "pairs", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        json.loads(shown.stdout)["stages"][0]["complete"]
        + json.loads(shown.stdout)["stages"][0]["pruned"]
        == 3
    )
    found = subprocess.run(
        [*cli, "best", "pairs", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert set(json.loads(found.stdout)) == {"stage", "trial", "value", "params", "metrics"}
    bad = subprocess.run(
        [*cli, "status", "nope"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no sweep 'nope'" in bad.stderr


def test_second_driver_is_refused_while_one_holds_the_lock(tmp_path):
    from sweeper.errors import UserError

    folder = sweep.SweepFolder(tmp_path / "s")
    with (
        sweep.sweep_lock(folder),
        pytest.raises(UserError, match="already running"),
        sweep.sweep_lock(folder),
    ):
        pass

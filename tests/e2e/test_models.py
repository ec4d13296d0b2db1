"""Kept models end to end: a sweep on a Parquet file with string labels keeps its best models as
MLflow Models, registers the best one, and `sweeper predict`, `mlflow.pyfunc` and
`mlflow models serve` all give the data's own labels.

One sweep is shared by every test of the module (a real CLI process, real Ray, Optuna and
MLflow stores)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from sweeper.run.folder import find_sweep
from sweeper.run.lineage import resolve
from tests.e2e.helpers import cli, cli_env, wait_for, write_spec

ROWS, TEST_SHARE = 300, 0.2


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """(working folder, the data as a DataFrame, `best --json`) of a finished 4-trial sweep."""
    cwd = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, 3))
    label = np.where(X[:, 0] * X[:, 1] > 0, "same", "different")
    data = pd.DataFrame({"f0": X[:, 0], "f1": X[:, 1] * 10 + 5, "f2": X[:, 2], "label": label})
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), cwd / "pairs.parquet")
    spec = write_spec(cwd, "pairs", "  - {name: only, trials: 4}", source="pairs.parquet")
    spec.write_text(spec.read_text() + "models: {keep: 2}\n")
    launched = cli("launch", "pairs.yaml", "--quiet", cwd=cwd)
    assert launched.returncode == 0, launched.stderr
    found = cli("best", "pairs", "--json", cwd=cwd)
    assert found.returncode == 0, found.stderr
    return cwd, data, json.loads(found.stdout)


def test_the_best_model_predicts_the_string_labels_with_the_sweeps_test_accuracy(sweep):
    cwd, data, best = sweep
    assert best["model_uri"].startswith("runs:/")
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'sweeps/pairs/mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(best["model_uri"])
    finally:
        mlflow.set_tracking_uri(None)
    # the sweep's test split: the first round(0.2·m) rows of its seeded permutation (seed 0)
    test = data.iloc[np.random.default_rng(0).permutation(ROWS)[: round(TEST_SHARE * ROWS)]]
    predicted = model.predict(test[["f0", "f1", "f2"]])
    assert set(predicted) <= {"same", "different"}
    accuracy = float((np.asarray(predicted) == test["label"].to_numpy()).mean())
    assert accuracy == pytest.approx(best["metrics"]["test_accuracy"], abs=1e-12)
    probabilities = model.predict(test[["f2", "f1", "f0"]], params={"probabilities": True})
    assert list(probabilities.columns) == ["different", "same"]  # the label encoding's order
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    chosen = probabilities.columns[probabilities.to_numpy().argmax(axis=1)]
    assert (chosen == np.asarray(predicted)).mean() > 0.99  # columns found by name, not position


def test_sweeper_predict_agrees_with_pyfunc_and_rejects_bad_columns_by_name(sweep):
    cwd, data, best = sweep
    data.drop(columns="label").to_csv(cwd / "rows.csv", index=False)
    done = cli("predict", "pairs", "rows.csv", "--out", "out.parquet", cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr  # MLflow's type-hint warning came on every load
    out = pq.read_table(cwd / "out.parquet").to_pandas()
    assert best["tracking_uri"].endswith("/sweeps/pairs/mlflow.db")  # what plain MLflow needs
    mlflow.set_tracking_uri(best["tracking_uri"])
    try:
        expected = mlflow.pyfunc.load_model(best["model_uri"]).predict(data)
    finally:
        mlflow.set_tracking_uri(None)
    assert out["prediction"].tolist() == expected.tolist()
    assert {"probability.same", "probability.different"} <= set(out.columns)

    rows = (cwd / "rows.csv").read_text()
    over = cli("predict", "pairs", "rows.csv", "--out", "rows.csv", cwd=cwd)  # its own input
    assert over.returncode == 2 and "rows.csv: exists; --force writes over it" in over.stderr
    assert (cwd / "rows.csv").read_text() == rows
    forced = cli("predict", "pairs", "rows.csv", "--out", "out.parquet", "--force", cwd=cwd)
    assert forced.returncode == 0, forced.stderr
    assert pq.read_table(cwd / "out.parquet").to_pandas().equals(out)

    other = cli("predict", "pairs", "rows.csv", "--out", "other.csv", "--trial", "99", cwd=cwd)
    assert other.returncode == 2 and "trial 99 has no kept model" in other.stderr

    data.drop(columns=["label", "f1"]).to_csv(cwd / "missing.csv", index=False)
    missing = cli("predict", "pairs", "missing.csv", "--out", "bad.csv", cwd=cwd)
    assert missing.returncode == 2 and "'f1' not found" in missing.stderr
    assert "missing.csv" in missing.stderr and "Traceback" not in missing.stderr
    # integer columns (a CSV of counts): MLflow's schema of doubles refused int64, exit 1
    counts = data.drop(columns="label").assign(f1=data["f1"].round().astype("int64"))
    counts.to_csv(cwd / "counts.csv", index=False)
    whole = cli("predict", "pairs", "counts.csv", "--out", "counts-out.csv", cwd=cwd)
    assert whole.returncode == 0, whole.stderr
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'sweeps/pairs/mlflow.db'}")
    try:
        in_process = mlflow.pyfunc.load_model(best["model_uri"]).predict(counts)
    finally:
        mlflow.set_tracking_uri(None)
    assert pd.read_csv(cwd / "counts-out.csv")["prediction"].tolist() == in_process.tolist()
    data.assign(f2="x").to_csv(cwd / "text.csv", index=False)
    text = cli("predict", "pairs", "text.csv", "--out", "bad.csv", cwd=cwd)
    assert text.returncode == 2 and "'f2' is not numeric" in text.stderr
    assert not (cwd / "bad.csv").exists()


def test_models_are_bounded_and_the_best_is_registered_and_served(sweep):
    cwd, data, best = sweep
    shown = json.loads(cli("status", "pairs", "--json", cwd=cwd).stdout)
    assert shown["models"]["kept"] == 2 and shown["models"]["bytes"] > 0
    tracking_uri = f"sqlite:///{cwd / 'sweeps/pairs/mlflow.db'}"
    client = MlflowClient(tracking_uri)
    (version,) = client.search_model_versions("name = 'pairs'")
    assert version.tags == {
        "stage": best["stage"], "trial": str(best["trial"]), "value": str(best["value"])
    }  # fmt: skip

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/pairs/latest",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        # MLflow runs `uvicorn` by name: the one beside this interpreter
        env={**cli_env(), "MLFLOW_TRACKING_URI": tracking_uri,
             "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"},
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        rows = data.drop(columns="label").head(5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            json.dumps({"dataframe_split": rows.to_dict(orient="split")}).encode(),
            {"Content-Type": "application/json"},
        )

        def answer():
            try:
                return json.load(urllib.request.urlopen(request, timeout=5))
            except OSError:
                assert serve.poll() is None, serve.stderr.read().decode()[-3000:]
                return None

        served = wait_for(answer, 120, "mlflow models serve to answer")
        mlflow.set_tracking_uri(tracking_uri)
        try:
            registered = mlflow.pyfunc.load_model("models:/pairs/latest").predict(rows)
        finally:
            mlflow.set_tracking_uri(None)
        assert served["predictions"] == registered.tolist()
        assert set(served["predictions"]) <= {"same", "different"}
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, 15)
        serve.wait(timeout=30)


def test_the_ui_opens_on_training_runs_with_real_stage_times_and_the_best_marked(sweep):
    cwd, _, best = sweep
    client = MlflowClient(f"sqlite:///{cwd / 'sweeps/pairs/mlflow.db'}")
    experiment = client.get_experiment_by_name("pairs")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    kind = {r.info.run_id: r.data.tags["sweeper.kind"] for r in runs}
    trials = [r for r in runs if kind[r.info.run_id] == "trial"]
    (stage,) = [r for r in runs if kind[r.info.run_id] == "stage"]
    (whole,) = [r for r in runs if kind[r.info.run_id] == "sweep"]
    # the stage's run spans its trials, and the sweep's run spans the stage
    assert stage.info.start_time <= min(r.info.start_time for r in trials)
    assert stage.info.end_time >= max(r.info.end_time for r in trials)
    assert whole.info.start_time <= stage.info.start_time
    assert whole.info.end_time >= stage.info.end_time
    (marked,) = [r for r in trials if r.data.tags.get("sweeper.best") == "true"]
    assert marked.data.tags["sweeper.trial"] == str(best["trial"])
    assert marked.info.run_name == f"only-{best['trial']} (best)"


def test_the_best_trial_continues_from_its_kept_model(sweep, monkeypatch):
    """`sweeper train --from NAME` starts from the best trial's kept model: with α ≈ 0 its first
    continued dev loss is that model's, far from an untrained network's; a trial that kept no
    model is refused."""
    cwd, _, best = sweep
    still = ("--epochs", "1", "--set", "learning_rate=1e-9")
    continued = cli("train", "pairs.yaml", "--from", "pairs", *still, cwd=cwd)
    assert continued.returncode == 0, continued.stderr
    fresh = cli("train", "pairs.yaml", *still, cwd=cwd)  # the best's options, untrained
    assert fresh.returncode == 0, fresh.stderr
    client = MlflowClient(f"sqlite:///{cwd / 'sweeps/pairs/mlflow.db'}")

    def first_dev_loss(output: str) -> tuple[Any, float]:
        run = client.get_run(re.search(r"MLflow run\s+([0-9a-f]{32})", output)[1])
        points = client.get_metric_history(run.info.run_id, "dev_loss")
        return run, min(points, key=lambda p: (p.step, p.timestamp)).value

    run, dev_loss = first_dev_loss(continued.stdout)
    _, untrained = first_dev_loss(fresh.stdout)
    assert dev_loss == pytest.approx(best["metrics"]["dev_loss"], rel=1e-5)
    assert abs(untrained - dev_loss) > 100 * abs(dev_loss - best["metrics"]["dev_loss"])
    trial_run = best["model_uri"].split("/")[1]
    assert run.data.tags["sweeper.parent_run"] == trial_run
    assert run.data.tags["sweeper.source"] == f"pairs:{best['stage']}:{best['trial']}"
    assert run.data.tags["sweeper.first_epoch"] == "5"  # the trial trained epochs 1–4

    kept = {int(n) for n in (r.data.tags["sweeper.trial"] for r in client.search_runs(
        [client.get_experiment_by_name("pairs").experiment_id],
        "tags.`sweeper.kind` = 'trial' and tags.`sweeper.model` = 'model'"))}  # fmt: skip
    monkeypatch.chdir(cwd)
    folder = find_sweep("pairs")
    progress = resolve("pairs", folder, folder.load_spec()).checkpoint.progress
    assert progress.epoch == 4 and progress.t > 0 and set(progress.moments) == {"v", "s"}
    assert set(progress.generators) == {"dropout", "shuffle"}  # kept with its progress: exact

    (without,) = sorted({0, 1, 2, 3} - kept)[:1]
    refused = cli("train", "pairs.yaml", "--from", f"pairs:only:{without}", cwd=cwd)
    assert refused.returncode == 2 and "the trial kept no model" in refused.stderr


def test_the_stage_run_records_the_parquet_file_as_its_input_dataset(sweep):
    cwd, data, _ = sweep
    client = MlflowClient(f"sqlite:///{cwd / 'sweeps/pairs/mlflow.db'}")
    experiment = client.get_experiment_by_name("pairs")
    (stage,) = client.search_runs([experiment.experiment_id], "tags.`sweeper.kind` = 'stage'")
    (given,) = stage.inputs.dataset_inputs
    assert {t.key: t.value for t in given.tags} == {"mlflow.data.context": "training"}
    dataset = given.dataset
    assert (dataset.name, dataset.source_type) == ("pairs.parquet", "local")
    assert json.loads(dataset.source) == {"uri": (cwd / "pairs.parquet").resolve().as_uri()}
    columns = json.loads(dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in columns] == [
        ("f0", "double"),
        ("f1", "double"),
        ("f2", "double"),
        ("label", "string"),
    ]
    assert json.loads(dataset.profile) == {"num_rows": len(data)}
    assert len(dataset.digest) == 16


WITHOUT_THE_PROJECT = """
import json, sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.path = [p for p in sys.path if p not in ("", sys.argv[2]) and "__editable__" not in p]
import mlflow, pandas as pd
rows = pd.DataFrame({"f0": [1.0, -1.0], "f1": [6.0, 4.0], "f2": [0.0, 0.0]})
print(json.dumps(list(mlflow.pyfunc.load_model(sys.argv[1]).predict(rows))))
import model, sweeper
print(model.__file__.startswith(sys.argv[1]), sweeper.__file__.startswith(sys.argv[1]))
"""


def test_a_kept_model_loads_without_the_project_and_beside_a_users_model_py(sweep, tmp_path):
    """It imported `model` and `sweeper` from wherever they were installed: without them it
    failed, and beside a user's own `model.py` it imported that ("'model' is not a package")."""
    cwd, _, best = sweep
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'sweeps/pairs/mlflow.db'}")
    try:
        local = mlflow.artifacts.download_artifacts(best["model_uri"], dst_path=str(tmp_path))
    finally:
        mlflow.set_tracking_uri(None)
    user = tmp_path / "project"
    user.mkdir()
    (user / "model.py").write_text("raise ImportError('the user model.py was imported')\n")
    root = str(Path(__file__).resolve().parents[2])
    shown = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_PROJECT, local, root],
        cwd=user, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    predicted, bundled = shown.stdout.strip().splitlines()
    assert set(json.loads(predicted)) <= {"same", "different"}
    assert bundled == "True True"  # the model's own copies of the packages


def test_a_moved_sweep_folder_still_predicts(sweep, tmp_path):
    """MLflow records where the artifacts were when each run was made: a sweep folder moved or
    renamed failed to predict ("Failed to download artifacts from path 'model'")."""
    import shutil

    cwd, data, _ = sweep
    data.drop(columns="label").to_csv(tmp_path / "rows.csv", index=False)
    original = cwd / "sweeps" / "pairs"
    moved = tmp_path / "elsewhere" / "pairs"
    shutil.copytree(original, moved)
    (original / "artifacts").rename(original / "artifacts.away")  # as if it had moved
    try:
        done = cli("predict", str(moved), "rows.csv", "--out", "out.csv", cwd=tmp_path)
    finally:
        (original / "artifacts.away").rename(original / "artifacts")
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "out.csv")) == len(data)


def test_a_moved_sweep_folder_still_continues_its_kept_model(sweep, tmp_path):
    """`sweeper train --from SWEEP` of a moved or renamed folder read the kept model where
    MLflow recorded it ("Failed to download artifacts from path 'network'"), as predict did."""
    import shutil

    cwd, _, _ = sweep
    original = cwd / "sweeps" / "pairs"
    moved = tmp_path / "elsewhere" / "pairs"
    shutil.copytree(original, moved)
    (original / "artifacts").rename(original / "artifacts.away")  # as if it had moved
    try:
        # a new panda folder (tmp_path/sweeps/pairs) from the moved sweep's best trial
        done = cli(
            "train", str(moved / "spec.yaml"), "--from", str(moved), "--epochs", "1", cwd=tmp_path
        )
    finally:
        (original / "artifacts.away").rename(original / "artifacts")
    assert done.returncode == 0, done.stderr
    assert "checkpoints kept at epochs" in done.stdout


def test_a_moved_sweep_folder_is_not_resumed_into_its_old_place(sweep, tmp_path):
    """MLflow fixes where an experiment's files go when it makes it: resumed (or launched, or
    trained into) where it was moved, a sweep wrote its new runs' files in its old place, a
    folder it no longer owns. It is refused, exit 2, with nothing written in either place."""
    import shutil

    cwd, _, _ = sweep
    original = cwd / "sweeps" / "pairs"
    moved = tmp_path / "elsewhere" / "pairs"
    shutil.copytree(original, moved)
    client = MlflowClient(f"sqlite:///{moved / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pairs").experiment_id
    runs = len(client.search_runs([experiment]))
    before = {p: p.stat().st_mtime_ns for p in original.rglob("*")}
    artifacts = sorted((moved / "artifacts").rglob("*"))
    done = cli("resume", str(moved), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{moved} was moved" in done.stderr and str(original / "artifacts") in done.stderr
    assert "Traceback" not in done.stderr
    assert {p: p.stat().st_mtime_ns for p in original.rglob("*")} == before
    assert sorted((moved / "artifacts").rglob("*")) == artifacts
    assert len(client.search_runs([experiment])) == runs

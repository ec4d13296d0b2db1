"""Panda mode day by day through the CLI: train, continue with a smaller learning rate, go back
to an epoch of the first run and branch again; MLflow holds the linked runs, numbered on."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.cli.commands import app, console
from sweeper.run.epoch_checkpoints import PERIODIC, kept
from tests.sweeper.test_panda import SPEC


def _train(*args: str) -> tuple[str, str]:
    """(run id, output) of a `sweeper train` that must succeed."""
    result = CliRunner().invoke(app, ["train", "space.yaml", *args])
    assert result.exit_code == 0, result.output
    return re.search(r"MLflow run\s+([0-9a-f]{32})", result.output)[1], result.output


@pytest.fixture
def family(tmp_path, monkeypatch):
    """Three linked runs: day 1 (epochs 1–3), day 2 from its end (4–5, smaller α), and a
    branch from its epoch 2 (3–4, with L2)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPEC)
    day1, _ = _train("--set", "learning_rate=0.02", "--epochs", "3")
    day2, shown = _train("--from", day1, "--epochs", "2", "--set", "learning_rate=0.005")
    assert "epoch 5 of 4–5 · from panda-0@3 │" in shown  # the view marks the branch
    assert "learning_rate=0.005*" in shown  # the options in force, the changed one marked
    branch, _ = _train("--from", f"{day1}@2", "--epochs", "2", "--set", "l2=0.1")
    client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'panda' / 'mlflow.db'}")
    return client, day1, day2, branch


def test_three_linked_runs_whose_steps_continue_the_epoch_count(family):
    client, day1, day2, branch = family
    runs = {run_id: client.get_run(run_id) for run_id in (day1, day2, branch)}
    steps = {
        run_id: sorted({m.step for m in client.get_metric_history(run_id, "dev_loss")})
        for run_id in runs
    }
    assert steps == {day1: [1, 2, 3], day2: [4, 5], branch: [3, 4]}
    tags = {run_id: run.data.tags for run_id, run in runs.items()}
    assert "sweeper.parent_run" not in tags[day1]
    assert (tags[day2]["sweeper.parent_run"], tags[day2]["sweeper.parent_epoch"]) == (day1, "3")
    assert (tags[branch]["sweeper.parent_run"], tags[branch]["sweeper.parent_epoch"]) == (day1, "2")
    assert runs[branch].info.run_name == "panda-2 (from panda-0@2)"
    assert json.loads(tags[day2]["sweeper.changed"]) == {"learning_rate": [0.02, 0.005]}
    assert json.loads(tags[branch]["sweeper.changed"]) == {"l2": [0.0, 0.1]}
    assert float(runs[day2].data.params["learning_rate"]) == 0.005
    assert int(runs[day2].data.params["epochs"]) == 5  # the last epoch's number
    # each run keeps its epochs' checkpoints (runs this short keep every one)
    kept_files = {
        run_id: sorted(f.path for f in client.list_artifacts(run_id, "checkpoints"))
        for run_id in runs
    }
    assert kept_files[day2] == ["checkpoints/epoch-0004", "checkpoints/epoch-0005"]


def test_history_lists_the_family_and_bad_sources_change_nothing(family, tmp_path, monkeypatch):
    client, day1, day2, branch = family
    monkeypatch.setattr(console, "width", 200)
    result = CliRunner().invoke(app, ["train", "space.yaml", "--history", branch])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "panda-" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["panda-0", "panda-1", "panda-2"]
    assert [row.split("│")[2].strip() for row in rows] == [day1, day2, branch]
    assert [row.split("│")[4].strip() for row in rows] == ["1–3", "4–5", "3–4"]
    assert rows[1].split("│")[3].strip() == "panda-0@3" and "0.02→0.005" in rows[1]
    assert rows[2].split("│")[3].strip() == "panda-0@2" and "l2 0.0→0.1" in rows[2]

    experiment = client.get_experiment_by_name("panda").experiment_id
    before = len(client.search_runs([experiment]))
    for args, expected in (
        (["--from", day1, "--set", "hidden_units=8"], "--set hidden_units: a continued run"),
        (["--from", day1, "--set", "optimizer=gd"], "optimizer would change them"),
        (["--from", f"{day1}@9"], "epoch 9 was not kept; kept epochs: 1, 2, 3"),
        (["--from", day1, "--set", "epochs=0"], "--set epochs=0: with --from"),  # was exit 1
        (["--from", day1, "--set", "epochs=null"], "--set epochs=None: with --from"),
        # was ignored, with keep_prob 1.0→[1.0, 1.0] shown as changed
        (["--from", day1, "--set", "keep_prob_3=0.5"], "--set keep_prob_3: the network has 2"),
        (["--from", "0" * 32], "no such run"),
        (["--from", "panda:only:0"], "the sweep has no such trial"),  # panda runs only
        (["--from", "panda:only"], "expected RUN_ID[@EPOCH], NAME or NAME:STAGE:TRIAL"),
    ):
        result = CliRunner().invoke(app, ["train", "space.yaml", *args])
        assert result.exit_code == 2, result.output
        assert expected in result.output and "Traceback" not in result.output
    assert len(client.search_runs([experiment])) == before
    assert not (tmp_path / "sweeps" / "panda" / "panda-pending").exists()

    # a folder of panda runs only: nothing stopped there, so status did not say to resume
    shown = CliRunner().invoke(app, ["status", "panda", "--json"])
    assert json.loads(shown.output)["state"] == "not started"
    listed = CliRunner().invoke(app, ["list"])
    assert "not started" in listed.output and "stopped" not in listed.output


def test_kept_checkpoints_are_bounded():
    epochs = list(range(1, 101))
    stays = kept(epochs, best=37, every=10)
    assert stays == {10, 20, 30, 37, 40, 50, 60, 70, 80, 90, 100}
    assert len(stays) <= PERIODIC + 2
    assert kept([1, 2, 3], best=None, every=1) == {1, 2, 3}


def _epochs(pending: Path) -> list[int]:
    return [int(p.name.removeprefix("epoch-")) for p in pending.glob("*/epoch-*")]


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda sig: sig.name
)
def test_ctrl_c_keeps_the_last_completed_epoch(tmp_path, sig):
    """SIGTERM (`kill`) and SIGHUP (the terminal closed) ended the process at once: no MLflow
    run, every epoch lost; they now stop it as Ctrl-C does."""
    (tmp_path / "space.yaml").write_text(SPEC)
    pending = tmp_path / "sweeps" / "panda" / "panda-pending"
    process = subprocess.Popen(
        [sys.executable, "-m", "sweeper.cli.commands", "train", "space.yaml", "--epochs", "100000",
         "--set", "batch_size=8"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        # a checkpoint of epoch 3 or later on disk: epoch 2 is complete, checkpointed and
        # recorded (older ones are dropped as the run goes: only the last and the best stay)
        while max(_epochs(pending), default=0) < 3 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        # `delete` deleted the folder under the training run, which then failed at its end
        # (exit 1, FileNotFoundError), every epoch lost
        deleted = CliRunner().invoke(app, ["delete", str(pending.parent), "--yes"])
        assert deleted.exit_code == 2, deleted.output
        assert "has a `sweeper train` run training; stop it" in deleted.output
        process.send_signal(sig)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted: " in out and "dev_accuracy=" in out and "Traceback" not in err
    client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'panda' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("panda").experiment_id])
    assert run.info.status == "KILLED" and run.data.tags["sweeper.outcome"] == "interrupted"
    epochs = int(run.data.tags["sweeper.epochs"])  # those completed before the Ctrl-C
    assert epochs >= 2
    kept_files = [f.path for f in client.list_artifacts(run.info.run_id, "checkpoints")]
    assert f"checkpoints/epoch-{epochs:04d}" in kept_files
    assert max(int(path.rsplit("-", 1)[1]) for path in kept_files) == epochs  # none unrecorded
    assert not pending.exists()  # published, and the pending folder gone

"""Panda mode: `sweeper train` trains one configuration in this process and logs one MLflow run."""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.cli.commands import app
from sweeper.cli.display import sparkline
from sweeper.run.panda import centre
from sweeper.spec.scales import Param

SPEC = """\
name: panda
data: {source: builtin:flower}
train: {epochs: 5, optimizer: adam}
space:
  learning_rate: {scale: log, low: 1.0e-4, high: 1.0e-2}
  hidden_units: {scale: pow2, low: 4, high: 64}
stages:
  - {name: only, trials: 2}
"""


def test_train_logs_one_run_with_the_set_values_and_its_curve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPEC)
    result = CliRunner().invoke(
        app, ["train", "space.yaml", "--set", "learning_rate=0.02", "--set", "epochs=4"]
    )
    assert result.exit_code == 0, result.output
    assert "completed: dev_loss=" in result.output
    assert "train error" in result.output and "dev error" in result.output  # bias vs variance

    client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'panda' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("panda")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["sweeper.kind"] == "panda" and run.info.status == "FINISHED"
    assert float(run.data.params["learning_rate"]) == 0.02
    assert int(run.data.params["hidden_units"]) == 16  # the middle of 4..64 in log2
    curve = client.get_metric_history(run.info.run_id, "dev_accuracy")
    assert sorted(m.step for m in curve) == [1, 2, 3, 4, 4]  # 4 epochs, then the final value
    assert run.data.metrics["test_accuracy"] > 0.5
    for name in ("train_accuracy", "train_loss", "minibatch_cost"):  # train vs dev, per epoch
        assert len(client.get_metric_history(run.info.run_id, name)) >= 4

    # the folder it made is a sweep's to every other command (it had no spec copy: `delete`
    # said "no sweep 'panda'" and `list` did not show it)
    listed = CliRunner().invoke(app, ["list"])
    assert "panda " in listed.output and "0/2" in listed.output, listed.output
    deleted = CliRunner().invoke(app, ["delete", "panda", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert not (tmp_path / "sweeps" / "panda").exists()


def test_bad_overrides_are_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPEC)
    for override, expected in (
        ("learning_rat=0.1", "unknown trainer option"),
        ("keep_prob=2", "keep_prob=2 must be in (0, 1]"),
        ("learning_rate", "expected name=value"),
        ("l2=-1", "l2=-1 must be >= 0"),
        ("learning_rate=null", "learning_rate=None must be a number"),
        # keep_prob_3 of a 2-hidden-layer network was ignored (and logged as a param)
        ("keep_prob_3=0.5", "--set keep_prob_3: the network has 2 hidden layer(s); keep_prob_l"),
        # not "(YAML reads 1e-3 as text: write 1.0e-3)": --set reads 1e-3 as a number
        ("learning_rate=fast", "learning_rate='fast' must be a number\n"),
        ("epochs=3", "--epochs 1 and --set epochs=3 disagree"),  # one of them was dropped
    ):
        result = CliRunner().invoke(
            app, ["train", "space.yaml", "--epochs", "1", "--set", override]
        )
        assert result.exit_code == 2, result.output
        assert expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "sweeps").exists()


def test_a_loss_that_does_not_fit_the_data_is_refused_in_set_as_in_the_spec(tmp_path, monkeypatch):
    """space.yaml refuses mse and, on more than two classes, binary_cross_entropy; --set took
    them and trained (digits with binary_cross_entropy: dev_loss -100.8, dev_accuracy 0.11)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPEC.replace("builtin:flower", "builtin:digits"))
    for loss in ("mse", "binary_cross_entropy"):
        result = CliRunner().invoke(
            app, ["train", "space.yaml", "--epochs", "1", "--set", f"loss={loss}"]
        )
        assert result.exit_code == 2, result.output
        assert f"--set loss={loss}: the data have 10 classes" in result.output
    assert not (tmp_path / "sweeps").exists()


def test_centre_is_the_middle_in_the_scaled_coordinate():
    assert centre(Param(scale="log", low=1e-4, high=1e-2)) == 1e-3
    assert centre(Param(scale="one_minus_log", low=0.9, high=0.999)) == 0.99
    assert centre(Param(scale="pow2", low=16, high=256)) == 64
    assert centre(Param(scale="categorical", choices=["relu", "tanh"])) == "relu"


def test_sparkline_spans_the_range():
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([1.0, float("nan")]) == "▁!"


def test_panda_mode_does_not_import_ray():
    """One model in this process: Ray's import is seconds for nothing (it came with the trial
    task's module, for `fit`)."""
    import subprocess
    import sys

    code = "import sys, sweeper.run.panda; print('ray' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "False"


def test_the_live_view_hears_of_the_epoch_that_ends_training(tmp_path, monkeypatch):
    """The epoch that diverged, or that early stopping ended on, never reached the live view:
    a run diverged at epoch 1 showed an empty table ("epoch 0 of 1–3"), one early-stopped at
    epoch 3 showed epochs 1–2 only, though MLflow holds every epoch."""
    import sweeper
    from sweeper.records import Outcome

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPEC)
    for overrides, outcome in (
        ({"learning_rate": 1e6, "optimizer": "gd"}, Outcome.DIVERGED),
        ({"learning_rate": 0.05, "early_stopping": 1, "epochs": 30}, Outcome.EARLY_STOPPED),
    ):
        seen: list[int] = []
        hear = lambda epoch, metrics, seen=seen: seen.append(epoch)  # noqa: E731
        result = sweeper.train_one("space.yaml", overrides, on_epoch=hear)
        assert result.outcome is outcome
        client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'panda' / 'mlflow.db'}")
        steps = {m.step for m in client.get_metric_history(result.run_id, "minibatch_cost")}
        assert seen == sorted(steps), (overrides, seen)


def test_a_backend_that_is_not_there_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """`--backend foo` (and cupy where it is not installed) failed in training, exit 1,
    "RuntimeError: array backend 'foo' is not installed", the sweep folder already made."""
    import importlib.util

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPEC)
    cases = [("foo", "--backend 'foo': choose one of numpy, cupy, auto")]
    if importlib.util.find_spec("cupy") is None:
        cases.append(("cupy", "--backend cupy: array backend 'cupy' is not installed"))
    for backend, expected in cases:
        result = CliRunner().invoke(
            app, ["train", "space.yaml", "--epochs", "1", "--backend", backend]
        )
        assert result.exit_code == 2, result.output
        assert expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "sweeps").exists()


def test_a_set_option_covers_every_layer_of_the_searched_ones(tmp_path):
    """A sweep that searched keep_prob_2 and hidden_units_1: `--set keep_prob=1.0` still
    trained layer 2 with dropout 0.5, and `--set hidden_units=8` gave widths (64, 8)."""
    from model import TrainConfig
    from sweeper.records import Best
    from sweeper.run.panda import configuration
    from sweeper.spec.schema import load

    (tmp_path / "space.yaml").write_text(SPEC)
    best = Best("only", 0, 0.9, {"num_layers": 2, "hidden_units_1": 64, "keep_prob_2": 0.5}, {})
    spec = load(tmp_path / "space.yaml")
    config = TrainConfig.from_dict(
        configuration(spec, best, {"hidden_units": 8, "keep_prob": 1}, 3)
    )
    assert (config.hidden_widths, config.keep_prob) == ((8, 8), 1)
    config = TrainConfig.from_dict(configuration(spec, best, {"keep_prob_1": 0.8}, 3))
    assert (config.hidden_widths, config.keep_prob) == ((64, 64), [0.8, 0.5])  # layer by layer


def test_a_ctrl_c_once_training_is_over_waits_until_the_run_is_logged(tmp_path, monkeypatch):
    """A Ctrl-C in the second between the last epoch and the end of logging (6 epochs trained
    and shown) exited "interrupted" with no MLflow run: every epoch lost, its checkpoints left
    in panda-pending/. Here it comes as the live view shows the epoch that diverged, which it
    hears of once training is over."""
    import signal

    import pytest

    import sweeper

    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPEC)
    ctrl_c = lambda epoch, metrics: signal.raise_signal(signal.SIGINT)  # noqa: E731
    overrides = {"learning_rate": 1e6, "optimizer": "gd"}
    try:
        result = sweeper.train_one("space.yaml", overrides, on_epoch=ctrl_c)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C after training ended lost the run")
    client = MlflowClient(f"sqlite:///{tmp_path / 'sweeps' / 'panda' / 'mlflow.db'}")
    assert client.get_run(result.run_id).data.tags["sweeper.outcome"] == "diverged"
    assert not (tmp_path / "sweeps" / "panda" / "panda-pending").exists()

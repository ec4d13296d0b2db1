"""Training end to end on real data, the stop conditions, and backend independence."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from model import Outcome, TrainConfig, evaluate, get_backend, train
from model.schedules import learning_rate
from sweeper.data.builtin import digits, flower


def _split(X, y, test_fraction=0.25, seed=0):
    """Shuffle, split, standardize on train only; return (n_x, m) arrays as the trainer wants."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, tr = order[:n_test], order[n_test:]
    mu, sigma = X[tr].mean(axis=0), X[tr].std(axis=0) + 1e-8
    return ((X[tr] - mu) / sigma).T, y[tr], ((X[test] - mu) / sigma).T, y[test]


def test_digits_reaches_97_percent_test_accuracy():
    X_train, y_train, X_test, y_test = _split(*digits())
    config = TrainConfig(
        learning_rate=0.003,
        epochs=40,
        batch_size=64,
        hidden_units=128,
        num_layers=2,
        keep_prob=0.9,
        l2=0.1,
    )
    result = train(config, X_train, y_train, n_classes=10)
    assert evaluate(result.network, X_test, y_test)["accuracy"] >= 0.97


def test_flower_reaches_90_percent_test_accuracy():
    X_train, y_train, X_test, y_test = _split(*flower(m=800))
    config = TrainConfig(
        learning_rate=0.01,
        epochs=200,
        batch_size=32,
        hidden_units=32,
        num_layers=2,
        activation="tanh",
        init="xavier",
    )
    result = train(config, X_train, y_train, n_classes=2)
    assert evaluate(result.network, X_test, y_test)["accuracy"] >= 0.90


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam"])
def test_every_optimizer_learns_with_batch_norm(optimizer):
    X_train, y_train, X_dev, y_dev = _split(*flower(m=400))
    config = TrainConfig(
        optimizer=optimizer,
        learning_rate=0.05 if optimizer in ("gd", "momentum") else 0.005,
        epochs=40,
        batch_size=32,
        hidden_units=16,
        batch_norm=True,
    )
    result = train(config, X_train, y_train, X_dev, y_dev, n_classes=2)
    assert result.last["dev_accuracy"] > 0.8


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_huge_learning_rate_is_reported_as_diverged(optimizer):
    X_train, y_train, X_dev, y_dev = _split(*digits())
    config = TrainConfig(learning_rate=1e3, optimizer=optimizer, epochs=20, init="he")
    result = train(config, X_train, y_train, X_dev, y_dev, n_classes=10)
    assert result.outcome is Outcome.DIVERGED
    assert len(result.history) < 20
    # NaN/inf, or finite but far above the untrained network's cost
    cost = result.last["minibatch_cost"]
    assert not math.isfinite(cost) or cost > 1e3


def test_callback_stops_training_and_sees_every_epoch():
    X_train, y_train, X_dev, y_dev = _split(*flower(m=200))
    seen = []

    def stop_after_three(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return epoch == 3

    result = train(TrainConfig(epochs=10), X_train, y_train, X_dev, y_dev, 2, stop_after_three)
    assert result.outcome is Outcome.STOPPED
    assert [e for e, _ in seen] == [1, 2, 3]
    assert seen[0][1] == [
        "dev_accuracy",
        "dev_loss",
        "minibatch_cost",
        "train_accuracy",
        "train_loss",
    ]


def test_train_metrics_are_inference_mode_without_the_l2_term():
    """train_loss/accuracy: the network as it predicts (no dropout, no λ term), on the training
    set (all of it here, fewer than TRAIN_EVAL_EXAMPLES); the running mini-batch cost is not."""
    X_train, y_train, X_dev, y_dev = _split(*flower(m=300))
    config = TrainConfig(epochs=3, keep_prob=0.5, l2=5.0, hidden_units=16)
    result = train(config, X_train, y_train, X_dev, y_dev, n_classes=2)
    on_train = evaluate(result.network, X_train, y_train)
    assert result.last["train_loss"] == pytest.approx(on_train["loss"], rel=1e-6)
    assert result.last["train_accuracy"] == on_train["accuracy"]
    assert result.last["minibatch_cost"] != pytest.approx(result.last["train_loss"], rel=0.05)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_early_stopping_restores_the_best_epoch(batch_norm):
    """θ and the batch-norm running statistics of the best epoch come back: the returned
    network is exactly the one the kept epoch's metrics describe."""
    X_train, y_train, X_dev, y_dev = _split(*flower(m=200))
    config = TrainConfig(
        learning_rate=0.05, epochs=300, early_stopping=3, hidden_units=64, batch_norm=batch_norm
    )
    result = train(config, X_train, y_train, X_dev, y_dev, n_classes=2)
    assert result.outcome is Outcome.EARLY_STOPPED
    best = min(range(len(result.history)), key=lambda i: result.history[i]["dev_loss"])
    assert result.kept_epoch == best + 1 < len(result.history)
    dev = evaluate(result.network, X_dev, y_dev)
    assert dev["loss"] == pytest.approx(result.kept["dev_loss"], rel=1e-6)
    assert dev["accuracy"] == result.kept["dev_accuracy"]
    assert evaluate(result.network, X_train, y_train)["loss"] == pytest.approx(
        result.kept["train_loss"], rel=1e-6
    )


def test_hidden_units_per_layer_builds_the_course_layer_dims():
    X_train, y_train, _, _ = _split(*flower(m=100))
    result = train(TrainConfig(hidden_units=[20, 3], epochs=1), X_train, y_train, n_classes=2)
    assert result.network.arch.layer_dims == (2, 20, 3, 1)  # the course's layers_dims
    config = TrainConfig.from_dict(
        {
            "num_layers": 3,
            "hidden_units": 8,
            "hidden_units_2": 5,
            "hidden_units_4": 99,
            "keep_prob_3": 0.5,
        }
    )
    assert config.hidden_widths == (8, 5, 8)  # layer 4 is deeper than num_layers: ignored
    assert config.keep_prob == [1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match=r"num_layers=3 disagrees with hidden_units=\[20, 3\]"):
        TrainConfig(num_layers=3, hidden_units=[20, 3])
    with pytest.raises(ValueError, match=r"keep_prob=.* one value per hidden layer"):
        TrainConfig(hidden_units=[20, 3], keep_prob=[0.5])
    with pytest.raises(ValueError, match="unknown trainer options"):
        TrainConfig.from_dict({"hidden_units_0": 3})


def test_last_partial_mini_batch_is_trained_on():
    X = np.random.default_rng(0).standard_normal((3, 70))
    y = (X[0] > 0).astype(int)
    result = train(TrainConfig(batch_size=64, epochs=1, optimizer="gd"), X, y, n_classes=2)
    assert result.network.backend.xp is np  # sanity: default backend
    assert (64, True) in result.network._workspaces and (6, True) in result.network._workspaces


def test_regression_with_mse():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (2, 512))
    y = (X[0] * X[1]).reshape(1, -1)
    config = TrainConfig(
        loss="mse", learning_rate=0.01, epochs=60, batch_size=32, activation="tanh"
    )
    result = train(config, X, y, X, y, n_classes=None)
    assert result.last["dev_loss"] < 0.01
    assert "dev_accuracy" not in result.last


def test_unknown_trainer_option_is_named():
    with pytest.raises(ValueError, match="learnig_rate"):
        TrainConfig.from_dict({"learnig_rate": 0.1})


@pytest.mark.parametrize(
    "schedule,option,value,rule",
    [
        ("cosine", "lr_schedule", "cosine", "choose one of"),
        ("exponential", "lr_base", 0.0, r"must be in \(0, 1\]"),
        ("step", "lr_base", 1.5, r"must be in \(0, 1\]"),
        ("inverse_time", "lr_decay", -1.0, "must be >= 0"),
        ("staircase", "lr_step", 0, "must be >= 1"),
    ],
)
def test_schedule_options_are_validated_with_their_names(schedule, option, value, rule):
    with pytest.raises(ValueError, match=f"{option}={value!r}.*{rule}"):
        TrainConfig(**{"lr_schedule": schedule, option: value})


@pytest.mark.parametrize(
    "schedule,option,reads",
    [
        ("exponential", "lr_decay", "lr_base"),  # the old spelling of the base: told to move
        ("step", "lr_decay", "lr_base and lr_step"),
        ("inverse_sqrt", "lr_decay", "none of them"),
        ("inverse_time", "lr_base", "lr_decay"),
        ("staircase", "lr_base", "lr_decay and lr_step"),
        ("inverse_sqrt", "lr_base", "none of them"),
        ("inverse_time", "lr_step", "lr_decay"),
        ("exponential", "lr_step", "lr_base"),
    ],
)
def test_a_schedule_option_the_schedule_ignores_is_refused(schedule, option, reads):
    """Set but without effect is an error naming the option, the schedule and what it reads."""
    value = 2 if option == "lr_step" else 0.95  # epochs per step: a whole number
    with pytest.raises(ValueError, match=rf"{option}={value} .*lr_schedule='{schedule}'.*{reads}"):
        TrainConfig(lr_schedule=schedule, **{option: value})


def test_schedule_options_reach_the_learning_rate():
    """Each schedule gets its own options, and the schedules' defaults where unset."""
    exponential = TrainConfig(lr_schedule="exponential", lr_base=0.5)
    assert exponential.schedule_arguments() == {"base": 0.5}
    assert (
        learning_rate(1.0, 3, schedule="exponential", **exponential.schedule_arguments()) == 0.125
    )
    staircase = TrainConfig(lr_schedule="staircase", lr_decay=1.0, lr_step=1000)
    assert staircase.schedule_arguments() == {"decay_rate": 1.0, "interval": 1000}
    assert TrainConfig(lr_schedule="inverse_sqrt").schedule_arguments() == {}
    assert TrainConfig().schedule_arguments() == {}  # inverse_time, decay rate 0: constant α


def test_trainer_runs_through_a_non_numpy_namespace():
    """The CuPy path without a GPU: every array op must go through xp, none through numpy."""
    from tests.model import device_namespace

    backend = get_backend(device_namespace.xp.__name__)
    X_train, y_train, X_dev, y_dev = _split(*flower(m=200))
    for batch_norm, keep_prob in [(False, 1.0), (True, 0.8)]:
        config = TrainConfig(epochs=3, batch_norm=batch_norm, keep_prob=keep_prob, l2=0.1)
        result = train(config, X_train, y_train, X_dev, y_dev, n_classes=2, backend=backend)
        assert isinstance(result.network.theta, device_namespace.DeviceArray)
        assert result.outcome is Outcome.COMPLETED


def test_device_namespace_catches_numpy_only_code():
    """The stand-in must be able to fail, or the test above proves nothing."""
    from tests.model import device_namespace

    a = device_namespace.asarray(np.ones(3))
    with pytest.raises(device_namespace.HostDeviceMixError):
        a + np.ones(3)
    with pytest.raises(device_namespace.HostDeviceMixError):
        np.concatenate([a, a])


def test_import_model_loads_no_orchestration_library():
    code = (
        "import sys, model, model.train, model.gradcheck; "
        "bad = [m for m in ('ray', 'optuna', 'mlflow', 'cupy') if m in sys.modules]; "
        "sys.exit(','.join(bad) or None)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_an_initial_state_of_another_architecture_is_refused():
    X, y = flower(m=40)
    other = train(TrainConfig(hidden_units=[3], epochs=1), X.T, y, n_classes=2).network.state()
    with pytest.raises(ValueError, match=r"initial θ has 13 parameters.*has 21"):
        train(TrainConfig(hidden_units=[5], epochs=1), X.T, y, n_classes=2, initial=other)

"""Training end to end on real data, the stop conditions, and backend independence."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from model import Outcome, TrainConfig, evaluate, get_backend, train
from sweeper.builtin_datasets import digits, flower


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
    assert not math.isfinite(result.last["train_loss"]) or result.last["train_loss"] > 1e3


def test_callback_stops_training_and_sees_every_epoch():
    X_train, y_train, X_dev, y_dev = _split(*flower(m=200))
    seen = []

    def stop_after_three(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return epoch == 3

    result = train(TrainConfig(epochs=10), X_train, y_train, X_dev, y_dev, 2, stop_after_three)
    assert result.outcome is Outcome.STOPPED
    assert [e for e, _ in seen] == [1, 2, 3]
    assert seen[0][1] == ["dev_accuracy", "dev_loss", "train_loss"]


def test_early_stopping_restores_the_best_parameters():
    X_train, y_train, X_dev, y_dev = _split(*flower(m=200))
    config = TrainConfig(learning_rate=0.05, epochs=300, early_stopping=3, hidden_units=64)
    result = train(config, X_train, y_train, X_dev, y_dev, n_classes=2)
    assert result.outcome is Outcome.EARLY_STOPPED
    best = min(h["dev_loss"] for h in result.history)
    assert evaluate(result.network, X_dev, y_dev)["loss"] == pytest.approx(best, rel=1e-5)


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
    "option,value",
    [
        ("lr_schedule", "cosine"),
        ("lr_base", 0.0),
        ("lr_base", 1.5),
        ("lr_decay", -1.0),
        ("lr_step", 0),
    ],
)
def test_schedule_options_are_validated_with_their_names(option, value):
    with pytest.raises(ValueError, match=f"{option}="):
        TrainConfig(**{option: value})


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

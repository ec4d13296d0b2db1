"""Training continued from a checkpoint is the same training: 3 + 3 epochs (through the files)
equal 6 in one call, for every optimizer, with and without batch norm and dropout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model import TrainConfig, get_backend, train
from model.checkpoint import Checkpoint

FLOAT64 = get_backend(dtype="float64")


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 0.5)
    return X[:80].T, y[:80], X[80:].T, y[80:]


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("batch_norm, keep_prob", [(False, 1.0), (True, 0.8)])
def test_three_plus_three_epochs_equal_six(tmp_path, optimizer, batch_norm, keep_prob):
    X, y, X_dev, y_dev = _data()
    config = TrainConfig(
        optimizer=optimizer, learning_rate=0.01, lr_decay=0.3, hidden_units=[6, 5],
        batch_size=16, epochs=6, batch_norm=batch_norm, keep_prob=keep_prob, seed=3,
    )  # fmt: skip
    whole = train(config, X, y, X_dev, y_dev, 3, backend=FLOAT64)

    first = train(dataclasses.replace(config, epochs=3), X, y, X_dev, y_dev, 3, backend=FLOAT64)
    first.checkpoint().save(tmp_path / "day1")
    day1 = Checkpoint.load(tmp_path / "day1")
    second = train(config, X, y, X_dev, y_dev, 3, backend=FLOAT64, resume=day1)

    assert day1.progress.epoch == 3 and second.first_epoch == 4
    np.testing.assert_allclose(second.network.theta, whole.network.theta, rtol=1e-12, atol=1e-14)
    for l in range(1, 3):
        if batch_norm:
            np.testing.assert_allclose(second.network.running_var[l], whole.network.running_var[l])
    assert [h["dev_loss"] for h in second.history] == pytest.approx(
        [h["dev_loss"] for h in whole.history[3:]], rel=1e-12
    )
    # the check can fail: without its moments, generators and epoch count it is another run
    fresh = dataclasses.replace(day1, progress=dataclasses.replace(
        day1.progress, moments={}, generators={}, t=0))  # fmt: skip
    other = train(config, X, y, X_dev, y_dev, 3, backend=FLOAT64, resume=fresh)
    assert not np.allclose(other.network.theta, whole.network.theta, rtol=1e-6)

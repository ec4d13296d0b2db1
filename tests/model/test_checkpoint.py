"""A checkpoint reloads a network that predicts exactly as the trained one, with no pickle."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from model import TrainConfig, train
from model.checkpoint import ARCHITECTURE_FILE, ARRAYS_FILE, Checkpoint


@pytest.mark.parametrize("batch_norm", [False, True])
def test_a_saved_network_predicts_exactly_as_the_trained_one(tmp_path, batch_norm):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 120)).astype(np.float32)
    y = (X[0] + X[1] > 0).astype(np.int64) + (X[2] > 1)
    config = TrainConfig(
        epochs=3, hidden_units=[7, 4], batch_norm=batch_norm, keep_prob=[0.8, 1.0], batch_size=32
    )
    trained = train(config, X, y, n_classes=3).network
    Checkpoint.of(trained).save(tmp_path)

    loaded = Checkpoint.load(tmp_path).network()

    assert loaded.arch == trained.arch
    np.testing.assert_array_equal(loaded.predict(X), trained.predict(X))
    if batch_norm:  # the running statistics, not a fresh μ = 0, σ² = 1, make the prediction
        assert not np.allclose(trained.running_mean[1], 0)
        np.testing.assert_array_equal(loaded.running_var[1], trained.running_var[1])


def test_the_files_are_plain_json_and_arrays_without_pickle(tmp_path):
    trained = train(TrainConfig(epochs=1, hidden_units=3), np.ones((2, 8), np.float32),
                    np.array([0, 1] * 4), n_classes=2).network  # fmt: skip
    Checkpoint.of(trained).save(tmp_path)
    described = json.loads((tmp_path / ARCHITECTURE_FILE).read_text())
    assert described["architecture"]["layer_dims"] == list(trained.arch.layer_dims)
    assert described["blocks"]["W1"] == [0, 2 * 3]  # W1 is (3, 2), first in θ
    with zipfile.ZipFile(tmp_path / ARRAYS_FILE) as archive:
        assert archive.namelist() == ["theta.npy"]
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as arrays:  # object arrays refused
        np.testing.assert_array_equal(arrays["theta"], trained.theta)


def test_a_format_1_checkpoint_still_loads_without_progress(tmp_path):
    trained = train(TrainConfig(epochs=1, hidden_units=3), np.ones((2, 8), np.float32),
                    np.array([0, 1] * 4), n_classes=2)  # fmt: skip
    Checkpoint.of(trained.network).save(tmp_path)  # a network alone: no progress.json
    described = json.loads((tmp_path / ARCHITECTURE_FILE).read_text())
    (tmp_path / ARCHITECTURE_FILE).write_text(json.dumps(described | {"format": 1}))
    loaded = Checkpoint.load(tmp_path)
    assert loaded.progress is None
    np.testing.assert_array_equal(loaded.state.theta, trained.network.theta)
    trained.checkpoint().save(tmp_path / "with")
    progress = Checkpoint.load(tmp_path / "with").progress
    assert (progress.epoch, progress.t, sorted(progress.moments)) == (1, 1, ["s", "v"])
    assert progress.options == TrainConfig(epochs=1, hidden_units=3).to_dict()

"""K networks trained together equal each network trained alone (model.stacked vs model.train)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from model import KeepBest, Outcome, TrainConfig, get_backend, train
from model.network import Architecture, Network
from model.optimizers import make_optimizer
from model.stacked import StackedNetwork, each_trained, pack_key, train_members
from model.train import architecture
from sweeper.data.builtin import digits

FLOAT64 = get_backend("numpy", "float64")


@pytest.fixture(scope="module")
def data():
    """300 digits, standardized: (n_x, m) train and dev sets."""
    X, y = digits()
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-8)
    return X[:240].T, y[:240], X[240:300].T, y[240:300]


def _members(optimizer: str, batch_norm: bool, dropout: bool) -> list[TrainConfig]:
    """Three networks of one architecture that differ in every per-network option."""
    shared = dict(optimizer=optimizer, batch_norm=batch_norm, hidden_units=[16, 12], batch_size=32)
    keep = (lambda p: p) if dropout else (lambda p: 1.0)
    return [
        TrainConfig(**shared, learning_rate=0.01, beta=0.9, epochs=4, seed=1, keep_prob=keep(0.8)),
        TrainConfig(
            **shared,
            learning_rate=0.003,
            beta=0.8,
            beta2=0.99,
            epsilon=1e-6,
            l2=0.5,
            lr_schedule="exponential",
            keep_prob=[keep(0.7), 1.0],
            epochs=3,
            seed=2,
        ),
        TrainConfig(
            **shared,
            learning_rate=0.05,
            beta=0.95,
            lr_decay=0.5,
            early_stopping=1,
            keep_prob=keep(0.9),
            epochs=4,
            seed=3,
        ),
    ]


def _alone(config, data):
    """model.train of one config in float64: the reference."""
    X_train, y_train, X_dev, y_dev = data
    return train(config, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64)


def _assert_same(packed, alone, rtol):
    assert packed.outcome is alone.outcome
    assert packed.kept_epoch == alone.kept_epoch
    assert len(packed.history) == len(alone.history)
    for mine, theirs in zip(packed.history, alone.history, strict=True):
        assert mine.keys() == theirs.keys()
        for name in mine:
            assert mine[name] == pytest.approx(theirs[name], rel=rtol, abs=rtol), name
    np.testing.assert_allclose(packed.network.theta, alone.network.theta, rtol=rtol, atol=rtol)
    for mine, theirs in zip(
        packed.network.running_var + packed.network.running_mean,
        alone.network.running_var + alone.network.running_mean,
        strict=True,
    ):
        if theirs is not None:
            np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("dropout", [False, True])
def test_each_member_equals_training_it_alone(data, optimizer, batch_norm, dropout):
    X_train, y_train, X_dev, y_dev = data
    configs = _members(optimizer, batch_norm, dropout)
    packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64)
    for config, result in zip(configs, packed, strict=True):
        _assert_same(result, _alone(config, data), rtol=1e-10)
    assert [len(r.history) for r in packed][:2] == [4, 3]  # each ran its own number of epochs


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam"])
def test_a_float32_step_with_per_network_rows_is_each_networks_own_step(optimizer):
    """No BLAS here, so exact: K networks' (K, 1) float64 rows of α, β, β2, ε update a float32
    θ exactly as K lone optimizers with Python floats do (each row is cast as NumPy casts a
    float: `Backend.coefficient`), and hand over the same moments."""
    backend, rng = get_backend(), np.random.default_rng(0)
    alphas, betas, beta2s, epsilons = [0.01, 0.003], [0.9, 0.8], [0.999, 0.99], [1e-8, 1e-6]
    theta = rng.standard_normal((2, 50)).astype(np.float32)
    row = lambda values: np.array(values)[:, None]  # noqa: E731
    pack = make_optimizer(optimizer, theta.shape, backend, row(betas), row(beta2s), row(epsilons))
    alone = [
        make_optimizer(optimizer, 50, backend, *h)
        for h in zip(betas, beta2s, epsilons, strict=True)
    ]
    thetas = [theta[k].copy() for k in range(2)]
    for _ in range(3):
        g = rng.standard_normal((2, 50)).astype(np.float32)
        pack.step(theta, g, row(alphas))
        for k, (one, alpha) in enumerate(zip(alone, alphas, strict=True)):
            one.step(thetas[k], g[k].copy(), alpha)
    for k, one in enumerate(alone):
        np.testing.assert_array_equal(theta[k], thetas[k])
        for name, moment in pack.moments().items():
            np.testing.assert_array_equal(moment[k], one.moments()[name])


def test_a_packs_dropout_masks_are_each_networks_own():
    """Each network's masks come from its own generator with its own keep_prob (a network that
    keeps every unit of a layer draws nothing there); the pack thresholds them at once."""
    backend = get_backend()
    keep_probs = [(0.8, 0.5), (0.7, 1.0), (1.0, 0.9)]
    arch = Architecture(layer_dims=(5, 6, 4, 3), keep_prob=(0.7, 0.5))
    pack = StackedNetwork(arch, backend, [1, 2, 3], keep_probs)
    alone = [
        Network(replace(arch, keep_prob=p), backend, seed=k + 1) for k, p in enumerate(keep_probs)
    ]
    for _ in range(2):
        for l, units in ((1, 6), (2, 4)):
            D = np.empty((3, units, 7), dtype=np.float32)
            pack._draw_dropout_mask(l, D)
            for k, net in enumerate(alone):
                if keep_probs[k][l - 1] < 1.0:
                    D_k = np.empty((units, 7), dtype=np.float32)
                    net._draw_dropout_mask(l, D_k)
                else:
                    D_k = np.ones((units, 7), dtype=np.float32)
                np.testing.assert_array_equal(D[k], D_k)


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_float32_members_equal_training_alone(data, optimizer, batch_norm):
    """In float32, the sweep's dtype, end to end with dropout. Bit for bit with OpenBLAS (numpy's
    batched product calls the same gemm per network as the lone product); the 1e-6 leaves room
    for a BLAS whose rounding depends on alignment, though Adam can make a last-bit difference a
    whole step. Before the rows were cast, Adam and RMSprop with batch norm drifted 1.6e-2 and
    fail this; gd and momentum drifted by one float32 ulp, which the exact tests above catch."""
    X_train, y_train, X_dev, y_dev = data
    configs = _members(optimizer, batch_norm, dropout=True)
    packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10)
    for config, result in zip(configs, packed, strict=True):
        assert result.network.theta.dtype == np.float32
        _assert_same(result, train(config, X_train, y_train, X_dev, y_dev, 10), rtol=1e-6)


def test_regression_members_with_a_dev_set_equal_training_alone(data):
    """mse has no classes: the dev split's accuracy was computed anyway and raised."""
    X_train, y_train, X_dev, y_dev = data
    targets = (y_train / 9.0, y_dev / 9.0)
    configs = [TrainConfig(loss="mse", hidden_units=[8], epochs=2, seed=s) for s in (0, 1)]
    packed = train_members(configs, X_train, targets[0], X_dev, targets[1], None, backend=FLOAT64)
    for config, result in zip(configs, packed, strict=True):
        alone = train(config, X_train, targets[0], X_dev, targets[1], None, backend=FLOAT64)
        assert "dev_accuracy" not in result.history[-1]
        _assert_same(result, alone, 1e-10)


def test_a_diverging_member_leaves_and_the_others_go_on(data):
    """α = 1e4 makes one network's cost NaN/inf or 1000× its start; the other two are unaffected."""
    X_train, y_train, X_dev, y_dev = data
    configs = _members("adam", batch_norm=False, dropout=True)
    configs[1] = TrainConfig(**{**configs[1].to_dict(), "learning_rate": 1e4, "optimizer": "adam"})
    packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64)
    assert packed[1].outcome is Outcome.DIVERGED
    for config, result in zip(configs, packed, strict=True):
        alone = train(config, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64)
        assert len(result.history) == len(alone.history)
        if result.outcome is not Outcome.DIVERGED:
            _assert_same(result, alone, rtol=1e-10)


def test_a_nan_cost_mid_epoch_drops_only_that_member(data):
    """A NaN input for one network only is impossible; NaN weights are: θ_1 poisoned mid-pack."""
    X_train, y_train, X_dev, y_dev = data
    configs = _members("momentum", batch_norm=False, dropout=False)
    configs[0] = TrainConfig(**{**configs[0].to_dict(), "learning_rate": 1e30})  # overflows to inf
    packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64)
    assert packed[0].outcome is Outcome.DIVERGED
    assert math.isinf(packed[0].history[-1]["minibatch_cost"])
    for config, result in list(zip(configs, packed, strict=True))[1:]:
        _assert_same(result, _alone(config, data), rtol=1e-10)


def test_a_callback_stops_one_member_alone(data):
    X_train, y_train, X_dev, y_dev = data
    configs = _members("adam", batch_norm=True, dropout=False)
    seen: list[tuple[int, dict[int, dict[str, float]]]] = []

    def stop_first_after_2(epoch, training):
        seen.append((epoch, training))
        return [0] if epoch == 2 else []

    packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10, stop_first_after_2, FLOAT64)
    assert packed[0].outcome is Outcome.STOPPED and len(packed[0].history) == 2
    # one call per epoch with every network still training; a stopped one reports no more
    assert [(epoch, sorted(training)) for epoch, training in seen[:3]] == [
        (1, [0, 1, 2]),
        (2, [0, 1, 2]),
        (3, [1, 2]),
    ]
    for epoch, training in seen:
        for k, metrics in training.items():
            assert metrics == packed[k].history[epoch - 1]
    # each network is handed out as it ends, while the others train on: (k, epochs reported)
    seen.clear()
    splits = (X_train, y_train, X_dev, y_dev, 10)
    ended = [(k, len(seen)) for k, _ in each_trained(configs, *splits, stop_first_after_2, FLOAT64)]
    assert ended == [(0, 2), (1, 3), (2, 4)]
    for config, result in list(zip(configs, packed, strict=True))[1:]:
        _assert_same(result, _alone(config, data), rtol=1e-10)


def test_members_of_different_architectures_are_refused(data):
    X_train, y_train, *_ = data
    configs = [TrainConfig(hidden_units=16), TrainConfig(hidden_units=32)]
    assert pack_key(configs[0]) != pack_key(configs[1])
    with pytest.raises(ValueError, match="share"):
        train_members(configs, X_train, y_train, n_classes=10)


def test_stacked_initialization_and_masks_are_each_members_own_draws():
    """W^[l]_k and D^[l]_k are what a lone network seeded seed_k draws, in the same order."""
    config = TrainConfig(hidden_units=[5, 4], keep_prob=0.5)
    arch = architecture(config, 3, 10)
    stacked = StackedNetwork(arch, FLOAT64, [7, 8], [(0.5, 0.5), (0.5, 0.5)])
    X = np.random.default_rng(0).standard_normal((3, 6))
    stacked.forward(np.stack([X, X]), training=True)
    for k, seed in enumerate([7, 8]):
        from model import Network

        alone = Network(arch, FLOAT64, seed=seed)
        np.testing.assert_array_equal(stacked.theta[k], alone.theta)
        alone.forward(X, training=True)
        np.testing.assert_array_equal(stacked._ws.D[1][k], alone._ws.D[1])
        np.testing.assert_array_equal(stacked._ws.A[2][k], alone._ws.A[2])


def test_stacked_trainer_runs_through_a_non_numpy_namespace(data):
    """The CuPy path without a GPU: every op of the pack goes through xp."""
    from tests.model import device_namespace

    backend = get_backend(device_namespace.xp.__name__)
    X_train, y_train, X_dev, y_dev = data
    configs = _members("adam", batch_norm=True, dropout=True)
    packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10, backend=backend)
    assert all(isinstance(r.network.theta, device_namespace.DeviceArray) for r in packed)
    numpy_packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10)
    for result, reference in zip(packed, numpy_packed, strict=True):
        assert result.history == reference.history


@pytest.mark.parametrize("optimizer, batch_norm", [("adam", False), ("rmsprop", True)])
def test_an_early_stopped_member_keeps_its_best_epoch(data, optimizer, batch_norm):
    """α = 1 overfits 240 examples at once: that network stops early, restored to its best epoch."""
    X_train, y_train, X_dev, y_dev = data
    configs = _members(optimizer, batch_norm, dropout=True)
    configs[2] = TrainConfig(**{**configs[2].to_dict(), "learning_rate": 1.0, "epochs": 6})
    packed = train_members(configs, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64)
    assert packed[2].outcome is Outcome.EARLY_STOPPED
    assert packed[2].kept_epoch < len(packed[2].history)
    for config, result in zip(configs, packed, strict=True):
        _assert_same(result, _alone(config, data), rtol=1e-10)


@pytest.mark.parametrize("metric, maximize", [("dev_accuracy", True), ("dev_loss", False)])
def test_members_keep_their_best_epoch_as_training_alone_does(data, metric, maximize):
    """`keep_best` (objective.at: best) in a pack: each member returns the epoch model.train
    would, early-stopped or not; at α = 0.3 the best epoch is an early one (4 by dev accuracy,
    6 by dev loss, of 8)."""
    X_train, y_train, X_dev, y_dev = data
    configs = _members("adam", True, dropout=True)
    configs[0] = TrainConfig(**{**configs[0].to_dict(), "learning_rate": 0.3, "epochs": 8})
    keep = KeepBest(metric, maximize)
    packed = train_members(
        configs, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64, keep_best=keep
    )
    assert packed[0].kept_epoch < len(packed[0].history)  # not the last epoch's network
    for config, result in zip(configs, packed, strict=True):
        alone = train(config, X_train, y_train, X_dev, y_dev, 10, backend=FLOAT64, keep_best=keep)
        _assert_same(result, alone, rtol=1e-10)
        # continued (`sweeper train --from`), it goes on after the epoch it holds, as alone:
        # a member's checkpoint had no progress, and was continued after its last epoch
        assert result.checkpoint().progress.epoch == alone.checkpoint().progress.epoch
        assert result.checkpoint().progress.epoch == result.kept_epoch
        # and its divergence reference, the untrained network's cost (it had none: continued at
        # α = 1, a packed digits trial "diverged" at a cost of 31, 1000 × its trained cost)
        initial_cost = result.checkpoint().progress.initial_cost
        assert initial_cost == pytest.approx(alone.checkpoint().progress.initial_cost, rel=1e-10)

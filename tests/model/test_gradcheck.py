"""Backprop against two-sided numerical gradients for every activation × loss combination,
and with dropout (a fixed mask) for every hidden activation × batch norm × L2."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from model import get_backend
from model.gradcheck import gradient_check
from model.network import Architecture, Network

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu"]
LOSSES = ["softmax_cross_entropy", "binary_cross_entropy", "mse"]


def _targets(loss: str, rng: np.random.Generator, m: int, n_out: int) -> np.ndarray:
    if loss == "softmax_cross_entropy":
        Y = np.zeros((n_out, m))
        Y[rng.integers(0, n_out, m), np.arange(m)] = 1.0
        return Y
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (1, m)).astype(np.float64)
    return rng.standard_normal((n_out, m))


@pytest.mark.parametrize(
    "activation,loss,batch_norm,l2",
    [
        (a, loss, bn, l2)
        for a, loss in itertools.product(ACTIVATIONS, LOSSES)
        for bn, l2 in [(False, 0.0), (True, 0.0), (False, 0.7), (True, 0.7)]
    ],
)
def test_backprop_matches_numerical_gradient(activation, loss, batch_norm, l2, backend64, rng):
    n_out = 1 if loss == "binary_cross_entropy" else 3
    arch = Architecture(
        layer_dims=(4, 5, 3, n_out),
        activation=activation,
        loss=loss,
        init="xavier",
        batch_norm=batch_norm,
    )
    net = Network(arch, backend64, seed=1)
    X = rng.standard_normal((4, 7))
    Y = _targets(loss, rng, 7, n_out)
    assert gradient_check(net, X, Y, l2=l2).error < 1e-7


@pytest.mark.parametrize(
    "activation,batch_norm,l2",
    list(itertools.product(ACTIVATIONS, [False, True], [0.0, 0.7])),
)
def test_backprop_with_dropout_matches_numerical_gradient(activation, batch_norm, l2, rng):
    """Dropout with the mask held fixed: g′ must come from the activation before the mask."""
    arch = Architecture(
        layer_dims=(4, 6, 5, 3),
        activation=activation,
        init="xavier",
        batch_norm=batch_norm,
        keep_prob=0.7,
    )
    net = Network(arch, get_backend("numpy", dtype="float64"), seed=2)
    for b in net.b[1:]:  # b = 0 puts Z exactly on ReLU's kink for an example whose inputs
        if b is not None:  # are all dropped, where the two-sided difference reads ½
            b[...] = rng.normal(0.0, 0.1, b.shape)
    X = rng.standard_normal((4, 9))
    Y = _targets("softmax_cross_entropy", rng, 9, 3)
    check = gradient_check(net, X, Y, l2=l2)
    assert check.error < 1e-7, check.per_block
    assert max(check.per_block.values()) < 1e-6, check.per_block


def test_gradcheck_detects_a_wrong_gradient(backend64, rng):
    """The check must be able to fail: break backward and the error becomes large."""

    class Broken(Network):
        def backward(self, Y, l2=0.0):
            grad = super().backward(Y, l2)
            self.dW[2] *= 1.1
            return grad

    net = Broken(Architecture((3, 4, 2), activation="tanh", init="xavier"), backend64)
    X, Y = rng.standard_normal((3, 5)), np.eye(2)[:, rng.integers(0, 2, 5)]
    check = gradient_check(net, X, Y)
    assert check.error > 1e-3
    assert check.per_block["W2"] > 1e-2 and check.per_block["W1"] < 1e-7  # points at the layer


def test_gradcheck_of_float32_network_runs_in_float64_and_leaves_it_untouched(rng):
    """A float32 network is checked through a float64 copy (float32 differences would read
    ~0.6, 'a bug', on correct code); θ and the running statistics stay as they were."""
    net = Network(
        Architecture((4, 5, 3), activation="tanh", batch_norm=True, keep_prob=0.8), seed=0
    )
    assert net.theta.dtype == np.float32
    X = rng.standard_normal((4, 8)).astype(np.float32)
    Y = np.eye(3)[:, rng.integers(0, 3, 8)].astype(np.float32)
    net.forward(X, training=True)
    theta, mean, var = net.theta.copy(), net.running_mean[1].copy(), net.running_var[1].copy()
    assert gradient_check(net, X, Y, l2=0.3).error < 1e-7
    np.testing.assert_array_equal(net.theta, theta)
    np.testing.assert_array_equal(net.running_mean[1], mean)
    np.testing.assert_array_equal(net.running_var[1], var)

"""Backprop against two-sided numerical gradients for every activation × loss combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from model.gradcheck import gradient_check, numerical_gradient
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
    assert gradient_check(net, X, Y, l2=l2) < 1e-7


def test_gradcheck_detects_a_wrong_gradient(backend64, rng):
    """The check must be able to fail: break backward and the error becomes large."""
    net = Network(Architecture((3, 4, 2), activation="tanh", init="xavier"), backend64)
    X, Y = rng.standard_normal((3, 5)), np.eye(2)[:, rng.integers(0, 2, 5)]
    original = net.backward

    def broken_backward(Y, l2=0.0):
        grad = original(Y, l2)
        grad *= 1.1
        return grad

    net.backward = broken_backward
    assert gradient_check(net, X, Y) > 1e-3


def test_gradcheck_refuses_dropout(backend64, rng):
    net = Network(Architecture((3, 4, 2), keep_prob=0.8), backend64)
    with pytest.raises(ValueError, match="dropout"):
        numerical_gradient(net, rng.standard_normal((3, 2)), np.eye(2))

"""Gradient checking with two-sided differences (course notes, week I).

    dθ_approx[i] = (J(θ + ε·e_i) − J(θ − ε·e_i)) / 2ε
    relative error = ‖dθ_approx − dθ‖₂ / (‖dθ_approx‖₂ + ‖dθ‖₂)   — < 1e−7 is great, > 1e−3 a bug

Use it to debug, never while training (it costs two forward passes per parameter). The check
always runs on a float64 copy of the network: in float32, ε = 1e−7 is below the rounding of J and
correct code would look broken. The network itself, θ and its running statistics, is untouched.

Dropout: the notes' warning holds: with a fresh mask drawn on every forward pass, J is not the
function backward differentiates and the check is meaningless. So the check draws one mask D^[l]
per hidden layer and holds it fixed for backprop and for every perturbed pass: then J(θ) is one
deterministic function and its gradient, dropout included, can be checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model import layers
from model.backend import get_backend
from model.network import Network


@dataclass(frozen=True)
class GradCheck:
    """The overall relative error and one per parameter block (W1, b1, gamma1, beta1, W2, …)."""

    error: float
    per_block: dict[str, float]


def relative_error(approx: Any, grad: Any) -> float:
    """‖approx − grad‖₂ / (‖approx‖₂ + ‖grad‖₂), 0 when both are 0."""
    denominator = float(np.linalg.norm(approx) + np.linalg.norm(grad))
    return float(np.linalg.norm(approx - grad)) / denominator if denominator else 0.0


def float64_copy(net: Network) -> Network:
    """The same network (class, architecture, θ, running statistics) in float64 on NumPy."""
    copy = type(net)(net.arch, get_backend("numpy", dtype="float64"), seed=0)
    to_host = net.backend.to_host
    copy.theta[...] = to_host(net.theta)
    for mine, theirs in (
        (copy.running_mean, net.running_mean),
        (copy.running_var, net.running_var),
    ):
        for l, stat in enumerate(theirs):
            if stat is not None:
                mine[l][...] = to_host(stat)
    return copy


def numerical_gradient(
    net: Network, X: Any, Y: Any, l2: float = 0.0, epsilon: float = 1e-7, masks: Any = None
) -> Any:
    """dθ_approx by two-sided differences of the training-mode cost, dropout masks held fixed."""
    theta = net.theta
    approx = np.zeros_like(theta)
    for i in range(theta.shape[0]):
        saved = float(theta[i])
        theta[i] = saved + epsilon
        net.forward(X, training=True, dropout_masks=masks)
        J_plus = net.cost(Y, l2)
        theta[i] = saved - epsilon
        net.forward(X, training=True, dropout_masks=masks)
        J_minus = net.cost(Y, l2)
        theta[i] = saved
        approx[i] = (J_plus - J_minus) / (2 * epsilon)
    return approx


def gradient_check(
    net: Network, X: Any, Y: Any, l2: float = 0.0, epsilon: float = 1e-7
) -> GradCheck:
    """Backprop's dθ against the two-sided numerical gradient, on a float64 copy of `net`."""
    copy = float64_copy(net)
    X = np.asarray(net.backend.to_host(X), dtype=np.float64)
    Y = np.asarray(net.backend.to_host(Y), dtype=np.float64)
    masks = [None] + [
        layers.draw_dropout_mask(np, copy.rng, keep_prob, np.empty((n, X.shape[1])))
        for n, keep_prob in zip(copy.arch.layer_dims[1:-1], copy.arch.keep_probs, strict=True)
    ]
    copy.forward(X, training=True, dropout_masks=masks)
    grad = copy.backward(Y, l2).copy()
    approx = numerical_gradient(copy, X, Y, l2, epsilon, masks)
    per_block = {
        name: relative_error(approx[span], grad[span]) for name, span in copy.blocks().items()
    }
    return GradCheck(relative_error(approx, grad), per_block)

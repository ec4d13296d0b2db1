"""Gradient checking with two-sided differences (course notes, week I).

    dθ_approx[i] = (J(θ + ε·e_i) − J(θ − ε·e_i)) / 2ε
    relative error = ‖dθ_approx − dθ‖₂ / (‖dθ_approx‖₂ + ‖dθ‖₂)   — < 1e−7 is great, > 1e−3 a bug

Use it to debug, never while training (it costs two forward passes per parameter), in float64,
and with dropout off: with keep_prob < 1 every forward pass draws a new mask, so J is not the
function backward differentiates and the check is meaningless.
"""

from __future__ import annotations

from typing import Any

from model.network import Network


def numerical_gradient(net: Network, X: Any, Y: Any, l2: float = 0.0, epsilon: float = 1e-7) -> Any:
    """dθ_approx by two-sided differences of the training-mode cost."""
    if net.arch.keep_prob < 1.0:
        raise ValueError("gradient checking is invalid with dropout on: set keep_prob=1.0")
    xp = net.backend.xp
    theta = net.theta
    approx = xp.zeros_like(theta)
    for i in range(theta.shape[0]):
        saved = float(theta[i])
        theta[i] = saved + epsilon
        net.forward(X, training=True)
        J_plus = net.cost(Y, l2)
        theta[i] = saved - epsilon
        net.forward(X, training=True)
        J_minus = net.cost(Y, l2)
        theta[i] = saved
        approx[i] = (J_plus - J_minus) / (2 * epsilon)
    return approx


def gradient_check(net: Network, X: Any, Y: Any, l2: float = 0.0, epsilon: float = 1e-7) -> float:
    """Relative error between backprop's dθ and the two-sided numerical gradient."""
    xp = net.backend.xp
    net.forward(X, training=True)
    grad = net.backward(Y, l2).copy()
    approx = numerical_gradient(net, X, Y, l2, epsilon)
    numerator = float(xp.linalg.norm(approx - grad))
    denominator = float(xp.linalg.norm(approx) + xp.linalg.norm(grad))
    return numerator / denominator if denominator else 0.0

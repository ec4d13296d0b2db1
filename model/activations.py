"""Activations g(Z) and their backward passes.

Each backward is written from A = g(Z) alone (the activation before any dropout mask):
  sigmoid' = A(1 − A),  tanh' = 1 − A²,  relu' = 1[A > 0],  leaky_relu' = 1 or slope.
Both functions write into caller-owned buffers (`out`); forward functions accept out=Z.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LEAKY_SLOPE = 0.01


def sigmoid(xp: Any, Z: Any, out: Any) -> Any:
    """σ(Z) = 1 / (1 + e^−Z), computed as ½·(1 + tanh(Z/2)), which cannot overflow."""
    xp.multiply(Z, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def sigmoid_backward(xp: Any, dA: Any, A: Any, out: Any) -> Any:
    """dZ = dA · A(1 − A)."""
    xp.subtract(1.0, A, out=out)
    out *= A
    return xp.multiply(out, dA, out=out)


def tanh(xp: Any, Z: Any, out: Any) -> Any:
    """tanh(Z)."""
    return xp.tanh(Z, out=out)


def tanh_backward(xp: Any, dA: Any, A: Any, out: Any) -> Any:
    """dZ = dA · (1 − A²)."""
    xp.multiply(A, A, out=out)
    xp.subtract(1.0, out, out=out)
    return xp.multiply(out, dA, out=out)


def relu(xp: Any, Z: Any, out: Any) -> Any:
    """max(0, Z)."""
    return xp.maximum(Z, 0.0, out=out)


def relu_backward(xp: Any, dA: Any, A: Any, out: Any) -> Any:
    """dZ = dA · 1[A > 0]."""
    xp.greater(A, 0.0, out=out)
    return xp.multiply(out, dA, out=out)


def leaky_relu(xp: Any, Z: Any, out: Any) -> Any:
    """max(slope·Z, Z); safe with out=Z (the network applies g in place)."""
    return xp.maximum(Z, Z * LEAKY_SLOPE, out=out)


def leaky_relu_backward(xp: Any, dA: Any, A: Any, out: Any) -> Any:
    """dZ = dA · (1 if A > 0 else slope)."""
    xp.greater(A, 0.0, out=out)
    out *= 1.0 - LEAKY_SLOPE
    out += LEAKY_SLOPE
    return xp.multiply(out, dA, out=out)


def identity(xp: Any, Z: Any, out: Any) -> Any:
    """Z itself (the output of a regression network)."""
    out[...] = Z
    return out


Activation = Callable[[Any, Any, Any], Any]
Backward = Callable[[Any, Any, Any, Any], Any]

HIDDEN: dict[str, tuple[Activation, Backward]] = {
    "sigmoid": (sigmoid, sigmoid_backward),
    "tanh": (tanh, tanh_backward),
    "relu": (relu, relu_backward),
    "leaky_relu": (leaky_relu, leaky_relu_backward),
}

"""Weight initializations: W^[l] = randn(n_l, n_{l−1}) · scale, b^[l] = 0.

The scale keeps Var(Z) roughly constant from layer to layer, which is what stops activations
and gradients from vanishing or exploding in deep networks (course notes, week I).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def zeros(n_in: int, n_out: int) -> float:
    """All weights 0: every unit of a layer stays identical (the symmetry problem)."""
    return 0.0


def small(n_in: int, n_out: int) -> float:
    """randn · 0.01: breaks symmetry, but deep tanh/sigmoid nets start with vanishing signals."""
    return 0.01


def he(n_in: int, n_out: int) -> float:
    """He: √(2 / n^[l−1]), for ReLU layers."""
    return math.sqrt(2.0 / n_in)


def xavier(n_in: int, n_out: int) -> float:
    """Xavier: √(1 / n^[l−1]), for tanh layers."""
    return math.sqrt(1.0 / n_in)


def glorot(n_in: int, n_out: int) -> float:
    """Glorot: √(2 / (n^[l−1] + n^[l]))."""
    return math.sqrt(2.0 / (n_in + n_out))


INITIALIZERS: dict[str, Callable[[int, int], float]] = {
    "zeros": zeros,
    "small": small,
    "he": he,
    "xavier": xavier,
    "glorot": glorot,
}


def init_weights(name: str, W: Any, rng: Any) -> None:
    """Fill W (n_l, n_{l−1}) in place with standard normals times the scheme's scale."""
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name=}; choose one of {sorted(INITIALIZERS)}")
    n_out, n_in = W.shape
    W[...] = rng.standard_normal(W.shape, dtype=W.dtype) * INITIALIZERS[name](n_in, n_out)

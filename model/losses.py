"""Output layers and their costs: J = (1/m) Σ L(ŷ, y), with dZ^[L] = Ŷ − Y for all three.

Each loss pairs an output activation with a cost so that the backward pass is the famous
dZ^[L] = Ŷ − Y (softmax + cross-entropy, sigmoid + binary cross-entropy, identity + ½·squared
error). Costs are computed from the logits Z^[L] with the log-sum-exp trick, so they stay finite
where a naive log(Ŷ) would give −inf. The classes are axis −2 and the examples axis −1, so K
networks' outputs (K, n_y, m) give K costs at once (`model.stacked`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model import activations


def _softmax(xp: Any, Z: Any, out: Any) -> Any:
    """softmax over the class axis (−2), shifted by max(Z) so e^Z cannot overflow."""
    xp.subtract(Z, Z.max(axis=-2, keepdims=True), out=out)
    xp.exp(out, out=out)
    out /= out.sum(axis=-2, keepdims=True)
    return out


def softmax_cross_entropy(xp: Any, Z: Any, Y: Any) -> Any:
    """J = −(1/m) Σ_i Σ_j y_j log softmax(z)_j = (1/m) Σ_i [logsumexp(z) − z·y]."""
    shift = Z.max(axis=-2, keepdims=True)  # (1, m)
    logsumexp = xp.log(xp.exp(Z - shift).sum(axis=-2)) + shift[..., 0, :]  # (m,)
    return (logsumexp - (Z * Y).sum(axis=-2)).mean(axis=-1)


def binary_cross_entropy(xp: Any, Z: Any, Y: Any) -> Any:
    """J = −(1/m) Σ [y log σ(z) + (1−y) log(1−σ(z))] = mean(max(z,0) − z·y + log(1+e^−|z|))."""
    return (xp.maximum(Z, 0) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z)))).sum(axis=-2).mean(axis=-1)


def mean_squared_error(xp: Any, Z: Any, Y: Any) -> Any:
    """J = (1/2m) Σ ‖ŷ − y‖² (the ½ makes dZ^[L] = Ŷ − Y)."""
    return 0.5 * ((Z - Y) ** 2).sum(axis=-2).mean(axis=-1)


def _argmax_classes(xp: Any, Yhat: Any) -> Any:
    return Yhat.argmax(axis=-2)


def _threshold_classes(xp: Any, Yhat: Any) -> Any:
    return (Yhat[..., 0, :] > 0.5).astype(xp.int64)


@dataclass(frozen=True)
class Loss:
    """An output activation Ŷ = g(Z^[L]), its cost J(Z^[L], Y) and how Ŷ becomes a class."""

    name: str
    output: Callable[[Any, Any, Any], Any]
    cost: Callable[[Any, Any, Any], Any]  # J per network: a 0-d array, or (K,) for K networks
    predict_classes: Callable[[Any, Any], Any] | None  # None: regression, no accuracy


LOSSES: dict[str, Loss] = {
    "softmax_cross_entropy": Loss(
        "softmax_cross_entropy", _softmax, softmax_cross_entropy, _argmax_classes
    ),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy", activations.sigmoid, binary_cross_entropy, _threshold_classes
    ),
    "mse": Loss("mse", activations.identity, mean_squared_error, None),
}


def get_loss(name: str) -> Loss:
    """The loss called `name`; ValueError naming the choices otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name=}; choose one of {sorted(LOSSES)}") from None

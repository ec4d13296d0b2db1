"""Update rules on the flat parameter vector θ, simplest first (course notes, week II).

    gradient descent:  θ ← θ − α·dθ
    momentum:          v ← β·v + (1−β)·dθ;               θ ← θ − α·v
    RMSprop:           s ← β·s + (1−β)·dθ²;              θ ← θ − α·dθ / √(s + ε)
    Adam:              v, s as above with β1, β2;  v̂ = v/(1−β1^t), ŝ = s/(1−β2^t);
                       θ ← θ − α·v̂ / (√ŝ + ε)

ε sits where the notes put it: inside the root for RMSprop ("w := w − α·dw/√(s_dw + ε), for
numerical stability ε = 10⁻⁸"), outside it for Adam. PyTorch's RMSprop adds it outside; the two
differ only where |dθ| is below about √ε = 10⁻⁴, where the notes' step is the smaller one.

State (`v`, `s`, `t`) is created in `__init__`; each rule's `_update` is a few in-place lines
over preallocated buffers, so a step allocates nothing. For K networks trained together
(`model.stacked`) θ is (K, P) and α, β, β2, ε may be (K, 1) float64 arrays, one row per
network: each coefficient is computed from them as one network computes it from Python floats,
then cast to θ's dtype where it meets θ (`Backend.coefficient`).
`moments()` and `resume()` hand the state over as the notes' v and s, so that a checkpoint can
continue training exactly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from model.backend import Backend


class Optimizer(ABC):
    """Owns the state for a θ of fixed size; `step` is the only thing that changes it."""

    n_state = 0  # how many θ-sized state vectors (v, s) the rule keeps
    moment_names: tuple[str, ...] = ()  # the notes' names of those vectors

    def __init__(self, size: int | tuple[int, ...], backend: Backend):
        xp = backend.xp
        self.xp, self.coefficient = xp, backend.coefficient
        self.t = 0
        self.state = [xp.zeros(size, dtype=backend.dtype) for _ in range(self.n_state)]
        self._tmp = xp.empty(size, dtype=backend.dtype)

    def step(self, theta: Any, dtheta: Any, alpha: Any) -> None:
        """One update of θ in place with learning rate α."""
        self.t += 1
        self._begin_step(alpha)
        self._update(theta, dtheta, self._tmp, *self.state)

    def _begin_step(self, alpha: Any) -> None:
        """Scalars of this step (learning rate, bias corrections)."""
        self.alpha = alpha

    def moments(self) -> dict[str, Any]:
        """The state as the notes write it ({"v": v, "s": s}), as fresh arrays."""
        return {name: kept.copy() for name, kept in zip(self.moment_names, self.state, strict=True)}

    def resume(self, moments: dict[str, Any], t: int) -> None:
        """Take over another optimizer's `moments()` after its `t` steps."""
        for name, kept in zip(self.moment_names, self.state, strict=True):
            kept[...] = self.xp.asarray(moments[name])
        self.t = t

    @abstractmethod
    def _update(self, theta: Any, g: Any, tmp: Any, *state: Any) -> None:
        """Update θ in place from its gradient g; `tmp` is scratch of θ's size."""


class GradientDescent(Optimizer):
    def _update(self, theta: Any, g: Any, tmp: Any) -> None:
        self.xp.multiply(g, self.coefficient(self.alpha), out=tmp)
        theta -= tmp


class Momentum(Optimizer):
    n_state = 1
    moment_names = ("v",)

    def __init__(self, size: int, backend: Backend, beta: float = 0.9):
        super().__init__(size, backend)
        _check_beta("beta", beta)
        self.beta = beta

    def _update(self, theta: Any, g: Any, tmp: Any, v: Any) -> None:
        xp, c = self.xp, self.coefficient
        xp.subtract(g, v, out=tmp)
        tmp *= c(1.0 - self.beta)
        v += tmp  # v = β·v + (1−β)·g
        xp.multiply(v, c(self.alpha), out=tmp)
        theta -= tmp


class RMSprop(Optimizer):
    n_state = 1
    moment_names = ("s",)

    def __init__(self, size: int, backend: Backend, beta: float = 0.999, epsilon: float = 1e-8):
        super().__init__(size, backend)
        _check_beta("beta", beta)
        self.beta, self.epsilon = beta, epsilon

    def _update(self, theta: Any, g: Any, tmp: Any, s: Any) -> None:
        xp, c = self.xp, self.coefficient
        xp.multiply(g, g, out=tmp)
        tmp -= s
        tmp *= c(1.0 - self.beta)
        s += tmp  # s = β·s + (1−β)·g²
        xp.add(s, c(self.epsilon), out=tmp)
        xp.sqrt(tmp, out=tmp)  # √(s + ε), as the notes write RMSprop
        xp.divide(g, tmp, out=tmp)
        tmp *= c(self.alpha)
        theta -= tmp


class Adam(Optimizer):
    """Adam with bias correction.

    The state is kept as u = v/(1−β1) and r = s/(1−β2), so the moving averages are
    u ← β1·u + g and r ← β2·r + g²: the same update in 10 elementwise passes instead of 12.
    """

    n_state = 2
    moment_names = ("v", "s")

    def __init__(
        self,
        size: int,
        backend: Backend,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ):
        super().__init__(size, backend)
        _check_beta("beta1", beta1)
        _check_beta("beta2", beta2)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def _begin_step(self, alpha: Any) -> None:
        # α·v̂/(√ŝ + ε) with v = (1−β1)·u, s = (1−β2)·r, v̂ = v/(1−β1^t), ŝ = s/(1−β2^t)
        #   = [α·(1−β1)/(1−β1^t) · √((1−β2^t)/(1−β2))] · u / (√r + ε·√((1−β2^t)/(1−β2)))
        ratio = (1.0 - self.beta2**self.t) / (1.0 - self.beta2)
        root = math.sqrt(ratio) if isinstance(ratio, float) else self.xp.sqrt(ratio)
        self.step_size = alpha * (1.0 - self.beta1) / (1.0 - self.beta1**self.t) * root
        self.epsilon_hat = self.epsilon * root

    def moments(self) -> dict[str, Any]:
        u, r = self.state
        c = self.coefficient
        return {"v": c(1.0 - self.beta1) * u, "s": c(1.0 - self.beta2) * r}

    def resume(self, moments: dict[str, Any], t: int) -> None:
        """v and s back to u, r with this optimizer's β1, β2 (a continued run may change them)."""
        u, r = self.state
        c = self.coefficient
        u[...] = self.xp.asarray(moments["v"]) / c(1.0 - self.beta1)
        r[...] = self.xp.asarray(moments["s"]) / c(1.0 - self.beta2)
        self.t = t

    def _update(self, theta: Any, g: Any, tmp: Any, u: Any, r: Any) -> None:
        xp, c = self.xp, self.coefficient
        u *= c(self.beta1)
        u += g  # u = β1·u + g
        xp.multiply(g, g, out=tmp)
        r *= c(self.beta2)
        r += tmp  # r = β2·r + g²
        xp.sqrt(r, out=tmp)
        tmp += c(self.epsilon_hat)
        xp.divide(u, tmp, out=tmp)
        tmp *= c(self.step_size)
        theta -= tmp


def _check_beta(name: str, value: Any) -> None:
    """A β in [0, 1), or every network's β of a (K, 1) array."""
    values = value.ravel().tolist() if hasattr(value, "ravel") else [value]
    if not all(0.0 <= v < 1.0 for v in values):
        raise ValueError(f"{name} must be in [0, 1): {name}={value!r}")


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "gd": GradientDescent,
    "momentum": Momentum,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def make_optimizer(
    name: str,
    size: int,
    backend: Backend,
    beta: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> Optimizer:
    """The optimizer `name` with the trainer's hyperparameter names (β is Adam's β1)."""
    if name == "gd":
        return GradientDescent(size, backend)
    if name == "momentum":
        return Momentum(size, backend, beta=beta)
    if name == "rmsprop":
        return RMSprop(size, backend, beta=beta, epsilon=epsilon)
    if name == "adam":
        return Adam(size, backend, beta1=beta, beta2=beta2, epsilon=epsilon)
    raise ValueError(f"unknown optimizer {name=}; choose one of {sorted(OPTIMIZERS)}")

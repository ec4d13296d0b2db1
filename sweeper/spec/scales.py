"""Scales of the search space: how each hyperparameter is sampled and how it zooms.

Every parameter lives in a *scaled coordinate* where sampling is uniform (the course's "right
scale"): log10 α for `log`, log10(1 − β) for `one_minus_log`, log2 of the size for `pow2`,
log10 n for `log_int`, the value itself for `int` and `uniform`. Optuna stores that coordinate
(named e.g. `one_minus_beta`, `log2_batch_size`) so its samplers see a uniform box; `decode`
gives the trainer's value. Coarse-to-fine zooms are boxes in the same coordinates.

A per-layer option (`hidden_units_3`) is a conditional parameter: a trial has it only where it
has that layer (`num_layers` ≥ 3), so samplers, the zoom and the plots see the widths of layer 3
only in trials that are at least 3 layers deep.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from model.config import per_layer_key

if TYPE_CHECKING:  # Optuna only where a distribution is made: a kept model imports this module
    import optuna  # (through the schema), and Optuna is not among its requirements
    import optuna.distributions as od

SCALES = ("log", "one_minus_log", "pow2", "int", "log_int", "uniform", "categorical")


def _stored_choice(choice: Any) -> Any:
    """A categorical choice as Optuna stores it: a list (hidden_units: [20, 3]) as its JSON text,
    since Optuna's persistent storages keep only None, bool, int, float and str."""
    return json.dumps(choice) if isinstance(choice, list) else choice


def _is_pow2(value: float) -> bool:
    return value >= 1 and float(value).is_integer() and (int(value) & (int(value) - 1)) == 0


class Param(BaseModel):
    """One searched hyperparameter: a scale and its bounds (or choices)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: Literal["log", "one_minus_log", "pow2", "int", "log_int", "uniform", "categorical"]
    low: float | None = None
    high: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Param:
        if self.scale == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty `choices` list")
            if self.low is not None or self.high is not None:
                raise ValueError("categorical takes `choices`, not low/high")
            scalar = (str, int, float, bool, type(None))
            odd = [
                c
                for c in self.choices
                if not isinstance(c, scalar)
                and not (isinstance(c, list) and all(isinstance(v, scalar) for v in c))
            ]
            if odd:
                raise ValueError(
                    f"choices are values or lists of values, not {odd[0]!r} "
                    "(a mapping inside `choices`: check its braces)"
                )
            return self
        if self.choices is not None:
            raise ValueError(f"{self.scale} takes low/high, not `choices`")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.scale} needs both `low` and `high`")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low >= self.high:
            raise ValueError(f"low must be < high, got low={self.low} high={self.high}")
        if self.scale in ("log", "log_int") and self.low <= 0:
            raise ValueError(f"a {self.scale} scale needs low > 0, got low={self.low}")
        if self.scale == "one_minus_log" and not (self.low > 0 and self.high < 1):
            raise ValueError(
                f"one_minus_log is for β in (0, 1): need 0 < low < high < 1, "
                f"got low={self.low} high={self.high}"
            )
        if self.scale == "pow2" and not (_is_pow2(self.low) and _is_pow2(self.high)):
            raise ValueError(
                f"pow2 bounds must be powers of two, got low={self.low} high={self.high}"
            )
        if self.scale in ("int", "log_int") and not (
            float(self.low).is_integer() and float(self.high).is_integer()
        ):
            raise ValueError(f"{self.scale} bounds must be integers")
        return self

    # -- the Optuna side -------------------------------------------------------------------
    def optuna_name(self, name: str) -> str:
        """The name Optuna stores: the scaled coordinate where it is not the value itself."""
        return {"one_minus_log": f"one_minus_{name}", "pow2": f"log2_{name}"}.get(self.scale, name)

    def distribution(self) -> od.BaseDistribution:
        """The Optuna distribution over the stored coordinate."""
        import optuna.distributions as od

        if self.scale == "categorical":
            return od.CategoricalDistribution([_stored_choice(c) for c in self.choices])
        lo, hi = self.low, self.high
        if self.scale == "log":
            return od.FloatDistribution(lo, hi, log=True)
        if self.scale == "one_minus_log":
            return od.FloatDistribution(1.0 - hi, 1.0 - lo, log=True)  # 1 − β, log-uniform
        if self.scale == "pow2":
            return od.IntDistribution(int(math.log2(lo)), int(math.log2(hi)))
        if self.scale == "int":
            return od.IntDistribution(int(lo), int(hi))
        if self.scale == "log_int":
            return od.IntDistribution(int(lo), int(hi), log=True)
        return od.FloatDistribution(lo, hi)

    def decode(self, stored: Any) -> Any:
        """Trainer value from the stored coordinate."""
        if self.scale == "categorical":
            return next((c for c in self.choices if _stored_choice(c) == stored), stored)
        if self.scale == "one_minus_log":
            return 1.0 - stored
        if self.scale == "pow2":
            return 2 ** int(stored)
        return stored

    def encode(self, value: Any) -> Any:
        """Stored coordinate from a trainer value (inverse of `decode`)."""
        if self.scale == "categorical":
            return _stored_choice(value)
        if self.scale == "one_minus_log":
            return 1.0 - value
        if self.scale == "pow2":
            return int(round(math.log2(value)))
        return value

    # -- zooming ---------------------------------------------------------------------------
    def scaled(self, value: Any) -> float:
        """The coordinate in which this scale samples uniformly (used to draw zoom boxes)."""
        if self.scale in ("log", "log_int"):
            return math.log10(value)
        if self.scale == "one_minus_log":
            return math.log10(1.0 - value)
        if self.scale == "pow2":
            return math.log2(value)
        return float(value)

    def unscaled(self, coordinate: float) -> float:
        """Inverse of `scaled`."""
        if self.scale in ("log", "log_int"):
            return 10.0**coordinate
        if self.scale == "one_minus_log":
            return 1.0 - 10.0**coordinate
        if self.scale == "pow2":
            return 2.0**coordinate
        return coordinate

    def zoom(self, values: list[Any], margin: float) -> Param:
        """The sub-box spanning `values`, widened by `margin` × the full range, clipped to bounds.

        Widths are measured in the scaled coordinate (decades of α, decades of 1 − β, doublings
        of a pow2 size). Integer scales round outwards; categoricals keep the choices present.
        """
        if self.scale == "categorical":
            return Param(scale="categorical", choices=[c for c in self.choices if c in values])
        edges = sorted((self.scaled(self.low), self.scaled(self.high)))
        coords = [self.scaled(v) for v in values]
        pad = margin * (edges[1] - edges[0])
        lo_c, hi_c = max(edges[0], min(coords) - pad), min(edges[1], max(coords) + pad)
        a, b = sorted((self.unscaled(lo_c), self.unscaled(hi_c)))
        if self.scale == "pow2":
            a, b = (
                2.0 ** math.floor(round(math.log2(a), 9)),
                2.0 ** math.ceil(round(math.log2(b), 9)),
            )
        elif self.scale in ("int", "log_int"):
            a, b = float(math.floor(round(a, 9))), float(math.ceil(round(b, 9)))
        a, b = max(a, self.low), min(b, self.high)
        if a >= b:  # every top trial at one value: keep one step of room
            return self._degenerate(a)
        return Param(scale=self.scale, low=a, high=b)

    def _degenerate(self, value: float) -> Param:
        if self.scale == "pow2":
            return (
                Param(scale="pow2", low=value, high=min(value * 2, self.high))
                if value < self.high
                else Param(scale="pow2", low=value / 2, high=value)
            )
        if self.scale in ("int", "log_int"):
            return Param(
                scale=self.scale, low=min(value, self.high - 1), high=min(value, self.high - 1) + 1
            )
        return Param(scale=self.scale, low=value, high=math.nextafter(value, math.inf))

    def contains(self, value: Any) -> bool:
        if self.scale == "categorical":
            return value in self.choices
        return self.low - 1e-12 <= value <= self.high + 1e-12


Space = dict[str, Param]


def distributions(space: Space) -> dict[str, od.BaseDistribution]:
    """Optuna distributions of a space, keyed by stored name."""
    return {p.optuna_name(name): p.distribution() for name, p in space.items()}


def applies(name: str, values: dict[str, Any]) -> bool:
    """Whether a trial with `values` uses option `name`: a per-layer option only where the trial
    has that layer (when `num_layers` is searched; a fixed depth uses every layer it has)."""
    layer = per_layer_key(name)
    return layer is None or "num_layers" not in values or layer[1] <= values["num_layers"]


def sample(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Trainer values for a new trial: every option, then the per-layer ones of its layers."""
    values: dict[str, Any] = {}
    for name, p in sorted(space.items(), key=lambda item: per_layer_key(item[0]) is not None):
        if applies(name, values):
            values[name] = p.decode(_suggest(trial, p.optuna_name(name), p.distribution()))
    return values


def _suggest(trial: optuna.Trial, name: str, distribution: od.BaseDistribution) -> Any:
    """Optuna's public suggest call for a distribution (an enqueued retry's value is kept)."""
    import optuna.distributions as od

    if isinstance(distribution, od.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    suggest = (
        trial.suggest_int if isinstance(distribution, od.IntDistribution) else trial.suggest_float
    )
    return suggest(
        name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
    )


def decode(space: Space, stored: dict[str, Any]) -> dict[str, Any]:
    """Trainer values from an Optuna trial's params (a per-layer option it lacks stays absent)."""
    return {
        name: p.decode(stored[key])
        for name, p in space.items()
        if (key := p.optuna_name(name)) in stored
    }


def encode(space: Space, values: dict[str, Any]) -> dict[str, Any]:
    """Optuna params from trainer values (only the options present in `values`)."""
    return {
        p.optuna_name(name): p.encode(values[name]) for name, p in space.items() if name in values
    }

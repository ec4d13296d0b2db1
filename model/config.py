"""Every trainer option in one record, checked where it is made: a bad value is refused with
its option's name before a trial starts, not epochs into one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from model.activations import HIDDEN
from model.initializers import INITIALIZERS
from model.losses import LOSSES
from model.optimizers import OPTIMIZERS
from model.schedules import ARGUMENTS, SCHEDULES

DEFAULT_NUM_LAYERS = 2
PER_LAYER = ("hidden_units", "keep_prob")  # options that also take one value per hidden layer
# options that are whole numbers, and those that are real ones (None: the default where allowed)
WHOLE = ("num_layers", "hidden_units", "batch_size", "epochs", "lr_step", "early_stopping", "seed")
REAL = ("learning_rate", "lr_decay", "lr_base", "beta", "beta2", "epsilon", "l2", "keep_prob")
# Schedule options → the argument of schedules.learning_rate each sets; unset (None): its default.
SCHEDULE_OPTIONS = {"lr_decay": "decay_rate", "lr_base": "base", "lr_step": "interval"}


@dataclass
class TrainConfig:
    """Every trainer option; names are those a space.yaml uses in `train:` and `space:`."""

    learning_rate: float = 0.001
    lr_schedule: str = (
        "inverse_time"  # inverse_time | exponential | step | staircase | inverse_sqrt
    )
    # Read only by the schedules named; set for another, they are refused (an ignored option).
    lr_decay: float | None = None  # decay rate of inverse_time and staircase; unset: 0 (constant α)
    lr_base: float | None = None  # base of exponential and step, in (0, 1]; unset: 0.95
    lr_step: int | None = None  # epochs per step of step and staircase; unset: 10
    optimizer: str = "adam"  # gd | momentum | rmsprop | adam
    beta: float = 0.9  # momentum β, RMSprop β, Adam β1
    beta2: float = 0.999  # Adam β2
    epsilon: float = 1e-8
    num_layers: int | None = None  # hidden layers (L − 1); default 2 or len(hidden_units)
    hidden_units: int | list[int] = 64  # units of every hidden layer, or one width per layer
    batch_size: int = 64
    epochs: int = 30
    l2: float = 0.0  # λ of the L2 penalty (λ/2m)·Σ‖W‖²
    keep_prob: float | list[float] = 1.0  # inverted-dropout keep probability, or one per layer
    batch_norm: bool = False
    activation: str = "relu"  # relu | leaky_relu | tanh | sigmoid
    init: str = "he"  # zeros | small | he | xavier | glorot
    loss: str = "auto"  # auto | softmax_cross_entropy | binary_cross_entropy | mse
    early_stopping: int | None = None  # patience on dev_loss; the best epoch is restored
    seed: int = 0

    @classmethod
    def knows(cls, name: str) -> bool:
        """An option name: a field, or `hidden_units_<l>` / `keep_prob_<l>` for hidden layer l."""
        return name in {f.name for f in fields(cls)} or per_layer_key(name) is not None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting names the trainer does not know.

        `hidden_units_<l>` and `keep_prob_<l>` set hidden layer l (1-based) alone, over the
        value of `hidden_units` / `keep_prob` for the other layers; those of layers deeper than
        `num_layers` are ignored. A search can so sample each layer's width, conditional on
        the depth, with every parameter an ordinary one for the samplers, zoom and plots.
        """
        unknown = sorted(name for name in values if not cls.knows(name))
        if unknown:
            known = sorted(f.name for f in fields(cls))
            raise ValueError(f"unknown trainer options {unknown}; known: {known}")
        options = {k: v for k, v in values.items() if per_layer_key(k) is None}
        overrides: dict[str, dict[int, Any]] = {}
        for key, value in values.items():
            if (option_layer := per_layer_key(key)) is not None:
                option, l = option_layer
                overrides.setdefault(option, {})[l] = value
        depth = _depth(options.get("num_layers"), options.get("hidden_units"))
        for option, by_layer in overrides.items():
            given = options.get(option, cls.__dataclass_fields__[option].default)
            per_layer = list(given) if isinstance(given, list) else [given] * depth
            options[option] = [by_layer.get(l, v) for l, v in enumerate(per_layer, start=1)]
        return cls(**options)

    @property
    def depth(self) -> int:
        """Hidden layers L − 1."""
        return _depth(self.num_layers, self.hidden_units)

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        """(n_1, …, n_{L−1})."""
        if isinstance(self.hidden_units, list):
            return tuple(self.hidden_units)
        return (self.hidden_units,) * self.depth

    def __post_init__(self) -> None:
        """Reject a bad value here, with its option's name, not epochs into a trial."""
        wrong_type = self._type_problems()
        if wrong_type:
            raise ValueError("; ".join(wrong_type))
        per_layer_problems = [
            problem
            for name in PER_LAYER
            if (problem := self._per_layer_problem(name, getattr(self, name)))
        ]
        if per_layer_problems:
            raise ValueError("; ".join(per_layer_problems))
        choices = {
            "optimizer": OPTIMIZERS,
            "activation": HIDDEN,
            "init": INITIALIZERS,
            "loss": ("auto", *LOSSES),
            "lr_schedule": SCHEDULES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {sorted(allowed)}")
        ignored = self._ignored_schedule_options()
        if ignored:
            raise ValueError("; ".join(ignored))
        ranges = {
            "learning_rate": (self.learning_rate > 0, "> 0"),
            "lr_decay": (self.lr_decay is None or self.lr_decay >= 0, ">= 0"),
            "lr_base": (self.lr_base is None or 0 < self.lr_base <= 1, "in (0, 1]"),
            "lr_step": (self.lr_step is None or self.lr_step >= 1, ">= 1"),
            "beta": (0 <= self.beta < 1, "in [0, 1)"),
            "beta2": (0 <= self.beta2 < 1, "in [0, 1)"),
            "epsilon": (self.epsilon > 0, "> 0"),
            "num_layers": (self.num_layers is None or self.num_layers >= 0, ">= 0"),
            "hidden_units": (min(self.hidden_widths, default=1) >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "epochs": (self.epochs >= 1, ">= 1"),
            "l2": (self.l2 >= 0, ">= 0"),
            "keep_prob": (all(0 < p <= 1 for p in self._keep_probs()), "in (0, 1]"),
            "early_stopping": (self.early_stopping is None or self.early_stopping >= 1, ">= 1"),
            "seed": (self.seed >= 0, ">= 0"),
        }
        wrong = [
            f"{name}={getattr(self, name)!r} must be {rule}"
            for name, (ok, rule) in ranges.items()
            if not ok
        ]
        if wrong:
            raise ValueError("; ".join(wrong))

    def _ignored_schedule_options(self) -> list[str]:
        """lr_decay, lr_base, lr_step set for a schedule that does not read them: e.g.
        `exponential` with lr_decay 0.95 would silently run α0·0.95^epoch from lr_base's default
        whatever the value, so the user is told which option the schedule does read."""
        reads = ARGUMENTS[self.lr_schedule]
        used = [option for option, arg in SCHEDULE_OPTIONS.items() if arg in reads]
        return [
            f"{option}={getattr(self, option)!r} has no effect with "
            f"lr_schedule={self.lr_schedule!r}, which reads {' and '.join(used) or 'none of them'}"
            for option, arg in SCHEDULE_OPTIONS.items()
            if getattr(self, option) is not None and arg not in reads
        ]

    def schedule_arguments(self) -> dict[str, float]:
        """The keyword arguments of schedules.learning_rate that this config sets."""
        return {
            arg: getattr(self, option)
            for option, arg in SCHEDULE_OPTIONS.items()
            if getattr(self, option) is not None
        }

    def _type_problems(self) -> list[str]:
        """Each option of the wrong kind: 2.5 epochs trained 2 (or crashed a trial), and
        batch_norm: 'no' turned batch norm on, a non-empty string being true."""
        number = lambda v: isinstance(v, int | float) and not isinstance(v, bool)  # noqa: E731
        problems = []
        for name in WHOLE + REAL:
            value = getattr(self, name)
            optional = self.__dataclass_fields__[name].default is None  # None: its default
            if (value is None and optional) or (
                name in PER_LAYER and isinstance(value, list | tuple)
            ):
                continue  # a list is `_per_layer_problem`'s
            if name in WHOLE and not (isinstance(value, int) and not isinstance(value, bool)):
                problems.append(f"{name}={value!r} must be a whole number")
            elif name in REAL and not number(value):
                hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if _float_text(value) else ""
                problems.append(f"{name}={value!r} must be a number{hint}")
        if not isinstance(self.batch_norm, bool):
            problems.append(f"batch_norm={self.batch_norm!r} must be true or false")
        return problems

    def _per_layer_problem(self, name: str, value: Any) -> str | None:
        """A list-valued per-layer option must be numbers, one per hidden layer."""
        if not isinstance(value, list | tuple):
            return None
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return f"{name}={value!r} must be a number or a list of numbers"
        if name == "hidden_units" and not all(float(v).is_integer() for v in value):
            return f"{name}={value!r} must be whole numbers of units"
        if name == "hidden_units" and self.num_layers not in (None, len(value)):
            return (
                f"num_layers={self.num_layers} disagrees with {name}={value!r} "
                f"({len(value)} hidden layers)"
            )
        if name == "keep_prob" and len(value) != self.depth:
            return f"{name}={value!r} needs one value per hidden layer ({self.depth})"
        return None

    def _keep_probs(self) -> list[float]:
        return (
            list(self.keep_prob) if isinstance(self.keep_prob, list | tuple) else [self.keep_prob]
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _depth(num_layers: int | None, hidden_units: Any) -> int:
    """num_layers where given, else the length of a hidden_units list, else the default."""
    if num_layers is not None:
        return int(num_layers)
    return len(hidden_units) if isinstance(hidden_units, list) else DEFAULT_NUM_LAYERS


def _float_text(value: Any) -> bool:
    """Text that is a number to Python but not to YAML 1.1 (`1e-3`, without a dot)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def per_layer_key(name: str) -> tuple[str, int] | None:
    """("hidden_units", 2) for "hidden_units_2"; None for any other name."""
    option, _, layer = name.rpartition("_")
    if option in PER_LAYER and layer.isdigit() and int(layer) >= 1:
        return option, int(layer)
    return None

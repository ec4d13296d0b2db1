"""space.yaml version 1 as pydantic models, and `load` with errors that name file, line and field.

YAML is read with the safe loader only (no tags that build Python objects). Each problem found by
validation is reported as `file:line: field.path: message`, all of them in one UserError.

(Over 300 lines: the models and the checks across fields are one contract, read together when
space.yaml gains a key; the YAML line map is `sweeper.spec.yaml_lines`.)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from model.config import DEFAULT_NUM_LAYERS, WHOLE, TrainConfig, per_layer_key
from sweeper.errors import UserError
from sweeper.run.ownership import name_problem
from sweeper.search.recipe import Search, recipe
from sweeper.spec.scales import SCALES, Param
from sweeper.spec.stages import Pruner, Seed, Stage, Strict, Zoom
from sweeper.spec.yaml_lines import LineLoader, key_lines, nearest_line

__all__ = ["Pruner", "Stage", "Zoom"]  # re-exported: the stage models live in spec/stages.py

TRAINER_OPTIONS = tuple(TrainConfig.__dataclass_fields__)
# what model.train reports each epoch, a trial's objective among them (test_ ones refused)
OBJECTIVE_METRICS = ("dev_accuracy", "dev_loss", "train_accuracy", "train_loss", "minibatch_cost")
CONTINUOUS_SCALES = ("log", "one_minus_log", "uniform")
INTEGER_SCALES = ("int", "log_int", "pow2")
# pydantic's names for a union's members in an error's location: constrained-int, literal['auto']
UNION_MEMBER = re.compile(r"(int|float|str|bool|[a-z]+(-[a-z]+)+|[a-z-]+\[.*\])")
MAX_SPEC_BYTES = 1_000_000


class Split(Strict):
    dev: float = Field(0.2, gt=0, lt=1)
    test: float = Field(0.2, ge=0, lt=1)
    seed: Seed = 0

    @model_validator(mode="after")
    def _leaves_training_data(self) -> Split:
        if self.dev + self.test >= 1:
            raise ValueError(f"dev + test must be < 1, got {self.dev} + {self.test}")
        return self


class DataSpec(Strict):
    source: str
    target: str | None = None
    features: list[str] | None = Field(None, min_length=1)
    test: str | None = None
    split: Split = Split()
    standardize: bool = True

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> DataSpec:
        if self.target is not None and self.target in (self.features or []):
            raise ValueError(f"the target {self.target!r} is also listed in features")
        return self


class Objective(Strict):
    """The metric a trial is judged by, and the epoch whose model it keeps: `best` (by that
    metric, the default) or `last`. Pruners see every epoch's value either way. Without a
    `direction`, the metric's own: an accuracy is maximized, a loss or cost minimized
    (`{metric: dev_loss}` was refused as "direction must be minimize")."""

    metric: str = "dev_accuracy"
    direction: Literal["maximize", "minimize"] | None = None  # None: the metric's own
    at: Literal["best", "last"] = "best"

    @model_validator(mode="after")
    def _its_own_direction(self) -> Objective:
        if self.direction is None:
            self.direction = better_direction(self.metric)
        return self


def better_direction(metric: str) -> Literal["maximize", "minimize"]:
    """Which way `metric` is better: an accuracy higher, a loss or cost lower."""
    return "maximize" if metric.endswith("_accuracy") else "minimize"


class Resources(Strict):
    """`concurrency` tasks at once, each with `cpus_per_trial`/`gpus_per_trial`; a task trains
    up to `pack` trials of one structure together (`auto`: as many as pays for the architecture,
    see sweeper/run/packing.py)."""

    concurrency: Annotated[int, Field(ge=1, le=100_000)] | Literal["auto"] = "auto"
    cpus_per_trial: float = Field(1, gt=0, le=1024)
    gpus_per_trial: float = Field(0, ge=0, le=64)
    max_retries: int = Field(2, ge=0, le=100)
    # strict: `pack: yes` is YAML's True, which pydantic took for 1 (one trial per task, silently)
    pack: Annotated[int, Field(ge=1, le=1024, strict=True)] | Literal["auto"] = 1

    @model_validator(mode="after")
    def _ray_accepts(self) -> Resources:
        """Ray's rules for a task's resources: a fraction only below 1, in steps of 1e-4."""
        for name in ("cpus_per_trial", "gpus_per_trial"):
            value = getattr(self, name)
            if value > 1 and not float(value).is_integer():
                raise ValueError(f"{name}={value}: above 1 Ray takes whole numbers only")
            if value and round(value, 4) != value:
                raise ValueError(f"{name}={value}: Ray counts resources in steps of 0.0001")
        return self


class Models(Strict):
    """Which trials keep their trained model (an MLflow Model in their run): the `keep` best
    completed trials of each stage (so always the sweep's best), or `all` of them."""

    keep: Annotated[int, Field(ge=1)] | Literal["all"] = 3


class Storage(Strict):
    optuna: str | None = None
    mlflow: str | None = None


class Budget(Strict):
    """`budget:` in place of `stages:`: the recommended plan for this many trials (see
    `sweeper.search.recipe` and docs/search.md), each trial up to `epochs` epochs (sets
    train.epochs), within `hours` of wall time per launch or resume when given. `seed` seeds
    the samplers (stage i's with seed + i); without it each stage's seed is its index, so the
    same spec samples the same trials again. `search`: `frugal`, the coarse-to-fine recipe at
    under half the epochs, or `thorough`, every trial all its epochs, sampled by a Gaussian
    process (needs PyTorch)."""

    trials: int = Field(ge=1, le=1_000_000)
    epochs: int | None = Field(None, ge=1)
    hours: float | None = Field(None, gt=0)  # per launch or resume; see sweeper/run/deadline.py
    seed: Seed | None = None
    search: Search = "frugal"


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    dir: str | None = None
    data: DataSpec
    budget: Budget | None = None  # before `train` and `stages`: their validators read it
    train: dict[str, Any] = Field(default_factory=dict)
    objective: Objective = Objective()
    space: dict[str, Param]
    stages: list[Stage] = Field(default_factory=list)  # the plan; from `budget` when given
    resources: Resources = Resources()
    models: Models = Models()
    storage: Storage = Storage()

    @field_validator("name")
    @classmethod
    def _one_plain_folder_name(cls, name: str) -> str:
        problem = name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @field_validator("train")
    @classmethod
    def _epochs_once(cls, train: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        budget = info.data.get("budget")
        epochs = budget.epochs if budget is not None else None
        if epochs is not None and train.get("epochs", epochs) != epochs:
            raise ValueError(
                "epochs is set both here and in budget.epochs: keep one"
            )  # unless equal: a spec read back
        return train

    @field_validator("stages")
    @classmethod
    def _stages_or_budget(cls, stages: list[Stage], info: ValidationInfo) -> list[Stage]:
        """Not both, unless `stages` is the plan `budget` expanded into: in a sweep's own copy
        (`planned` context, see `load`) whatever recipe made it, else the current recipe's."""
        budget = info.data.get("budget")
        planned = (info.context or {}).get("planned", False)
        if (
            stages
            and budget is not None
            and not planned
            and stages != recipe(budget.trials, _epochs(info.data), budget.seed, budget.search)
        ):
            raise ValueError(
                "give `stages` (your own plan) or `budget` (the recommended plan), not both"
            )
        return stages

    @model_validator(mode="after")
    def _plan(self) -> SweepSpec:
        """Expand `budget` into the recommended stages (what `sweeper status` shows)."""
        if self.budget is not None and not self.stages:
            if self.budget.epochs is not None:
                self.train = self.train | {"epochs": self.budget.epochs}
            self.stages = recipe(
                self.budget.trials, _epochs(self.__dict__), self.budget.seed, self.budget.search
            )
        if not self.stages:
            raise ValueError(
                "no plan: give `budget: {trials: N}` (the recommended stages) or `stages:`"
            )
        return self

    def fingerprint(self) -> str:
        """A hash of everything that defines the sweep's results (not where it is stored)."""
        content = self.model_dump(
            exclude={"dir": True, "storage": True, "resources": True, "models": True}
            | ({"budget": {"hours"}} if self.budget is not None else {})
        )
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _epochs(fields: dict[str, Any]) -> int:
    """The most epochs a trial runs, from the spec's fields as validated so far."""
    budget = fields.get("budget")
    if budget is not None and budget.epochs is not None:
        return budget.epochs
    return max_epochs(fields.get("train", {}), fields.get("space", {}))


def max_epochs(train: dict[str, Any], space: dict[str, Param]) -> int:
    """The most epochs a trial can run: the upper bound of `epochs` when it is searched, else
    its fixed value, else the trainer's default."""
    searched = space.get("epochs")
    if searched is not None:
        return int(max(searched.choices) if searched.scale == "categorical" else searched.high)
    return int(train.get("epochs", TrainConfig.__dataclass_fields__["epochs"].default))


def _problems(spec: SweepSpec) -> list[tuple[tuple, str]]:
    """Checks across fields, each with the path of the key it is about."""
    problems: list[tuple[tuple, str]] = []
    if not spec.space:
        problems.append((("space",), "space is empty: name at least one hyperparameter to search"))
    for section, names in (("train", spec.train), ("space", spec.space)):
        for name in names:
            if not TrainConfig.knows(name):
                hint = _did_you_mean(name, TRAINER_OPTIONS)
                problems.append(((section, name), f"unknown trainer option {name!r}{hint}"))
    budget_epochs = spec.budget is not None and spec.budget.epochs is not None
    for name in sorted(set(spec.train) & set(spec.space)):
        if name == "epochs" and budget_epochs:  # budget.epochs wrote it: said at the budget
            continue
        problems.append(
            (("space", name), f"{name!r} is both fixed in `train` and searched in `space`")
        )
    known = {k: v for k, v in spec.train.items() if TrainConfig.knows(k)}
    try:
        TrainConfig.from_dict(known)
    except (TypeError, ValueError) as error:
        problems.append((("train",), str(error)))
        known = {}
    for name, param in spec.space.items():
        option = (per_layer_key(name) or (name, 0))[0]
        if option in WHOLE and param.scale in CONTINUOUS_SCALES:
            problems.append(
                (
                    ("space", name),
                    f"{name} takes whole numbers: search it on an int, log_int "
                    f"or pow2 scale, not {param.scale}",
                )
            )
            continue
        extremes = param.choices if param.scale == "categorical" else [param.low, param.high]
        if param.scale in INTEGER_SCALES:  # bounds are read as floats; samples are ints
            extremes = [int(v) for v in extremes]
        for value in extremes if TrainConfig.knows(name) else []:
            try:
                TrainConfig.from_dict({**known, name: value})
            except (TypeError, ValueError) as error:
                problems.append((("space", name), str(error)))
                break
    problems += _layer_problems(spec)
    problems += _loss_problems(spec)
    problems += _objective_problems(spec.objective)
    if budget_epochs and "epochs" in spec.space:
        problems.append(
            (("budget", "epochs"), "epochs is searched in `space`: budget.epochs cannot fix it")
        )
    names = [s.name for s in spec.stages]
    if len(set(names)) != len(names):
        problems.append((("stages",), f"stage names must be unique: {names}"))
    if spec.stages[0].zoom is not None:
        problems.append(
            (("stages", 0, "zoom"), "the first stage has no earlier stage to zoom from")
        )
    return problems


def _loss_problems(spec: SweepSpec) -> list[tuple[tuple, str]]:
    """The sweeper's target column holds classes: `mse` (the trainer's regression loss) would
    fit the class indices as numbers, and its kept model could not name a class."""
    searched = spec.space.get("loss")
    losses = searched.choices if searched is not None and searched.choices else []
    where = ("space", "loss") if "mse" in losses else ("train", "loss")
    if spec.train.get("loss") == "mse" or "mse" in losses:
        return [
            (
                where,
                "mse is a regression loss and the sweeper's data are classes: use auto "
                "(softmax or binary cross-entropy by the number of classes)",
            )
        ]
    return []


def _deepest(spec: SweepSpec) -> int | None:
    """The most hidden layers a network of this space can have (None: not known here)."""
    searched = spec.space.get("num_layers")
    if searched is not None:
        if searched.scale == "categorical":
            return max((c for c in searched.choices if isinstance(c, int)), default=None)
        return int(searched.high) if searched.high is not None else None
    if "hidden_units" in spec.space:  # a list of widths searched sets the depth itself
        return None
    fixed, units = spec.train.get("num_layers"), spec.train.get("hidden_units")
    if isinstance(fixed, int):
        return fixed
    return len(units) if isinstance(units, list) else DEFAULT_NUM_LAYERS


def _layer_problems(spec: SweepSpec) -> list[tuple[tuple, str]]:
    """A per-layer option for a layer no network of the space has: it was sampled, recorded
    and plotted as a hyperparameter, and never used."""
    deepest = _deepest(spec)
    return [
        (
            ("space", name),
            f"{name} sets hidden layer {layer[1]}, but no network of this space has more than "
            f"{deepest} hidden layers (num_layers)",
        )
        for name in spec.space
        if (layer := per_layer_key(name)) is not None and deepest is not None and layer[1] > deepest
    ]


def _objective_problems(objective: Objective) -> list[tuple[tuple, str]]:
    """The test set is for the final, unbiased estimate: a sweep that optimizes on it has made it
    a second dev set. Any other name must be one the trainer reports (a misspelled one failed
    every trial, and the stage asked for new ones without end), and a loss is minimized, an
    accuracy maximized (the other way, the sweep keeps its worst model)."""
    metric = objective.metric
    if metric.startswith("test_"):
        return [
            (
                ("objective", "metric"),
                f"{metric!r} is measured on the test set; choose the objective among "
                f"dev_ metrics (e.g. {'dev_' + metric.removeprefix('test_')!r}): "
                "tuning on the test set leaves no unbiased estimate",
            )
        ]
    if metric not in OBJECTIVE_METRICS:
        return [
            (
                ("objective", "metric"),
                f"the trainer reports no {metric!r}{_did_you_mean(metric, OBJECTIVE_METRICS)}; "
                f"choose among {', '.join(OBJECTIVE_METRICS)}",
            )
        ]
    direction = better_direction(metric)
    if objective.direction != direction:
        return [
            (
                ("objective", "direction"),
                f"{metric} is better {'higher' if direction == 'maximize' else 'lower'}: "
                f"direction must be {direction}",
            )
        ]
    return []


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_back(spec_json: str) -> SweepSpec:
    """A spec the driver checked and sent as JSON: its stages are its plan, whatever made them."""
    return SweepSpec.model_validate_json(spec_json, context={"planned": True})


def load(path: str | Path, planned: bool = False) -> SweepSpec:
    """Read and validate a space.yaml; raise UserError listing every problem with its line.
    `planned`: the file is a sweep's own copy, whose stages are its plan whatever made them."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file() and not path.is_dir():  # a device, a FIFO:
            raise UserError(f"{path}: not a file")  # endless, or never ending, to read
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise UserError(f"{path}:1: the file is over {MAX_SPEC_BYTES} bytes: not a space.yaml")
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read: {error}") from None
    try:
        node = yaml.compose(text, Loader=LineLoader)
        raw = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(f"{path}:{line}: YAML syntax: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}:1: the file must be a mapping of keys (name, data, space, …)")
    try:
        lines = key_lines(node) if node is not None else {}
    except ValueError as error:
        raise UserError(f"{path}:{error}") from None
    try:
        spec = SweepSpec.model_validate(raw, context={"planned": planned})
    except ValidationError as error:
        raise UserError(_format(path, error, lines)) from None
    problems = _problems(spec)
    if problems:
        raise UserError(
            "\n".join(
                f"{path}:{nearest_line(loc, lines)}: {'.'.join(map(str, loc))}: {message}"
                for loc, message in problems
            )
        )
    return spec


def _format(path: Path, error: ValidationError, lines: dict[tuple, int]) -> str:
    """One line per field: what each member of a union (`pack: K | auto`) wanted is joined
    in it, without pydantic's names for the members (`resources.pack.constrained-int`)."""
    by_field: dict[tuple, list[str]] = {}
    for item in error.errors():
        loc = _without_union_members(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            parent = _model_fields_at(loc[:-1])
            message = f"unknown key{_did_you_mean(loc[-1], parent)}"
        by_field.setdefault(loc, []).append(message)
    problems = []
    for loc, messages in by_field.items():
        field = ".".join(str(p) for p in loc) or "(top level)"
        message = ", or ".join(
            [messages[0], *(m.removeprefix("Input should be ") for m in messages[1:])]
        )
        problems.append(f"{path}:{nearest_line(loc, lines)}: {field}: {message}")
    return "\n".join(problems)


def _without_union_members(loc: tuple) -> tuple:
    """The field's own path: pydantic ends a union member's error with the member's name."""
    while loc and isinstance(loc[-1], str) and UNION_MEMBER.fullmatch(loc[-1]):
        loc = loc[:-1]
    return loc


def _model_fields_at(loc: tuple) -> list[str]:
    model: Any = SweepSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return [*TRAINER_OPTIONS] if part in ("space", "train") else []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None and args:
            inner = [a for arg in args for a in getattr(arg, "__args__", ())]
            model = next(
                (c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None
            )
    if model is Param:
        return list(Param.model_fields)
    return list(getattr(model, "model_fields", {})) if model else list(SCALES)

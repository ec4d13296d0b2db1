"""Panda mode (`sweeper train`): babysit one model, in this process, no Ray.

The configuration is the spec's fixed `train:` options, then the sweep's best trial where the
sweep has one (otherwise the centre of each searched range, in its scaled coordinate), then the
`--set name=value` overrides. The run is logged to the sweep's MLflow experiment with the tag
sweeper.kind=panda, beside the sweep's trials, so the two can be compared in the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from model import TrainConfig
from sweeper.errors import UserError
from sweeper.records import Best, Outcome, TrialRecord
from sweeper.run import ownership
from sweeper.run.sweep import Plan
from sweeper.run.trial import fit
from sweeper.spec import scales
from sweeper.spec.schema import TRAINER_OPTIONS, SweepSpec
from sweeper.tracking.tracker import Tracker


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`name=value` pairs; values are read as YAML scalars (0.01, 64, true, adam)."""
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--set {pair!r}: expected name=value, e.g. --set learning_rate=0.01")
        if not TrainConfig.knows(name):
            raise UserError(f"--set {name}: unknown trainer option; known: {list(TRAINER_OPTIONS)}")
        out[name] = yaml.safe_load(text)
    return out


def bias_variance(metrics: dict[str, float]) -> str:
    """Train vs dev error, the notes' diagnosis: a high train error is bias (a bigger network,
    longer training); a dev error well above it is variance (more data, regularization)."""
    if "train_accuracy" in metrics and "dev_accuracy" in metrics:
        train, dev = (100 * (1 - metrics[f"{s}_accuracy"]) for s in ("train", "dev"))
        return f"train error {train:.1f}% · dev error {dev:.1f}% · gap {dev - train:+.1f} points"
    if "train_loss" in metrics and "dev_loss" in metrics:
        train, dev = metrics["train_loss"], metrics["dev_loss"]
        return f"train loss {train:.4g} · dev loss {dev:.4g} · gap {dev - train:+.4g}"
    return ""


def centre(param: scales.Param) -> Any:
    """The middle of a range in its scaled coordinate (the first choice of a categorical)."""
    if param.scale == "categorical":
        return param.choices[0]
    middle = param.unscaled((param.scaled(param.low) + param.scaled(param.high)) / 2)
    if param.scale == "pow2":
        return 2 ** round(param.scaled(middle))
    return round(middle) if param.scale in ("int", "log_int") else middle


def configuration(spec: SweepSpec, best: Best | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The options to train, checked by the trainer (a bad value is a UserError)."""
    searched = best.params if best else {k: centre(p) for k, p in spec.space.items()}
    options = {**spec.train, **searched, **overrides}
    try:
        TrainConfig.from_dict(options)
    except (TypeError, ValueError) as error:
        raise UserError(f"trainer options: {error}") from None
    return options


def train_one(
    plan: Plan,
    options: dict[str, Any],
    backend: str,
    on_epoch: Callable[[int, dict[str, float]], None],
) -> PandaResult:
    """Train `options` on the plan's data and log the run to the sweep's experiment."""
    start_ms = int(time.time() * 1000)

    def callback(epoch: int, metrics: dict[str, float]) -> bool:
        on_epoch(epoch, metrics)
        return False

    result = fit(options, plan.dataset, callback, backend)
    folder = plan.folder
    ownership.claim(folder.path, ownership.Identity(plan.spec.name, plan.spec.fingerprint()))
    tracker = Tracker(folder.tracking_uri(plan.spec), plan.spec.name, folder.path / "artifacts")
    record = TrialRecord(
        stage="panda",
        number=tracker.count_runs("panda"),
        state="PRUNED" if result.outcome is Outcome.DIVERGED else "COMPLETE",
        value=None,
        params=options,
        metrics=result.metrics,
        history=result.history,
        start_ms=start_ms,
        end_ms=int(time.time() * 1000),
    )
    run_id = tracker.log_trial(None, record, kind="panda", tags={"outcome": result.outcome.value})
    return PandaResult(result.outcome, result.metrics, run_id)


@dataclass(frozen=True)
class PandaResult:
    """A `sweeper train` run: how training ended, the final metrics, its MLflow run."""

    outcome: Outcome
    metrics: dict[str, float]
    run_id: str

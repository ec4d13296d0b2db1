"""The records that travel between the sweeper's components, and the one map of trial states.

A trial task returns a `TrialResult`; `decide` turns it into the Optuna state the StudyServer
records; every finished trial is read back as a `TrialRecord`, built from its Optuna FrozenTrial
in `TrialRecord.of` and nowhere else (the MLflow run, the export rows, the plots and the report
all start from it). `status` and `best` answer with `SweepStatus` and `Best`, whose `to_json`
is the CLI's `--json` output. The final dev/test metrics of a trial are called `metrics`
everywhere; only the Optuna user attribute that stores them keeps its old key (`final`), so
sweeps written before still resume.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from model.checkpoint import Checkpoint
from sweeper.search.patience import STALLED
from sweeper.spec import scales

METRICS_ATTR = "final"  # the user attribute holding a trial's final metrics (stored sweeps)
MODEL_ARTIFACT = "model"  # a kept model's folder in its trial run's artifacts
PRUNED_BY_PRUNER = "pruned"  # the reason tag of a trial its stage's pruner stopped

# Optuna state → (the key it is counted under, the MLflow status of its run)
STATES: dict[TrialState, tuple[str, str]] = {
    TrialState.COMPLETE: ("complete", "FINISHED"),
    TrialState.PRUNED: ("pruned", "KILLED"),
    TrialState.FAIL: ("failed", "FAILED"),
    TrialState.RUNNING: ("running", "RUNNING"),
}
COUNT_KEYS = tuple(key for key, _ in STATES.values())


def count_key(state: str) -> str:
    """'COMPLETE' → 'complete', 'FAIL' → 'failed', …"""
    return STATES[TrialState[state]][0]


def mlflow_status(state: str) -> str:
    return STATES[TrialState[state]][1]


class Outcome(enum.Enum):
    """How a trial task ended: the trainer's outcomes, plus the two the task itself adds."""

    COMPLETED = "completed"  # ran every epoch
    EARLY_STOPPED = "early_stopped"  # dev loss stopped improving
    STOPPED = "stopped"  # the StudyServer asked it to stop (its pruner, or `sweeper prune`)
    DIVERGED = "diverged"  # the cost blew up
    ERROR = "error"  # the task raised (a bug, or an option the trainer refuses)
    LOST = "lost"  # its worker or node died: the driver says so, the task never returned


RUN_AGAIN = ("lost", "interrupted")  # reasons of a FAIL whose params may be queued again


def run_again(trials: list[optuna.trial.FrozenTrial]) -> int:
    """How many trials FAILed only because their worker was lost or the sweep interrupted, and
    have their exact params queued or run again (a trial of theirs carries `retry_of`): no
    failure of the configuration. A lost trial whose retries were spent (`max_retries`) has
    none, and is not counted: it never runs again."""
    return _run_again(
        [(t.number, t.state == TrialState.FAIL, t.user_attrs.get("reason")) for t in trials],
        {t.user_attrs.get("retry_of") for t in trials},
    )


def records_run_again(records: list[TrialRecord]) -> int:
    """`run_again` of a stage's records (as the report and export read them)."""
    return _run_again(
        [(r.number, r.state == "FAIL", r.reason) for r in records], {r.retry_of for r in records}
    )


def _run_again(trials: list[tuple[int, bool, str | None]], retried: set[int | None]) -> int:
    """Of (number, failed, reason), those failed for a reason that runs again, and run again."""
    return sum(failed and reason in RUN_AGAIN and n in retried for n, failed, reason in trials)


def is_diverged(trial: optuna.trial.FrozenTrial) -> bool:
    """PRUNED because its cost blew up (`decide` tags the reason)."""
    reason = trial.user_attrs.get("reason")
    return trial.state == TrialState.PRUNED and reason == Outcome.DIVERGED.value


def stopped_by_pruner(trial: optuna.trial.FrozenTrial) -> bool:
    """PRUNED by its stage's pruner (not diverged, not stopped by hand: `decide`'s reasons)."""
    reason = trial.user_attrs.get("reason", PRUNED_BY_PRUNER)
    return trial.state == TrialState.PRUNED and reason == PRUNED_BY_PRUNER


@dataclass(frozen=True)
class TrialResult:
    """What a trial task returns to the driver, which passes it on to `StudyServer.tell`."""

    outcome: Outcome
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per epoch
    metrics: dict[str, float] = field(default_factory=dict)  # final dev/test metrics
    node_id: str = ""
    error: str | None = None  # the traceback of an ERROR
    checkpoint: Checkpoint | None = None  # the trained network of a trial that ran to its end


@dataclass(frozen=True)
class Verdict:
    """How the StudyServer records a trial: its state, objective value and reason tag."""

    state: TrialState
    value: float | None = None
    reason: str | None = None  # None: keep the reason the trial already has, if any


def decide(result: TrialResult, objective: str, stop_reason: str | None) -> Verdict:
    """The Optuna state of a finished trial. `stop_reason` is why the server asked it to stop
    (`manual`), if it gave one. Only COMPLETE and PRUNED trials count toward a stage's target, so
    a trial that may run again (lost, error, no finite objective) is FAIL, and a diverged one is
    PRUNED: its configuration is bad, running it again would diverge again. A trial stopped
    because its objective stalled (a stage's `patience`) is COMPLETE, its kept model's value."""
    if result.outcome is Outcome.LOST:
        return Verdict(TrialState.FAIL, reason="lost")
    if result.outcome is Outcome.ERROR:
        return Verdict(TrialState.FAIL, reason="error")
    if result.outcome is Outcome.DIVERGED:
        return Verdict(TrialState.PRUNED, reason=Outcome.DIVERGED.value)
    if result.outcome is Outcome.STOPPED and stop_reason != STALLED:
        return Verdict(TrialState.PRUNED, reason=stop_reason or PRUNED_BY_PRUNER)
    value = result.metrics.get(objective)
    if value is None or not math.isfinite(value):
        return Verdict(TrialState.FAIL, reason=f"no finite {objective}")
    return Verdict(TrialState.COMPLETE, value=value)


@dataclass
class TrialRecord:
    """One trial as every reader sees it (and as its MLflow run is written)."""

    stage: str
    number: int
    state: str  # the Optuna state's name: COMPLETE, PRUNED, FAIL, RUNNING
    value: float | None
    params: dict[str, Any]  # as the trainer saw them: fixed options and the decoded search
    metrics: dict[str, float]  # final metrics of the model kept
    history: list[dict[str, float]]  # one dict of metrics per epoch
    start_ms: int | None = None
    end_ms: int | None = None
    node_id: str | None = None
    reason: str | None = None
    retry_of: int | None = None

    @classmethod
    def of(
        cls,
        stage: str,
        trial: optuna.trial.FrozenTrial,
        space: scales.Space,
        fixed: dict[str, Any],
        objective: str,
    ) -> TrialRecord:
        """The record of an Optuna trial of `stage`, whose searched box was `space`. A trial
        that never reported its history (lost, interrupted) shows its reported objective values."""
        attrs = trial.user_attrs
        params = scales.decode(space, trial.params)
        history = attrs.get("history") or [
            {objective: v} for _, v in sorted(trial.intermediate_values.items())
        ]
        return cls(
            stage=stage,
            number=trial.number,
            state=trial.state.name,
            value=trial.value,
            params={**fixed, **params},
            metrics=attrs.get(METRICS_ATTR, {}),
            history=history,
            start_ms=attrs.get("start_ms"),
            end_ms=attrs.get("end_ms"),
            node_id=attrs.get("node_id"),
            reason=attrs.get("reason"),
            retry_of=attrs.get("retry_of"),
        )

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def duration_s(self) -> float | None:
        if self.start_ms and self.end_ms:
            return (self.end_ms - self.start_ms) / 1000
        return None

    @property
    def tags(self) -> dict[str, str]:
        """node_id, reason and retry_of, where known (as MLflow tags sweeper.<name>)."""
        known = {"node_id": self.node_id, "reason": self.reason, "retry_of": self.retry_of}
        return {k: str(v) for k, v in known.items() if v is not None}


@dataclass(frozen=True)
class Best:
    """The best completed trial of a sweep (`sweeper best`)."""

    stage: str
    trial: int
    value: float
    params: dict[str, Any]
    metrics: dict[str, float]
    model_uri: str | None = None  # its MLflow Model (runs:/…/model), when kept
    # the MLflow store model_uri is in (MLFLOW_TRACKING_URI for plain MLflow), its ${VAR}s kept
    tracking_uri: str | None = None

    @classmethod
    def of(cls, record: TrialRecord) -> Best:
        """From a completed trial's record (one with a value)."""
        return cls(record.stage, record.number, record.value, record.params, record.metrics)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StageStatus:
    """A stage's trial counts and, once opened, the box it searches."""

    name: str
    target: int
    counts: dict[str, int]  # COUNT_KEYS → trials, warm-start copies left out
    space: dict[str, Any] | None = None  # parameter name → its scale, low, high (or choices)
    plan: str = ""  # how it samples, prunes and zooms (`Stage.describe`)
    diverged: int = 0  # of the pruned: their cost blew up (`is_diverged`)
    run_again: int = 0  # of the failed: lost or interrupted, their params run again

    @property
    def finished(self) -> int:
        return self.counts["complete"] + self.counts["pruned"]

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "target": self.target, "plan": self.plan, **self.counts}
        out["diverged"], out["run_again"] = self.diverged, self.run_again
        return out | ({"space": self.space} if self.space is not None else {})


@dataclass
class StageProgress:
    """A stage as it runs: what the StudyServer says of a stage it opens (a resumed one starts
    from its counts and best), and what the driver loop tells its observer after each trial."""

    stage: str
    target: int
    counts: dict[str, int]
    running: int = 0
    best: float | None = None
    run_again: int = 0  # of the failed: lost or interrupted, run again (see `run_again`)

    @property
    def finished(self) -> int:
        """Trials that count toward `target` (as `StageStatus.finished`)."""
        return self.counts["complete"] + self.counts["pruned"]


@dataclass(frozen=True)
class ModelUsage:
    """The kept models of a sweep on disk."""

    kept: int
    bytes: int


@dataclass(frozen=True)
class SweepStatus:
    """`sweeper status`: a sweep's stages, and the disk its kept models take (when local)."""

    name: str
    stages: list[StageStatus]
    models: ModelUsage | None = None
    budget: dict[str, Any] | None = None  # `budget:`'s non-default keys (trials, epochs, …)
    state: str = "stopped"  # running (a driver holds its lock) | finished | stopped | not started

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "state": self.state, "stages": [s.to_json() for s in self.stages]}
        out |= {"budget": self.budget} if self.budget is not None else {}
        return out | ({"models": dataclasses.asdict(self.models)} if self.models else {})


@dataclass(frozen=True)
class SweepSummary:
    """One line of `sweeper list`."""

    name: str
    folder: str
    finished: int = 0
    target: int = 0
    error: str | None = None  # why the folder could not be read (a broken or foreign sweep)
    state: str = "stopped"  # as SweepStatus.state, or unreadable (with an error)

    def to_json(self) -> dict[str, Any]:
        entry = dataclasses.asdict(self)
        if self.error is None:
            del entry["error"]
        return entry


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)

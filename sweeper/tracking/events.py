"""What the StudyServer tells the Recorder about a trial's run: it started, reported an epoch,
ended. Plain records, queued from the actor's thread; MLflow is imported by the writer only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sweeper.records import TrialRecord

Key = tuple[str, int]  # (stage, trial number)


@dataclass
class RecordEvent:
    """A trial's run as its record says it is, queued at `at`."""

    record: TrialRecord
    at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> Key:
        return self.record.stage, self.record.number


class Started(RecordEvent):
    """A trial began (`record` is RUNNING: params, start time, retry_of)."""


@dataclass
class Epoch:
    """One epoch's metrics, as the trial reported them at `ms`."""

    stage: str
    number: int
    step: int
    metrics: dict[str, float]
    ms: int
    at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> Key:
        return self.stage, self.number


class Finished(RecordEvent):
    """A trial ended (or was recovered from Optuna): its run as it stays."""


TrialEvent = Started | Epoch | Finished

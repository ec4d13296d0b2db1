"""Trial runs while they train: what one batch of trial events writes to MLflow.

The StudyServer queues three kinds of events per trial: `Started` at `ask`, `Epoch` at each
`report`, `Finished` at `tell`. The Recorder's thread takes the events queued meanwhile as one
batch, and `LiveRuns.plan` folds them per trial into runs to create (RUNNING, or already ended
when the trial started and ended within the batch) and updates of runs an earlier batch created
(epochs appended, tags changed, the end). So a trial's run appears when it starts and its
epochs follow while it trains, yet a batch is one transaction whatever it holds.

The epochs written live keep the times they were reported at; at the end the run gets what they
lack: epochs the trial never reported (the one it diverged at) and the final metrics. Pure
bookkeeping, no MLflow call; only the Recorder's thread uses it, after each batch it wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from mlflow.entities import Metric

from sweeper.tracking.events import Epoch, Key, Started, TrialEvent
from sweeper.tracking.run_tables import RunContent, RunUpdate

MetricId = tuple[str, int, int, str]  # (key, timestamp, step, value): one stored point


def metric_id(metric: Metric) -> MetricId:
    return metric.key, metric.timestamp, metric.step, repr(metric.value)  # NaN equals NaN


@dataclass
class Writes:
    """One batch's writes: runs to create, updates of running ones, each by trial."""

    new: dict[Key, RunContent] = field(default_factory=dict)
    updates: dict[Key, RunUpdate] = field(default_factory=dict)


@dataclass
class OpenRun:
    """A RUNNING run this writer created: its tags and the metric points it holds."""

    run_id: str
    tags: dict[str, str]
    points: set[MetricId]


class LiveRuns:
    def __init__(self) -> None:
        self.open: dict[Key, OpenRun] = {}

    def plan(self, events: list[TrialEvent], parent_of: Callable[[str], str | None]) -> Writes:
        """The writes of `events` (in the order they were queued); `parent_of(stage)`: the
        stage's run id. Changes nothing until `written` says the batch is in."""
        writes = Writes()
        for event in events:
            key = event.key
            if isinstance(event, Started):
                writes.new[key] = RunContent.of(parent_of(key[0]), event.record, "trial", {})
            elif isinstance(event, Epoch):
                metrics = [
                    Metric(k, float(v), event.ms, event.step) for k, v in event.metrics.items()
                ]
                if key in writes.new:
                    writes.new[key].epochs += metrics
                elif key in self.open:
                    self._update(writes, key).metrics += metrics
            else:
                final = RunContent.of(parent_of(key[0]), event.record, "trial", {})
                if key in writes.new:  # started in this batch: one run, created as it ends
                    live = writes.new[key].epochs
                    missing = missing_epochs(final, {metric_id(m) for m in live})
                    writes.new[key] = dataclasses.replace(final, epochs=live + missing)
                elif key in self.open:
                    run, update = self.open[key], self._update(writes, key)
                    seen = run.points | {metric_id(m) for m in update.metrics}
                    update.metrics += missing_epochs(final, seen)
                    update.metrics += [m for m in final.final if metric_id(m) not in seen]
                    update.tags = {k: v for k, v in final.tags.items() if run.tags.get(k) != v}
                    update.status, update.end_ms = final.status, final.end_ms
                else:  # no run of it yet (recovered after a crash): written whole
                    writes.new[key] = final
        return writes

    def _update(self, writes: Writes, key: Key) -> RunUpdate:
        return writes.updates.setdefault(key, RunUpdate(self.open[key].run_id))

    def written(self, writes: Writes, new_ids: dict[Key, str]) -> None:
        """The batch is in MLflow: remember the runs left RUNNING, forget the ended ones."""
        for key, run in writes.new.items():
            if run.end_ms is None:
                self.open[key] = OpenRun(
                    new_ids[key], run.tags, {metric_id(m) for m in run.metrics}
                )
        for key, update in writes.updates.items():
            if update.status is not None:
                del self.open[key]
            else:
                self.open[key].points.update(metric_id(m) for m in update.metrics)


def missing_epochs(final: RunContent, seen: set[MetricId]) -> list[Metric]:
    """The epochs of an ended run's history that no point `seen` (reported live) covers."""
    steps = {(key, step) for key, _, step, _ in seen}
    return [m for m in final.epochs if (m.key, m.step) not in steps]

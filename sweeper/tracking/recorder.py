"""The StudyServer's MLflow side: one background thread that owns the sweep's Tracker.

Every MLflow call of a sweep runs here, in order, off the trials' critical path: importing
mlflow and creating its database (seconds) overlap the first trials, trial runs are written
while the trials train, and figures are drawn while the next stage runs. Jobs are functions
of the Tracker; a job that fails is kept in `errors` and the others go on (the next
`open_stage` rebuilds a missing run from Optuna, the source of truth). Trial events (a trial
started, reported an epoch, ended) wait up to LINGER_S for company and are written together, in
one transaction on a database store (see live.py): a running trial's epochs show in MLflow a
fraction of a second after it reported them, at one commit per batch, not one per epoch.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.records import TrialRecord
from sweeper.tracking.events import Epoch, Finished, Started, TrialEvent

if TYPE_CHECKING:
    from sweeper.data.datasets import DataInput, Preprocessing
    from sweeper.tracking.live import LiveRuns
    from sweeper.tracking.tracker import Tracker

Job = Callable[["Tracker"], None]
Pngs = dict[str, bytes]
BATCH = 500  # trial events written in one transaction at most
LINGER_S = 0.25  # how long a trial event waits for others to share its transaction


def now_ms() -> int:
    return int(time.time() * 1000)


Queue = deque[tuple[str, Job] | TrialEvent]


def is_due(jobs: Queue, flushing: bool, now: float) -> bool:
    """Is the oldest job to be done now? Trial events linger for company unless a job waits
    behind them, the batch is full or someone is flushing."""
    if not jobs:
        return False
    head, tail = jobs[0], jobs[-1]
    return (
        isinstance(head, tuple)
        or isinstance(tail, tuple)
        or flushing
        or len(jobs) >= BATCH
        or now - head.at >= LINGER_S
    )


def pop_batch(jobs: Queue) -> list[TrialEvent]:
    """The trial events at the head of the queue, up to BATCH: one transaction's worth."""
    events: list[TrialEvent] = []
    while jobs and not isinstance(jobs[0], tuple) and len(events) < BATCH:
        events.append(jobs.popleft())
    return events


class Recorder:
    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_dir: Path,
        preprocessing: Preprocessing | None = None,
        inputs: list[DataInput] | None = None,
        sweep_id: str | None = None,
    ):
        self.errors: list[str] = []
        self.preprocessing = preprocessing  # saved with each kept model
        self.inputs = inputs or []  # the data, logged as every stage run's input datasets
        self.stage_runs: dict[str, str] = {}  # stage name → its run id
        self.trial_runs: dict[tuple[str, int], str] = {}  # (stage, trial) → its run id
        self.live: LiveRuns | None = None  # the trial runs this thread holds RUNNING
        self.stage_pngs: dict[str, Pngs] = {}  # stage name → its figures, for the report
        self.started_ms = now_ms()  # the sweep run's start: when this driver began recording
        self._jobs: Queue = deque()
        self._busy = False
        self._flushing = 0  # callers of flush(): trials are written without lingering
        self._changed = threading.Condition()
        # kept models queued, not yet being written: (stage, trial) → (its job, staged folder)
        self._waiting_saves: dict[tuple[str, int], tuple[tuple[str, Job], Path]] = {}
        threading.Thread(
            target=self._work, args=(tracking_uri, experiment, artifact_dir, sweep_id), daemon=True
        ).start()

    def _work(
        self, tracking_uri: str, experiment: str, artifact_dir: Path, sweep_id: str | None
    ) -> None:
        tracker = None
        try:
            from sweeper.tracking.live import LiveRuns
            from sweeper.tracking.tracker import Tracker

            self.live = LiveRuns()
            tracker = Tracker(tracking_uri, experiment, artifact_dir, sweep_id)
            # matplotlib and scikit-learn (under optuna.importance) load now, while trials run,
            # not after the last one: seconds off the end of every sweep
            import sweeper.results.plots  # noqa: F401
        except Exception as error:
            self.errors.append(f"MLflow store {tracking_uri}: {type(error).__name__}: {error}")
        while True:
            with self._changed:
                while not self._due():
                    self._changed.wait(timeout=LINGER_S if self._jobs else None)
                what, job = self._next_job()
                self._busy = True
            try:
                if tracker is not None:
                    job(tracker)
            except Exception as error:
                self.errors.append(f"{what}: {type(error).__name__}: {error}")
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _due(self) -> bool:
        return is_due(self._jobs, self._flushing > 0, time.monotonic())

    def _next_job(self) -> tuple[str, Job]:
        """The oldest job; the trial events at the head of the queue become one job."""
        if isinstance(self._jobs[0], tuple):
            return self._jobs.popleft()
        events = pop_batch(self._jobs)
        what = f"trials {sorted({e.key for e in events})}"

        def job(tracker: Tracker) -> None:
            writes = self.live.plan(events, self.stage_runs.get)
            created = tracker.write_trials(writes)
            self.live.written(writes, created)
            self.trial_runs.update(created)

        return what, job

    def _put(self, job: tuple[str, Job] | TrialEvent) -> None:
        with self._changed:
            self._jobs.append(job)
            self._changed.notify_all()

    def flush(self) -> None:
        """Wait until every job submitted so far is done."""
        with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                self._changed.wait_for(lambda: not self._jobs and not self._busy)
            finally:
                self._flushing -= 1

    # -- jobs ------------------------------------------------------------------------------
    def open_stage(self, stage: str, params: dict[str, Any], finished: list[TrialRecord]) -> None:
        """The stage's run, with the data as its inputs; trial runs a killed writer left
        RUNNING are deleted, and the finished trials (`finished`, as `log_trial` records)
        without a run are written."""

        opened_ms = now_ms()  # now, not when this thread gets to it

        def job(tracker: Tracker) -> None:
            run_id = self.stage_runs[stage] = tracker.stage_run(stage, params, opened_ms)
            if self.inputs:
                tracker.log_inputs(run_id, self.inputs)
            tracker.discard_unfinished_trial_runs(stage)
            logged = tracker.logged_trials(stage)
            tracker.log_trials(run_id, [r for r in finished if r.number not in logged])

        self._put((f"open stage {stage}", job))

    def start_trial(self, record: TrialRecord) -> None:
        """A trial began (`record`: RUNNING): its run appears, RUNNING."""
        self._put(Started(record))

    def log_epoch(self, stage: str, number: int, epoch: int, metrics: dict[str, float]) -> None:
        """A running trial's metrics of `epoch`, reported now."""
        self._put(Epoch(stage, number, epoch, metrics, now_ms()))

    def log_trial(self, record: TrialRecord) -> None:
        """A trial ended (or was recovered): its run gets its end, or is written whole."""
        self._put(Finished(record))

    def close_stage(
        self,
        stage: str,
        metrics: dict[str, float],
        draw: Callable[[], Pngs] | None,
        status: str = "FINISHED",
    ) -> None:
        """Finish the stage's run, then attach the figures `draw` makes (when given)."""

        closed_ms = now_ms()

        def job(tracker: Tracker) -> None:
            tracker.finish_run(self.stage_runs[stage], metrics, status, closed_ms)
            if draw is not None:
                self.stage_pngs[stage] = draw()
                tracker.log_files(self.stage_runs[stage], self.stage_pngs[stage])

        self._put((f"close stage {stage}", job))

    def finish_sweep(self, draw: Callable[[Pngs], dict[str, bytes]]) -> None:
        """The sweep's run with the files `draw` makes from every stage's figures."""

        def job(tracker: Tracker) -> None:
            run_id = tracker.sweep_run(self.started_ms)
            stage_pngs = {n: png for pngs in self.stage_pngs.values() for n, png in pngs.items()}
            tracker.log_files(run_id, draw(stage_pngs))
            tracker.finish_run(run_id, {})

        self._put(("sweep figures", job))

    # -- models ----------------------------------------------------------------------------
    def _trial_run(self, tracker: Tracker, stage: str, number: int) -> str:
        if (stage, number) not in self.trial_runs:  # a run written by an earlier driver
            self.trial_runs.update(
                {(stage, n): run_id for n, run_id in tracker.trial_run_ids(stage).items()}
            )
        return self.trial_runs[(stage, number)]

    def save_model(self, stage: str, number: int, staged: Path) -> None:
        """Write the checkpoint staged in `staged` as the trial run's MLflow Model, then remove
        it (a crash in between writes the same files again on resume: no second model)."""

        job = (f"{stage} trial {number}: model", self._saving(stage, number, staged))
        with self._changed:
            self._waiting_saves[(stage, number)] = (job, staged)
        self._put(job)

    def _saving(self, stage: str, number: int, staged: Path) -> Job:
        def job(tracker: Tracker) -> None:
            with self._changed:
                self._waiting_saves.pop((stage, number), None)
            self._save(tracker, stage, number, staged)

        return job

    def _save(self, tracker: Tracker, stage: str, number: int, staged: Path) -> None:
        from model.checkpoint import Checkpoint

        if self.preprocessing is None:
            raise ValueError("no preprocessing given to the StudyServer: model not saved")
        run_id = self._trial_run(tracker, stage, number)
        tracker.save_model(run_id, Checkpoint.load(staged), self.preprocessing)
        shutil.rmtree(staged)

    def drop_model(self, stage: str, number: int) -> None:
        """Delete the model of a trial pushed out of its stage's kept ones. One still waiting in
        the queue is not written at all (its staged checkpoint removed now): when trials end
        faster than models are written (a pack's members end together), most kept models are
        pushed out again before their turn, and writing one costs ~0.1–0.2 CPU s."""
        with self._changed:
            waiting = self._waiting_saves.pop((stage, number), None)
            if waiting is not None and waiting[0] in self._jobs:  # not yet taken by the writer
                self._jobs.remove(waiting[0])
            else:
                waiting = None
        if waiting is not None:
            shutil.rmtree(waiting[1])
            return

        def job(tracker: Tracker) -> None:
            tracker.drop_model(self._trial_run(tracker, stage, number))

        self._put((f"{stage} trial {number}: drop model", job))

    def reconcile_models(self, stage: str, kept: frozenset[int], staged: dict[int, Path]) -> None:
        """When a stage opens, with what a previous driver left: the models `staged` (trial →
        its checkpoint folder) of trials in `kept` are written, other staged ones removed, and
        models of trials no longer in `kept` deleted."""

        def job(tracker: Tracker) -> None:
            for number, folder in sorted(staged.items()):
                if number in kept:  # now, before any later job drops it again
                    self._save(tracker, stage, number, folder)
                else:
                    shutil.rmtree(folder)
            for number in tracker.trials_with_models(stage) - kept:
                self.drop_model(stage, number)

        self._put((f"{stage}: reconcile models", job))

    def register_best(self, record: TrialRecord) -> None:
        """Register the best trial's model under the experiment's (the sweep's) name."""

        def job(tracker: Tracker) -> None:
            run_id = self._trial_run(tracker, record.stage, record.number)
            tracker.register_model(run_id, record)

        self._put(("register the best model", job))

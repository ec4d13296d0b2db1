"""The StudyServer's MLflow side: one background thread that owns the sweep's Tracker.

Every MLflow call of a sweep runs here, in order, off the trials' critical path: importing
mlflow and creating its database (seconds) overlap the first trials, a trial's run is written
while the next ones train, and figures are drawn while the next stage runs. Jobs are functions
of the Tracker; a job that fails is kept in `errors` and the others go on (the next
`open_stage` rebuilds a missing run from Optuna, the source of truth).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper.tracking import Tracker

Job = Callable[["Tracker"], None]
Pngs = dict[str, bytes]


def default_tracking_uri(sweep_dir: Path) -> str:
    """SQLite in the sweep folder: MLflow's plain file store refuses new runs."""
    return f"sqlite:///{sweep_dir.resolve() / 'mlflow.db'}"


class Recorder:
    def __init__(self, tracking_uri: str, experiment: str, artifact_dir: Path):
        self.errors: list[str] = []
        self.stage_runs: dict[str, str] = {}  # stage name → its run id
        self.stage_pngs: dict[str, Pngs] = {}  # stage name → its figures, for the report
        self._jobs: queue.Queue[tuple[str, Job]] = queue.Queue()
        threading.Thread(
            target=self._work, args=(tracking_uri, experiment, artifact_dir), daemon=True
        ).start()

    def _work(self, tracking_uri: str, experiment: str, artifact_dir: Path) -> None:
        tracker = None
        try:
            from sweeper.tracking import Tracker

            tracker = Tracker(tracking_uri, experiment, artifact_dir)
        except Exception as error:
            self.errors.append(f"MLflow store {tracking_uri}: {type(error).__name__}: {error}")
        while True:
            what, job = self._jobs.get()
            try:
                if tracker is not None:
                    job(tracker)
            except Exception as error:
                self.errors.append(f"{what}: {type(error).__name__}: {error}")
            finally:
                self._jobs.task_done()

    def flush(self) -> None:
        """Wait until every job submitted so far is done."""
        self._jobs.join()

    # -- jobs ------------------------------------------------------------------------------
    def open_stage(self, stage: str, params: dict[str, Any], finished: list[dict]) -> None:
        """The stage's run; trial runs a killed writer left RUNNING are deleted, and the
        finished trials (`finished`, as `log_trial` records) without a run are written."""

        def job(tracker: Tracker) -> None:
            run_id = self.stage_runs[stage] = tracker.stage_run(stage, params)
            tracker.discard_unfinished_trial_runs(stage)
            logged = tracker.logged_trials(stage)
            for record in finished:
                if record["number"] not in logged:
                    tracker.log_trial(run_id, record)

        self._jobs.put((f"open stage {stage}", job))

    def log_trial(self, record: dict[str, Any]) -> None:
        stage = record["stage"]
        self._jobs.put(
            (
                f"{stage}-{record['number']}",
                lambda tracker: tracker.log_trial(self.stage_runs[stage], record),
            )
        )

    def close_stage(
        self,
        stage: str,
        metrics: dict[str, float],
        draw: Callable[[], Pngs] | None,
        status: str = "FINISHED",
    ) -> None:
        """Finish the stage's run, then attach the figures `draw` makes (when given)."""

        def job(tracker: Tracker) -> None:
            tracker.finish_run(self.stage_runs[stage], metrics, status)
            if draw is not None:
                self.stage_pngs[stage] = draw()
                tracker.log_files(self.stage_runs[stage], self.stage_pngs[stage])

        self._jobs.put((f"close stage {stage}", job))

    def finish_sweep(self, draw: Callable[[Pngs], dict[str, bytes]]) -> None:
        """The sweep's run with the files `draw` makes from every stage's figures."""

        def job(tracker: Tracker) -> None:
            run_id = tracker.sweep_run()
            stage_pngs = {n: png for pngs in self.stage_pngs.values() for n, png in pngs.items()}
            tracker.log_files(run_id, draw(stage_pngs))
            tracker.finish_run(run_id, {})

        self._jobs.put(("sweep figures", job))

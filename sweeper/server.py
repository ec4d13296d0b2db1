"""The StudyServer: the only process that writes a sweep's Optuna studies and MLflow runs.

Ownership rules (why trials never touch a storage):
- Trial tasks compute and send plain dicts here: `ask` hands out a trial number and its params,
  `report` takes one epoch's objective value and answers whether to stop (Optuna pruner, or a
  manual prune request), `tell` records the outcome. A worker on another node needs no database
  access, the journal/SQLite files have a single writer, and a dead worker leaves nothing half
  written.
- Optuna is the source of truth; each finished trial's MLflow run is derived from what Optuna
  holds (params, per-epoch history and final metrics in user attributes) and written by a
  background thread, off the trials' critical path. `open_stage` rebuilds any run a crash lost.
- A trial left RUNNING by a dead driver or worker is marked FAIL (tag reason=lost) when its stage
  is opened again, and its params are enqueued so the same configuration runs once more; Ctrl-C
  does the same at once (reason=interrupted). Trial runs a killed writer left RUNNING in MLflow
  are deleted and rebuilt from Optuna.
Actor methods run one at a time, so no locking is needed around Optuna.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper import locks
from sweeper import space as scales
from sweeper.control import PruneRequests
from sweeper.recorder import Recorder, default_tracking_uri
from sweeper.spec import SweepSpec
from sweeper.study import (
    make_pruner,
    make_sampler,
    make_storage,
    repair_torn_journal,
    study_name,
    sync,
)
from sweeper.view import is_warm_start, stage_counts, view
from sweeper.zoom import zoom_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

WRITER_WAIT_S = 60  # how long a new StudyServer waits for a dead driver's one to be gone


class StudyServer:
    """Records a sweep. Create as a Ray actor with num_cpus=0 so it takes no trial slot."""

    def __init__(self, spec_json: str, sweep_dir: str, credentials: dict[str, str] | None = None):
        """`credentials`: the `${VAR}`s of the storage URLs, from the driver's environment
        (an argument, not a runtime_env: Ray writes those to its log files)."""
        os.environ.update(credentials or {})  # this actor's own process
        self.spec = SweepSpec.model_validate_json(spec_json)
        self.sweep_dir = Path(sweep_dir)
        self.writer_lock = locks.acquire(self.sweep_dir / "writer.lock", WRITER_WAIT_S)
        if self.writer_lock is None:
            raise RuntimeError(
                f"the StudyServer of a previous driver still writes {sweep_dir} after "
                f"{WRITER_WAIT_S} s; stop its Ray job, then resume"
            )
        repair_torn_journal(self.sweep_dir)  # only now: no other writer can append meanwhile
        self.storage = make_storage(self.spec.storage.optuna, self.sweep_dir, single_writer=True)
        self.maximize = self.spec.objective.direction == "maximize"
        self.epochs = int(self.spec.train.get("epochs", 30))
        self.studies: dict[int, optuna.Study] = {}
        self.spaces: dict[int, scales.Space] = {}
        self.live: dict[tuple[int, int], optuna.Trial] = {}
        self.prune_requests = PruneRequests(self.sweep_dir)
        self.closed: set[int] = set()
        self.recorder = Recorder(
            self.spec.storage.mlflow or default_tracking_uri(self.sweep_dir),
            self.spec.name,
            self.sweep_dir / "artifacts",
        )

    # -- stages ----------------------------------------------------------------------------
    def open_stage(self, index: int) -> dict[str, Any]:
        """Create or load stage `index`'s study; recover what a crash left; return its state."""
        stage = self.spec.stages[index]
        name = study_name(self.spec.name, stage.name)
        seed = stage.seed if stage.seed is not None else index
        study = optuna.create_study(
            study_name=name,
            storage=self.storage,
            load_if_exists=True,
            direction="maximize" if self.maximize else "minimize",
        )
        if "space" in study.user_attrs:
            space = {
                k: scales.Param.model_validate(v) for k, v in study.user_attrs["space"].items()
            }
        else:
            space = self._new_stage_space(index, study)
        study.sampler = make_sampler(stage, seed, scales.distributions(space))
        study.pruner = make_pruner(stage.pruner, self.epochs)
        self.studies[index] = study
        self.spaces[index] = space
        # in this order: a lost trial's run is written by the recovery, not rebuilt as well
        self.recorder.open_stage(
            stage.name,
            {"space." + k: p.model_dump(exclude_none=True) for k, p in space.items()}
            | {"study": name, "sampler": stage.sampler, "pruner": stage.pruner.type},
            [
                self._record(index, t)
                for t in study.get_trials(deepcopy=False)
                if t.state.is_finished() and not is_warm_start(t)
            ],
        )
        self._recover_lost_trials(index)
        return {
            "counts": stage_counts(study),
            "space": {k: p.model_dump(exclude_none=True) for k, p in space.items()},
        }

    def _new_stage_space(self, index: int, study: optuna.Study) -> scales.Space:
        stage = self.spec.stages[index]
        space = dict(self.spec.space)
        if stage.zoom is not None:
            previous = self.studies[index - 1]
            space, best = zoom_space(
                self.spaces[index - 1],
                previous.get_trials(deepcopy=False),
                stage.zoom.top,
                stage.zoom.margin,
                self.maximize,
            )
            self._warm_start(index, study, space, best)
        study.set_user_attr("space", {k: p.model_dump(exclude_none=True) for k, p in space.items()})
        return space

    def _warm_start(self, index: int, study: optuna.Study, space: scales.Space, best: list) -> None:
        """Copy the previous stage's top trials that lie in the new box, so TPE starts informed."""
        previous_space = self.spaces[index - 1]
        source = self.spec.stages[index - 1].name
        copied = {t.user_attrs.get("warm_start_from") for t in study.get_trials(deepcopy=False)}
        for trial in best:
            values = scales.decode(previous_space, trial.params)
            origin = f"{source}:{trial.number}"
            if origin not in copied and all(p.contains(values[k]) for k, p in space.items()):
                study.add_trial(  # a pruned one stays pruned: TPE weighs it by how far it got
                    optuna.trial.create_trial(
                        state=trial.state,
                        params=scales.encode(space, values),
                        distributions=scales.distributions(space),
                        value=trial.value,
                        intermediate_values=trial.intermediate_values,
                        user_attrs={"warm_start_from": origin},
                    )
                )

    def _recover_lost_trials(self, index: int) -> None:
        """RUNNING trials belong to a driver or worker that died: FAIL them, re-run their params."""
        for trial in self.studies[index].get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if (index, trial.number) not in self.live:
                self._fail_and_retry(index, trial, "lost")

    def _fail_and_retry(
        self, index: int, trial: optuna.Trial | optuna.trial.FrozenTrial, reason: str
    ) -> None:
        """FAIL an unfinished trial with `reason`, and enqueue its params to run again."""
        study = self.studies[index]
        study._storage.set_trial_user_attr(trial._trial_id, "reason", reason)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        self.recorder.log_trial(self._record(index, study._storage.get_trial(trial._trial_id)))

    def interrupt(self) -> int:
        """Ctrl-C: FAIL every running trial (reason=interrupted, params re-queued for resume),
        mark open stages' runs KILLED and write everything to MLflow. Returns the trial count."""
        live = list(self.live.items())
        for (index, _), trial in live:
            self._fail_and_retry(index, trial, "interrupted")
        self.live.clear()
        sync(self.storage)
        for index in self.studies.keys() - self.closed:
            self.recorder.close_stage(self.spec.stages[index].name, {}, None, status="KILLED")
        self.recorder.flush()
        return len(live)

    def close_stage(self, index: int) -> dict[str, int]:
        """Finish the stage's run; its figures are drawn in the background (see Recorder)."""
        study = self.studies[index]
        counts = stage_counts(study)
        metrics = {f"trials_{k}": float(v) for k, v in counts.items()}
        with contextlib.suppress(ValueError):  # no completed trial: no best value
            metrics["best_value"] = float(study.best_value)
        self.closed.add(index)
        sync(self.storage)
        stage = self.spec.stages[index].name
        sweep, trials = view(self.spec, self.storage), study.get_trials(deepcopy=False)

        def draw() -> dict[str, bytes]:
            from sweeper import plots

            return plots.pngs(plots.stage_figures(sweep, stage, trials))

        self.recorder.close_stage(stage, metrics, draw)
        return counts

    def finish_sweep(self) -> None:
        """After the last stage: the figures across stages and the report, on the sweep's run."""
        sweep = view(self.spec, self.storage)

        def draw(stage_pngs: dict[str, bytes]) -> dict[str, bytes]:
            from sweeper import plots, report

            files = plots.pngs(plots.sweep_figures(sweep))
            files["report.html"] = report.render(sweep, files | stage_pngs).encode()
            return files

        self.recorder.finish_sweep(draw)

    def flush(self) -> list[str]:
        """Wait until MLflow holds everything recorded so far; the MLflow errors met."""
        self.recorder.flush()
        return self.recorder.errors

    # -- trials ----------------------------------------------------------------------------
    def ask(self, index: int) -> tuple[int, dict[str, Any]]:
        """A new trial of stage `index`: its number and trainer params."""
        study = self.studies[index]
        trial = study.ask(scales.distributions(self.spaces[index]))
        trial.set_user_attr("start_ms", int(time.time() * 1000))
        self.live[(index, trial.number)] = trial
        return trial.number, scales.decode(self.spaces[index], trial.params)

    def retry(self, index: int, number: int) -> None:
        """Make the next `ask` of stage `index` run trial `number`'s exact params again."""
        study = self.studies[index]
        params = study.get_trials(deepcopy=False)[number].params
        study.enqueue_trial(params, user_attrs={"retry_of": number})

    def report(self, index: int, number: int, epoch: int, value: float) -> bool:
        """Record one epoch's objective value; True when the trial should stop now."""
        trial = self.live.get((index, number))
        if trial is None:  # interrupted: already recorded as FAIL
            return True
        if math.isfinite(value):
            trial.report(value, step=epoch)
        if (self.spec.stages[index].name, number) in self.prune_requests:
            trial.set_user_attr("reason", "manual")
            return True
        return trial.should_prune()

    def tell(
        self,
        index: int,
        number: int,
        outcome: str,
        history: list[dict[str, float]],
        final: dict[str, float],
        node_id: str,
        error: str | None = None,
    ) -> str:
        """Record a finished trial in Optuna, then queue its MLflow run. Returns the state."""
        study = self.studies[index]
        trial = self.live.pop((index, number))
        attrs = {
            "history": history,
            "final": final,
            "node_id": node_id,
            "end_ms": int(time.time() * 1000),
        }
        value = final.get(self.spec.objective.metric)
        if outcome == "lost":
            state, attrs["reason"] = TrialState.FAIL, "lost"
        elif error is not None:
            state, attrs["reason"] = TrialState.FAIL, "error"
            attrs["error"] = error[-2000:]
        elif outcome == "diverged":
            state, attrs["reason"] = TrialState.PRUNED, "diverged"
        elif outcome == "stopped":
            state = TrialState.PRUNED
            attrs.setdefault("reason", trial.user_attrs.get("reason", "pruned"))
        elif value is None or not math.isfinite(value):
            state, attrs["reason"] = TrialState.FAIL, f"no finite {self.spec.objective.metric}"
        else:
            state = TrialState.COMPLETE
        for key, val in attrs.items():
            trial.set_user_attr(key, val)
        frozen = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        self.recorder.log_trial(self._record(index, frozen))
        return state.name

    # -- MLflow ----------------------------------------------------------------------------
    def _record(self, index: int, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        """A finished trial as the Tracker writes it: params as the trainer saw them."""
        attrs = trial.user_attrs
        space = self.spaces[index]
        try:
            params = scales.decode(space, trial.params)
        except KeyError:
            params = dict(trial.params)
        return {
            "stage": self.spec.stages[index].name,
            "number": trial.number,
            "state": trial.state.name,
            "params": {**self.spec.train, **params},
            "history": attrs.get("history")
            or [
                {self.spec.objective.metric: v}
                for _, v in sorted(trial.intermediate_values.items())
            ],
            "final": attrs.get("final", {}),
            "start_ms": attrs.get("start_ms", int(time.time() * 1000)),
            "end_ms": attrs.get("end_ms", int(time.time() * 1000)),
            "tags": {k: attrs[k] for k in ("node_id", "reason", "retry_of") if k in attrs},
        }

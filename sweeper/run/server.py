"""The StudyServer: the only process that writes a sweep's Optuna studies and MLflow runs.

Ownership rules (why trials never touch a storage):
- Trial tasks compute and send plain values here: `ask` hands out a trial number and its params
  (`ask_like`: more trials of the same structure, to train in one task with it),
  `report` takes one epoch's objective value and answers whether to stop (Optuna pruner, or a
  manual prune request), `tell` records the task's `TrialResult`. A worker on another node
  needs no database access, the journal/SQLite files have a single writer, and a dead worker
  leaves nothing half written.
- Optuna is the source of truth; MLflow mirrors it, written by a background thread off the
  trials' critical path (the `Recorder`): a trial's run appears RUNNING at `ask`, gets each
  epoch `report`ed (in batches, a fraction of a second later) and its end at `tell`.
  `open_stage` deletes runs a crash left RUNNING and rebuilds every missing run from Optuna.
- A trial left RUNNING by a dead driver or worker is marked FAIL (tag reason=lost) when its stage
  is opened again, and its params are enqueued so the same configuration runs once more; Ctrl-C
  does the same at once (reason=interrupted). Trial runs a killed writer left RUNNING in MLflow
  are deleted and rebuilt from Optuna.

Actor methods run one at a time (the default concurrency group), except `ask` and `ask_like`:
they run in a thread of their own (`SAMPLING`), so that a slow sampler does not hold up the
epoch reports of every running trial. A Gaussian process fits itself at each ask, 0.2–2 s with
a few trials running, and each trial task waits for its report's answer every epoch: run one
at a time, every worker stalled for every ask. Optuna's storages are safe to share between
threads (each call of JournalStorage and InMemoryStorage holds its lock; `study.optimize` runs
n_jobs threads on one study); of the server's own state an ask adds its trial to `live`, which
`report` reads and `tell` pops by other keys, and queues a Recorder job (under its lock).
`interrupt` waits for an ask in flight, so the trial it made is failed as interrupted too.

The decisions live beside it as pure functions, each tested on its own: the state a result is
recorded with (`records.decide`), the box and warm start of a zoomed stage (`zoom.next_stage`),
which RUNNING trials are lost (`orphans`); MLflow is written by the `Recorder`'s thread.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import ray
from optuna.trial import TrialState

from sweeper.errors import UserError
from sweeper.records import (
    METRICS_ATTR,
    Outcome,
    StageProgress,
    TrialRecord,
    TrialResult,
    decide,
    run_again,
)
from sweeper.results.view import is_warm_start, stage_best, stage_counts, view
from sweeper.run import locks
from sweeper.run.control import PruneRequests
from sweeper.run.folder import SweepFolder
from sweeper.run.keep import KeptModels
from sweeper.run.packing import shapes_the_pack
from sweeper.search.patience import Patience, stops_now
from sweeper.search.study import (
    SWEEP_ID,
    import_what_samplers_import,
    make_pruner,
    make_sampler,
    make_storage,
    max_epochs,
    repair_torn_journal,
    running_trial,
    stage_seed,
    study_name,
    sync,
)
from sweeper.search.zoom import next_stage
from sweeper.spec import scales
from sweeper.spec.schema import read_back
from sweeper.tracking.recorder import Recorder

if TYPE_CHECKING:
    from sweeper.data.datasets import DataInput, Preprocessing

WRITER_WAIT_S = 60  # how long a new StudyServer waits for a dead driver's one to be gone
SAMPLING = "sampling"  # the concurrency group of `ask` and `ask_like`, beside the default one


class StudyServer:
    """Records a sweep. Create as a Ray actor with num_cpus=0 so it takes no trial slot."""

    def __init__(
        self,
        spec_json: str,
        sweep_dir: str,
        credentials: dict[str, str] | None = None,
        *,
        storage: optuna.storages.BaseStorage | None = None,
        preprocessing: Preprocessing | None = None,
        inputs: list[DataInput] | None = None,
    ):
        """`credentials`: the `${VAR}`s of the storage URLs, from the driver's environment
        (an argument, not a runtime_env: Ray writes those to its log files). `storage`: the
        Optuna storage to write instead of the spec's (a test's in-memory one).
        `preprocessing`: the dataset's, saved with every kept model;
        `inputs`: the data it was read from, each stage run's MLflow input datasets."""
        os.environ.update(credentials or {})  # this actor's own process
        if ray.is_initialized() and ray.get_runtime_context().get_actor_id():  # its own process
            os.umask(0o077)  # as the CLI's: Ray's worker made its pending folders 0755
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # this process: the actor's
        self.spec = read_back(spec_json)
        self.sweep_dir = Path(sweep_dir)
        self.sweep_id = SweepFolder(self.sweep_dir).sweep_id
        self.writer_lock = locks.acquire(self.sweep_dir / "writer.lock", WRITER_WAIT_S)
        if self.writer_lock is None:
            raise RuntimeError(
                f"the StudyServer of a previous driver still writes {sweep_dir} after "
                f"{WRITER_WAIT_S} s; stop its Ray job, then resume"
            )
        repair_torn_journal(self.sweep_dir)  # only now: no other writer can append meanwhile
        self.storage = storage or make_storage(
            self.spec.storage.optuna, self.sweep_dir, single_writer=True
        )
        self.maximize = self.spec.objective.direction == "maximize"
        import_what_samplers_import({stage.sampler for stage in self.spec.stages})  # first
        self.studies: dict[int, optuna.Study] = {}
        self.spaces: dict[int, scales.Space] = {}
        self.live: dict[tuple[int, int], optuna.Trial] = {}
        self.asking = threading.Lock()  # held by an ask in flight; `interrupt` waits for it
        self.interrupted = False  # then a late ask's trial is failed as interrupted at once
        self.patience: dict[tuple[int, int], Patience] = {}  # of live trials, where stages set it
        self.prune_requests = PruneRequests(self.sweep_dir)
        self.closed: set[int] = set()
        self.kept: dict[int, KeptModels] = {}
        folder = SweepFolder(self.sweep_dir)
        self.recorder = Recorder(
            folder.tracking_uri(self.spec),
            self.spec.name,
            folder.artifacts,
            preprocessing,
            inputs,
            self.sweep_id,
        )

    # -- stages ----------------------------------------------------------------------------
    def open_stage(self, index: int) -> StageProgress:
        """Create or load stage `index`'s study; recover what a crash left; return where it
        stands (a resumed stage's counts and best so far)."""
        stage = self.spec.stages[index]
        name = study_name(self.spec.name, stage.name)
        study = optuna.create_study(
            study_name=name,
            storage=self.storage,
            load_if_exists=True,
            direction="maximize" if self.maximize else "minimize",
        )
        if self.sweep_id and SWEEP_ID not in study.user_attrs:  # see `study.foreign_studies`
            study.set_user_attr(SWEEP_ID, self.sweep_id)
        owner = study.user_attrs.get(SWEEP_ID) if self.sweep_id else None
        if owner is not None and owner != self.sweep_id:  # two new folders launched at once
            raise UserError(
                f"the study {name} belongs to a sweep of the same name launched from another "
                "folder at the same time: give this one another name"
            )
        if "space" in study.user_attrs:
            space = {
                k: scales.Param.model_validate(v) for k, v in study.user_attrs["space"].items()
            }
        else:
            space = self._new_stage_space(index, study)
        tried = sum(1 for t in study.get_trials(deepcopy=False) if not is_warm_start(t))
        seed = stage_seed(stage, index, tried)
        study.sampler = make_sampler(stage, seed, scales.distributions(space))
        study.pruner = make_pruner(stage.pruner, max_epochs(self.spec))
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
        self._reconcile_models(index, study)
        return StageProgress(
            stage.name,
            stage.trials,
            stage_counts(study),
            best=stage_best(study, self.maximize),
            run_again=run_again(study.get_trials(deepcopy=False)),
        )

    def _new_stage_space(self, index: int, study: optuna.Study) -> scales.Space:
        """The box of a stage opened for the first time, recorded in its study; a zoomed stage
        also gets the previous stage's top trials as warm-start copies (see `zoom.next_stage`)."""
        stage = self.spec.stages[index]
        space = dict(self.spec.space)
        if stage.zoom is not None:
            copied = {t.user_attrs.get("warm_start_from") for t in study.get_trials(deepcopy=False)}
            space, warm = next_stage(
                self.spaces[index - 1],
                self.studies[index - 1].get_trials(deepcopy=False),
                stage.zoom,
                self.maximize,
                self.spec.stages[index - 1].name,
                copied,
            )
            study.add_trials(warm)
        study.set_user_attr("space", {k: p.model_dump(exclude_none=True) for k, p in space.items()})
        return space

    def _reconcile_models(self, index: int, study: optuna.Study) -> None:
        """The stage's kept models as its completed trials say they should be: a model staged
        before a crash is written (or dropped, if pushed out meanwhile); one pushed out whose
        deletion a crash lost is deleted now."""
        kept = self.kept[index] = KeptModels(self.spec.models.keep, self.maximize)
        for trial in study.get_trials(deepcopy=False):
            if trial.state == TrialState.COMPLETE and not is_warm_start(trial):
                kept.offer(trial.number, trial.value)
        stage = self.spec.stages[index].name
        staged = self._staged(stage)
        left = {int(f.name): f for f in staged.iterdir()} if staged.is_dir() else {}
        self.recorder.reconcile_models(stage, frozenset(kept.kept), left)

    def _staged(self, stage: str) -> Path:
        """Where a kept model waits, as a checkpoint, until the Recorder has written it."""
        return self.sweep_dir / "models-pending" / stage

    def _recover_lost_trials(self, index: int) -> None:
        """RUNNING trials belong to a driver or worker that died: FAIL them, re-run their params."""
        study = self.studies[index]
        live = {number for i, number in self.live if i == index}
        for trial in orphans(study.get_trials(deepcopy=False), live):
            self._fail_and_retry(index, running_trial(study, trial), "lost")

    def _fail_and_retry(self, index: int, trial: optuna.Trial, reason: str) -> None:
        """FAIL an unfinished trial with `reason`, and enqueue its params to run again."""
        study = self.studies[index]
        trial.set_user_attr("reason", reason)
        frozen = study.tell(trial, state=TrialState.FAIL)
        study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number})
        self.recorder.log_trial(self._record(index, frozen))

    def interrupt(self) -> int:
        """Ctrl-C: FAIL every running trial (reason=interrupted, params re-queued for resume),
        mark open stages' runs KILLED and write everything to MLflow. Returns the trial count."""
        with self.asking:  # a trial an ask in flight makes is running too
            self.interrupted = True
            live = list(self.live.items())
            for (index, _), trial in live:
                # when it stopped: its duration in the export, as its run's end in MLflow
                trial.set_user_attr("end_ms", int(time.time() * 1000))
                self._fail_and_retry(index, trial, "interrupted")
            self.live.clear()
        self.patience.clear()
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
        best = stage_best(study, self.maximize)  # its own trials': not a warm-start copy's
        if best is not None:
            metrics["best_value"] = float(best)
        self.closed.add(index)
        sync(self.storage)
        stage = self.spec.stages[index].name
        sweep, trials = view(self.spec, self.storage), study.get_trials(deepcopy=False)

        def draw() -> dict[str, bytes]:
            from sweeper.results import plots

            return plots.pngs(plots.stage_figures(sweep, stage, trials))

        self.recorder.close_stage(stage, metrics, draw)
        return counts

    def finish_sweep(self) -> None:
        """After the last stage: the figures across stages and the report, on the sweep's run;
        the best trial's model registered under the sweep's name (a new version each time)."""
        sweep = view(self.spec, self.storage)
        ranked = sweep.ranked()
        if ranked:
            self.recorder.register_best(ranked[0])

        def draw(stage_pngs: dict[str, bytes]) -> dict[str, bytes]:
            from sweeper.results import plots, report

            files = plots.pngs(plots.sweep_figures(sweep))
            files["report.html"] = report.render(sweep, files | stage_pngs).encode()
            return files

        self.recorder.finish_sweep(draw)

    def flush(self) -> list[str]:
        """Wait until MLflow holds everything recorded so far; the MLflow errors met."""
        self.recorder.flush()
        return self.recorder.errors

    # -- trials ----------------------------------------------------------------------------
    @ray.method(concurrency_group=SAMPLING)
    def ask(self, index: int) -> tuple[int, dict[str, Any]]:
        """A new trial of stage `index`: its number and trainer params."""
        with self.asking:
            return self._ask(index)

    def _ask(self, index: int) -> tuple[int, dict[str, Any]]:
        study = self.studies[index]
        trial = study.ask()
        values = scales.sample(trial, self.spaces[index])
        start_ms = int(time.time() * 1000)
        trial.set_user_attr("start_ms", start_ms)
        self.live[(index, trial.number)] = trial
        self.recorder.start_trial(  # its run appears now, RUNNING
            TrialRecord(
                stage=self.spec.stages[index].name,
                number=trial.number,
                state="RUNNING",
                value=None,
                params={**self.spec.train, **values},
                metrics={},
                history=[],
                start_ms=start_ms,
                retry_of=trial.user_attrs.get("retry_of"),
            )
        )
        if self.interrupted:  # asked after Ctrl-C was recorded: recorded as interrupted too
            self._fail_and_retry(index, self.live.pop((index, trial.number)), "interrupted")
        return trial.number, values

    @ray.method(concurrency_group=SAMPLING)
    def ask_like(self, index: int, number: int, count: int) -> list[tuple[int, dict[str, Any]]]:
        """Up to `count` new trials of stage `index` that share running trial `number`'s
        structure (its params that `packing.shapes_the_pack`), the rest sampled as usual: the
        followers of a pack. None at all while retries wait in Optuna's queue: `ask` hands those out
        first, each with its own exact params, so they go one per task. None either in a grid
        stage that searches the structure: the grid, not the leader, gives each trial its point."""
        study = self.studies[index]
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return []
        leader = self.live[(index, number)].params
        shared = {
            key: leader[key]
            for name, p in self.spaces[index].items()
            if shapes_the_pack(name) and (key := p.optuna_name(name)) in leader
        }
        if shared and self.spec.stages[index].sampler == "grid":
            return []  # a follower would be the leader's structure, not a grid point of its own
        followers = []
        with self.asking:
            for _ in range(count):
                if shared:  # GridSampler gives an enqueued trial no grid point: it failed there
                    study.enqueue_trial(shared)
                followers.append(self._ask(index))
        return followers

    def retry(self, index: int, number: int) -> None:
        """Make the next `ask` of stage `index` run trial `number`'s exact params again."""
        study = self.studies[index]
        params = study.get_trials(deepcopy=False)[number].params
        study.enqueue_trial(params, user_attrs={"retry_of": number})

    def report(self, index: int, number: int, epoch: int, metrics: dict[str, float]) -> bool:
        """Record one epoch's metrics (the objective's value in Optuna, all of them in the
        trial's MLflow run); True when the trial should stop now."""
        trial = self.live.get((index, number))
        if trial is None:  # interrupted: already recorded as FAIL
            return True
        stage = self.spec.stages[index].name
        self.recorder.log_epoch(stage, number, epoch, metrics)
        value = metrics.get(self.spec.objective.metric, math.nan)
        manual = (stage, number) in self.prune_requests
        return stops_now(trial, epoch, value, self._patience(index, number), manual)

    def _patience(self, index: int, number: int) -> Patience | None:
        """Trial `number`'s count toward its stage's `patience` (counted afresh in a resumed
        driver, as the trainer's early stopping is in a continued call)."""
        epochs = self.spec.stages[index].patience
        if epochs is None:
            return None
        return self.patience.setdefault((index, number), Patience(epochs, self.maximize))

    def report_pack(
        self, index: int, reports: list[tuple[int, int, dict[str, float]]]
    ) -> list[bool]:
        """`report` for each (number, epoch, metrics) of a pack's epoch, in one call."""
        return [self.report(index, number, epoch, metrics) for number, epoch, metrics in reports]

    def tell(self, index: int, number: int, result: TrialResult) -> str:
        """Record a finished trial in Optuna (see `records.decide`), then queue its MLflow run.
        Returns the Optuna state's name."""
        study = self.studies[index]
        trial = self.live.pop((index, number))
        self.patience.pop((index, number), None)
        verdict = decide(result, self.spec.objective.metric, trial.user_attrs.get("reason"))
        attrs: dict[str, Any] = {
            "history": result.history,
            METRICS_ATTR: result.metrics,
            "node_id": result.node_id,
            "end_ms": int(time.time() * 1000),
        }
        if verdict.reason is not None:
            attrs["reason"] = verdict.reason
        if result.outcome is Outcome.ERROR and result.error is not None:
            attrs["error"] = result.error[-2000:]
        for key, val in attrs.items():
            trial.set_user_attr(key, val)
        keep, dropped = False, set()
        if verdict.state == TrialState.COMPLETE and result.checkpoint is not None:
            keep, dropped = self.kept[index].offer(number, verdict.value)
        stage = self.spec.stages[index].name
        if keep:  # on disk before Optuna says COMPLETE: a crash now loses no kept model
            result.checkpoint.save(self._staged(stage) / str(number))
        frozen = study.tell(trial, verdict.value, state=verdict.state)
        self.recorder.log_trial(self._record(index, frozen))
        if keep:
            self.recorder.save_model(stage, number, self._staged(stage) / str(number))
        for pushed_out in sorted(dropped):
            self.recorder.drop_model(stage, pushed_out)
        return verdict.state.name

    def _record(self, index: int, trial: optuna.trial.FrozenTrial) -> TrialRecord:
        """A finished trial as MLflow records it: params as the trainer saw them."""
        stage = self.spec.stages[index].name
        return TrialRecord.of(
            stage, trial, self.spaces[index], self.spec.train, self.spec.objective.metric
        )


def as_actor() -> Any:
    """The StudyServer as a sweep starts it, a Ray actor class: no CPU of the trials' own, its
    methods one at a time but the asks (their own group, see above), and on this node, beside
    the sweep folder, where the journal and the MLflow SQLite files live."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return ray.remote(concurrency_groups={SAMPLING: 1})(StudyServer).options(
        num_cpus=0,
        max_concurrency=1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(
            ray.get_runtime_context().get_node_id(), soft=False
        ),
    )


def orphans(
    trials: list[optuna.trial.FrozenTrial], live: set[int]
) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials that no task of this StudyServer runs (numbers in `live` are running)."""
    return [t for t in trials if t.state == TrialState.RUNNING and t.number not in live]

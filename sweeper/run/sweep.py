"""A sweep checked (`prepare`: spec, data, folder and stores) and run (`run`: the StudyServer,
its stages in order, Ctrl-C); the folder itself is `sweeper.run.folder`'s.

Everything a sweep needs lives in its folder (or in the storage URLs of its spec), so a sweep is
resumed by name: `run` on an existing folder with the same spec continues where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from sweeper import secrets
from sweeper.data.datasets import Dataset, load_dataset
from sweeper.errors import DataError, UserError
from sweeper.run import ownership
from sweeper.run.deadline import Deadline
from sweeper.run.folder import (
    SweepFolder,
    check_same_spec,
    is_running,
    sweep_folder,
    sweep_lock,
)
from sweeper.search.study import (
    JOURNAL,
    foreign_studies,
    make_pruner,
    make_sampler,
    make_storage,
    max_epochs,
    stage_seed,
    study_name,
)
from sweeper.spec import schema as specs
from sweeper.spec.scales import distributions
from sweeper.spec.yaml_lines import line_of

if TYPE_CHECKING:
    from sweeper.records import Best, StageProgress


@dataclass
class SweepResult:
    folder: Path
    stages: list[StageProgress]
    mlflow_errors: list[str]  # MLflow writes that failed (Optuna has them; resume rebuilds runs)
    best: Best | None = None  # filled in by sweeper.api.run_plan


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep after the running trials were recorded; `mlflow_errors`: the
    MLflow writes that failed meanwhile (as `SweepResult.mlflow_errors`)."""

    def __init__(self, mlflow_errors: list[str]):
        super().__init__()
        self.mlflow_errors = mlflow_errors


@dataclass(frozen=True)
class Plan:
    """A checked sweep, ready to run: nothing has been written for it yet."""

    spec: specs.SweepSpec
    folder: SweepFolder
    dataset: Dataset


def prepare(spec_path: Path, folder: SweepFolder | None = None) -> Plan:
    """Load a space.yaml and its data, and check both against the sweep's folder (`folder`:
    the one `resume` was given; else where the spec puts it).

    Every input problem is raised here, before Ray starts or anything is written; a data problem
    points at the space.yaml key that names the data. The cheap checks come first.
    """
    own_copy = folder is not None and spec_path.resolve() == folder.spec_copy.resolve()
    spec = specs.load(spec_path, planned=own_copy)
    for key, url in spec.storage.model_dump().items():
        problem = secrets.url_problem(url)
        if problem:
            raise _storage_error(spec_path, key, problem)
    base = spec_path.resolve().parent
    data = spec.data.model_copy(
        update={
            "source": _absolute(spec.data.source, base),
            "test": spec.data.test and _absolute(spec.data.test, base),
        }
    )
    spec = spec.model_copy(update={"data": data})
    _check_stage_options(spec, spec_path)
    if spec.dir and folder is None:
        problem = ownership.dir_problem(Path(spec.dir))
        if problem:
            raise UserError(f"{spec_path}:{line_of(spec_path, 'dir')}: dir: {problem}")
        spec = spec.model_copy(update={"dir": str(Path(spec.dir).expanduser().absolute())})
    folder = folder or sweep_folder(spec)
    path = folder.path.absolute()
    in_the_way = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if in_the_way is not None:  # found only once Ray had started, as a FileExistsError
        raise UserError(f"{in_the_way} is a file, where the sweep's folder {path} would be")
    if folder.path.exists():
        ownership.require_marked(folder.path)
        if is_running(folder):
            raise UserError(
                f"sweep {folder.path} is already running (another driver holds its lock)"
            )
    check_same_spec(folder, spec)
    try:
        dataset = load_dataset(spec.data)
    except DataError as error:
        line = line_of(spec_path, error.field)
        raise UserError(f"{spec_path}:{line}: {error.field}: {error}") from None
    _check_loss_fits(spec, dataset.n_classes, spec_path)
    changed = folder.changed_input(dataset.inputs)
    if changed:
        now, began = changed
        field = "data.test" if now.context == "test" else "data.source"
        raise UserError(
            f"{spec_path}:{line_of(spec_path, field)}: {field}: {now.name} holds other "
            f"data than this sweep began on (digest {began}, now {now.digest}): launch it "
            "under a new name"
        )
    check_stores(spec, folder, spec_path)
    return Plan(spec, folder, dataset)


def _check_loss_fits(spec: specs.SweepSpec, n_classes: int, spec_path: Path) -> None:
    """Binary cross-entropy has one output, P(class 1): with more classes it would train on
    class indices as if they were probabilities."""
    searched = spec.space.get("loss")
    field = "space.loss" if searched is not None else "train.loss"
    losses = searched.choices or [] if searched is not None else [spec.train.get("loss")]
    if "binary_cross_entropy" in losses and n_classes > 2:
        raise UserError(
            f"{spec_path}:{line_of(spec_path, field)}: {field}: binary_cross_entropy "
            f"fits two classes and {spec.data.source} has {n_classes}: use auto or "
            "softmax_cross_entropy"
        )


def _check_stage_options(spec: specs.SweepSpec, spec_path: Path) -> None:
    """Build each stage's Optuna sampler and pruner now, so a value Optuna rejects is a message
    naming the stage's line (for a plan `budget` made, `budget`'s or `budget.search`'s) rather
    than a failure inside a Ray actor."""
    epochs = max_epochs(spec)
    planned = None  # a plan `budget` made has no stage lines: name the budget's
    if spec.budget is not None:
        planned = "budget" if spec.budget.search == "frugal" else "budget.search"
    for index, stage in enumerate(spec.stages):
        field = planned or f"stages.{index}.pruner"
        try:
            if stage.pruner.type == "hyperband" and stage.pruner.min_epochs >= epochs:
                raise ValueError(
                    f"hyperband needs min_epochs < epochs, got "
                    f"{stage.pruner.min_epochs} >= {epochs}"
                )
            make_pruner(stage.pruner, epochs)
            field = planned or f"stages.{index}.sampler"
            make_sampler(stage, stage_seed(stage, index), distributions(spec.space))
        except ValueError as error:
            line = line_of(spec_path, field)
            raise UserError(f"{spec_path}:{line}: {field}: {error}") from None


def check_stores(spec: specs.SweepSpec, folder: SweepFolder, spec_path: Path) -> None:
    """A sweep's existing Optuna and MLflow stores can be read, and a new SQLite file can be
    made where its URL puts it (else one clear UserError)."""
    optuna_url, mlflow_url = spec.storage.optuna, spec.storage.mlflow
    for key, url in (("optuna", optuna_url), ("mlflow", mlflow_url)):
        if url and _new_sqlite(url):
            problem = _cannot_create(_sqlite_file(url).parent)
            if problem:
                raise _storage_error(spec_path, key, problem)
    storage = None
    try:
        if (optuna_url and not _new_sqlite(optuna_url)) or (folder.path / JOURNAL).exists():
            storage = make_storage(optuna_url, folder.path)
    except UserError as error:
        raise (_storage_error(spec_path, "optuna", str(error)) if optuna_url else error) from None
    if folder.has_mlflow_store(spec) and not (mlflow_url and _new_sqlite(mlflow_url)):
        from sweeper.tracking.store import check_store  # mlflow: only once a store exists

        try:
            check_store(folder.tracking_uri(spec))
        except UserError as error:
            raise (
                _storage_error(spec_path, "mlflow", str(error)) if mlflow_url else error
            ) from None
    # after check_store, which says at once that a server is down (MLflow's client retries ~4 min)
    for key in shared_with_another_folder(spec, folder, storage):
        raise _storage_error(
            spec_path,
            key,
            f"it holds a sweep named {spec.name!r} that another folder made: give this one "
            "another name, or resume that one from its own folder",
        )
    if folder.has_mlflow_store(spec):
        from sweeper.tracking.store import moved_from

        elsewhere = moved_from(folder.tracking_uri(spec), spec.name, folder.artifacts)
        if elsewhere is not None:
            raise UserError(
                f"{folder.path} was moved: its MLflow experiment keeps the runs' files at "
                f"{elsewhere}, where the folder "
                "was made, so new runs would be written there. Move the folder back to go "
                "on; status, best, predict, export, report and train --from read it where it is"
            )


def shared_with_another_folder(
    spec: specs.SweepSpec, folder: SweepFolder, storage: optuna.storages.BaseStorage | None
) -> list[str]:
    """The stores (`optuna`, `mlflow`) given as URLs that hold a sweep of this name made from
    another folder: launched there too, the two sweeps shared studies and an experiment, and
    deleting one deleted the other's runs and models."""
    made, sweep_id = folder.path.exists(), folder.sweep_id
    shared = []
    if (
        spec.storage.optuna
        and storage is not None
        and foreign_studies(storage, spec.name, made, sweep_id)
    ):
        shared.append("optuna")
    mlflow_url = spec.storage.mlflow
    if mlflow_url and not _new_sqlite(mlflow_url):
        from sweeper.tracking.store import foreign_experiment

        if foreign_experiment(mlflow_url, spec.name, made, sweep_id):
            shared.append("mlflow")
    return shared


def run(plan: Plan, on_progress: Callable[[StageProgress], None] | None = None) -> SweepResult:
    """Run (or resume) every stage of a sweep. Ray must already be initialized.

    On Ctrl-C the running trials are recorded as FAIL (reason=interrupted, re-run on resume)
    and MLflow is brought up to date before KeyboardInterrupt propagates; a second Ctrl-C
    meanwhile exits at once, leaving what `resume` recovers anyway.
    """
    # Ray here, not at the top: reading a sweep (status, best, export) needs this module only
    # for its folder, and should not pay for importing Ray
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    from sweeper.run.dispatch import StageRun, concurrency
    from sweeper.run.server import as_actor

    spec, folder = plan.spec, plan.folder
    concurrency(spec.resources)  # resources the cluster cannot give are an error now, not a hang
    ownership.claim(folder.path, ownership.Identity(spec.name, spec.fingerprint()))
    with sweep_lock(folder), _second_ctrl_c_exits():
        folder.keep_spec(spec, plan.dataset.inputs)
        dataset_ref = ray.put(plan.dataset)
        server = as_actor().remote(
            spec.model_dump_json(),
            str(folder.path.resolve()),
            secrets.environment(*spec.storage.model_dump().values()),
            preprocessing=plan.dataset.preprocessing,
            inputs=plan.dataset.inputs,
        )
        results, interrupted = [], False
        hours = spec.budget.hours if spec.budget is not None else None
        deadline = Deadline.after(hours) if hours is not None else None
        try:
            for index, stage in enumerate(spec.stages):
                if deadline is not None and deadline.passed():
                    break  # the later stages wait for `sweeper resume`
                opened: StageProgress = ray.get(server.open_stage.remote(index))
                left = stage.trials - opened.finished
                later = sum(s.trials for s in spec.stages[index + 1 :])
                progress = StageRun(
                    server,
                    index,
                    spec.train,
                    dataset_ref,
                    spec.objective,
                    spec.objective.direction == "maximize",
                    spec.resources,
                    opened,
                    on_progress,
                    (plan.dataset.X_train.shape[0], plan.dataset.n_classes),
                    deadline.stage_end(left, left + later) if deadline is not None else None,
                ).run()
                ray.get(server.close_stage.remote(index))
                results.append(progress)
                if progress.finished < stage.trials:  # its share of `hours` ended first: the
                    break  # next stage zooms on a whole one, after `sweeper resume`
            ray.get(server.finish_sweep.remote())
        except BaseException as stopped:  # Ctrl-C, or a stage that failed: record what ran
            # a failure here (its database gone, say) must not replace the one being raised
            with contextlib.suppress(RayActorError, RayTaskError):
                ray.get(server.interrupt.remote())
            interrupted = isinstance(stopped, KeyboardInterrupt)
            if not interrupted:
                raise
        finally:
            try:
                mlflow_errors = ray.get(server.flush.remote())
            except RayActorError:  # the StudyServer itself was lost: its error is raised
                mlflow_errors = []
            ray.kill(server)
        if interrupted:  # raised once MLflow is up to date, with the writes that failed
            raise Interrupted(mlflow_errors)
    return SweepResult(folder.path, results, mlflow_errors)


@contextmanager
def _second_ctrl_c_exits() -> Iterator[None]:
    """The first Ctrl-C raises KeyboardInterrupt (the sweep then records what was running); from
    that very moment a second one exits at once, leaving what `resume` recovers anyway. (Swapping
    the handler only once the KeyboardInterrupt was caught left a window where a quick second
    Ctrl-C interrupted the recording itself.)"""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main one
        yield
        return

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, _exit_now)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_now(signum: int, frame: Any) -> None:
    """The second Ctrl-C: leave at once; `resume` recovers what was not recorded."""
    os._exit(130)


def check_deletable(folder: SweepFolder, force: bool = False) -> None:
    """Every reason to refuse a delete, checked before the user is asked to confirm one."""
    ownership.require_marked(folder.path)
    if is_running(folder):
        raise UserError(f"sweep {folder.path} is running; stop it (Ctrl-C) before deleting it")
    from sweeper.run.epoch_checkpoints import training

    if training(folder.path):
        raise UserError(
            f"sweep {folder.path} has a `sweeper train` run training; stop it (Ctrl-C) before "
            "deleting it"
        )
    if not force:
        ownership.refuse_foreign(folder.path)
    spec = folder.load_spec()
    storage = make_storage(spec.storage.optuna, folder.path) if spec.storage.optuna else None
    mlflow_url = spec.storage.mlflow
    if mlflow_url and not _new_sqlite(mlflow_url):  # a server that is down: said now, before
        from sweeper.tracking.store import check_store  # any study is deleted

        check_store(mlflow_url)
    shared = shared_with_another_folder(spec, folder, storage)
    if shared:
        raise UserError(
            f"storage.{shared[0]} holds the studies or runs of another folder's sweep named "
            f"{spec.name!r}, not this one's: nothing deleted"
        )


def delete(folder: SweepFolder, force: bool = False) -> None:
    """Remove a sweep's Optuna studies, MLflow experiment and the files it made in its folder.

    Refused while it runs, and (before anything is removed) for a folder holding files the
    sweeper did not create, unless `force`."""
    check_deletable(folder, force)
    spec = folder.load_spec()
    storage = make_storage(spec.storage.optuna, folder.path)
    existing = set(optuna.get_all_study_names(storage))
    for stage in spec.stages:
        if study_name(spec.name, stage.name) in existing:
            optuna.delete_study(study_name=study_name(spec.name, stage.name), storage=storage)
    # a SQLite store that does not exist holds nothing (opened, MLflow would create it)
    if folder.has_mlflow_store(spec) and not _new_sqlite(folder.tracking_uri(spec)):
        from sweeper.tracking.store import delete_experiment

        delete_experiment(folder.tracking_uri(spec), spec.name)
    ownership.remove_owned(folder.path, force)


def _storage_error(spec_path: Path, key: str, problem: str) -> UserError:
    """A problem of `storage.<key>`, at its line in space.yaml."""
    return UserError(
        f"{spec_path}:{line_of(spec_path, f'storage.{key}')}: storage.{key}: {problem}"
    )


def _cannot_create(parent: Path) -> str | None:
    """Why no file can be made in `parent`, or None: an unnamed one is made and gone at once
    (access(2) answers yes to root even for /proc). A new SQLite store there failed in the
    StudyServer, after the sweep folder was made."""
    try:
        with tempfile.TemporaryFile(dir=parent):
            return None
    except OSError as error:
        return f"no database can be made in {parent}: {error.strerror}"


def _new_sqlite(url: str) -> bool:
    """A SQLite URL whose file does not exist yet: nothing to check (a check would create it)."""
    return url.startswith("sqlite:///") and not _sqlite_file(url).exists()


def _sqlite_file(url: str) -> Path:
    """The file of a `sqlite:///` URL, its `${VAR}`s put in (unexpanded, it never exists)."""
    return Path(secrets.expand(url).removeprefix("sqlite:///"))


def _absolute(source: str, base: Path) -> str:
    return source if source.startswith("builtin:") else str((base / source).resolve())

"""Optuna storages, samplers and pruners for a sweep's stages."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import optuna.distributions as od
from optuna.storages.journal import BaseJournalBackend

from sweeper import secrets
from sweeper.errors import UserError
from sweeper.search.gp import PruningAwareGPSampler
from sweeper.search.median import EarlierTrialsMedianPruner
from sweeper.spec import schema
from sweeper.spec.schema import Pruner, Stage, SweepSpec

JOURNAL = "optuna.journal"
GP_NEEDS = ("torch", "scipy")  # what Optuna's GPSampler imports


class SingleWriterJournal(BaseJournalBackend):
    """The sweep's journal file as its one writer (the StudyServer, under writer.lock) uses it.

    The file is read once; then each record is appended with one write and a flush, and handed
    to Optuna from memory: no lock file, no re-reading of the file and no fsync per record
    (Optuna's JournalFileBackend does all three for every record, ~2.5 ms each). A flushed write
    survives the process being killed; `sync` (at the end of each stage) also survives a power
    cut. The format is unchanged, so other processes read the file with JournalFileBackend.
    """

    def __init__(self, path: Path):
        self.unread = list(optuna.storages.journal.JournalFileBackend(str(path)).read_logs(0))
        self.first = 0  # log number of unread[0]
        self.file = open(path, "ab")

    def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
        if log_number_from > self.first:  # Optuna has replayed these: drop them
            del self.unread[: log_number_from - self.first]
            self.first = log_number_from
        return list(self.unread)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs)
        self.file.write(lines.encode())
        self.file.flush()
        self.unread.extend(logs)

    def sync(self) -> None:
        os.fsync(self.file.fileno())


def make_storage(
    url: str | None, sweep_dir: Path, single_writer: bool = False
) -> optuna.storages.BaseStorage:
    """Journal file in the sweep folder by default, else an RDB URL. `single_writer`: this
    process holds the sweep's writer.lock (see SingleWriterJournal).

    A storage that cannot be read (a corrupted journal, a database that refuses the connection)
    is a UserError naming it, checked here once rather than deep inside a Ray actor.
    """
    where = url or str(sweep_dir / JOURNAL)
    try:
        if url is None:
            backend = (
                SingleWriterJournal(Path(where))
                if single_writer
                else optuna.storages.journal.JournalFileBackend(where)
            )
            storage: optuna.storages.BaseStorage = optuna.storages.JournalStorage(backend)
        else:
            storage = optuna.storages.RDBStorage(secrets.expand(url))
        optuna.get_all_study_names(storage)
    except Exception as error:
        raise UserError(
            f"{where}: the Optuna storage cannot be read "
            f"({type(error).__name__}: {secrets.mask(' '.join(str(error).split()))}); "
            f"{_remedy(url, error)}"  # on one line: a driver's message spans several
        ) from None
    return storage


def _remedy(url: str | None, error: Exception) -> str:
    """What to do about a storage that cannot be read: only a file may be broken for good (a
    database server that is down, or a driver not installed, is no reason to delete a sweep)."""
    if isinstance(error, ImportError):
        return f"install the database driver it needs ({error.name})"
    if url is None or url.startswith("sqlite:"):
        return "restore it from a backup, or delete the sweep"
    return "check that the database server is up and that the URL is right"


# -- Optuna internals: two of the three places the sweeper reaches past Optuna's public API (the --
# -- third is search/gp.py's view of a study for GPSampler) ------------------------------------
def sync(storage: optuna.storages.BaseStorage) -> None:
    """Make what a single-writer journal holds durable (RDB storages commit as they go).
    JournalStorage keeps its backend in `_backend` and has no public accessor."""
    backend = getattr(storage, "_backend", None)
    if isinstance(backend, SingleWriterJournal):
        backend.sync()


def read_storage(url: str | None, sweep_dir: Path) -> optuna.storages.BaseStorage:
    """The sweep's storage for reading only: an empty one where none exists yet, so that a
    read-only command never creates a journal or a database file."""
    if url is None and not (sweep_dir / JOURNAL).exists():
        return optuna.storages.InMemoryStorage()
    if url is not None and url.startswith("sqlite:///") and not Path(url[10:]).exists():
        return optuna.storages.InMemoryStorage()
    return make_storage(url, sweep_dir)


def running_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.Trial:
    """A handle on a RUNNING trial this process did not ask for (a dead driver's or worker's),
    so that it can be given a reason and told FAIL. Optuna offers no public way: this is what
    `Study.ask` itself builds, from the trial's private `_trial_id`."""
    return optuna.Trial(study, trial._trial_id)


# -----------------------------------------------------------------------------------------------


def repair_torn_journal(sweep_dir: Path) -> bool:
    """Drop a last journal line cut short by a killed writer; True if one was dropped.

    Optuna skips such a line when reading but would append the next record onto it, which
    corrupts the file for good. Call only while holding the sweep's lock.
    """
    path = sweep_dir / JOURNAL
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as journal:
        journal.seek(-1, 2)
        if journal.read(1) == b"\n":
            return False
        journal.seek(0)
        data = journal.read()
        journal.truncate(data.rfind(b"\n") + 1)
    return True


def grid(distributions: dict[str, od.BaseDistribution], points: int = 4) -> dict[str, list]:
    """A grid over stored coordinates: every choice/integer (up to `points`), else `points`
    evenly spaced values (log-spaced for log distributions)."""
    out: dict[str, list] = {}
    for name, dist in distributions.items():
        if isinstance(dist, od.CategoricalDistribution):
            out[name] = list(dist.choices)
        elif isinstance(dist, od.IntDistribution) and dist.high - dist.low < points:
            out[name] = list(range(dist.low, dist.high + 1))
        else:
            spaced = np.geomspace if dist.log else np.linspace
            values = spaced(dist.low, dist.high, points)
            is_int = isinstance(dist, od.IntDistribution)
            out[name] = (
                sorted({int(round(v)) for v in values}) if is_int else [float(v) for v in values]
            )
    return out


def stage_seed(stage: Stage, index: int, tried: int = 0) -> int:
    """A stage's sampler seed: its own, else its place in the plan, so that reruns sample
    alike; mixed with `tried`, the trials the stage already holds (warm-start copies aside),
    so that a resumed stage does not replay the draws it began with: a random or TPE stage
    resumed after 5 trials ran trials 0, 1 and 2's exact configurations again as 5, 6 and 7."""
    seed = stage.seed if stage.seed is not None else index
    return seed if tried == 0 else int(np.random.SeedSequence([seed, tried]).generate_state(1)[0])


def make_sampler(
    stage: Stage, seed: int | None, distributions: dict[str, od.BaseDistribution]
) -> optuna.samplers.BaseSampler:
    """random | qmc (scrambled Sobol) | tpe | gp (a Gaussian process, needs PyTorch; it
    learns from pruned and diverged trials, see `search.gp`) | grid (see `grid`)."""
    if stage.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if stage.sampler == "qmc":
        with warnings.catch_warnings():  # chosen, not stumbled on: no "experimental" in the log
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False
            )
    if stage.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True)
    if stage.sampler == "gp":
        missing = [name for name in GP_NEEDS if importlib.util.find_spec(name) is None]
        if missing:  # Optuna imports them at the first GP ask, after the start-up trials ran
            raise ValueError(
                f"gp needs {' and '.join(missing)}, not installed here: pip install "
                f"{' '.join(missing)} (or the sweeper's `bench` extra)"
            )
        return PruningAwareGPSampler(seed=seed, n_startup_trials=5)
    return GridStage(grid(distributions), seed=seed)


class GridStage(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its `study.stop()` once every point was told: Optuna
    allows that only inside `study.optimize`, and raised at a grid stage's last trial (the
    stage ends at its target of trials, as any other stage does)."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        pass


def import_what_samplers_import(samplers: set[str]) -> None:
    """Import now, in this thread, the SciPy modules that the qmc and gp samplers import at
    their first ask. The StudyServer's writer thread imports scikit-learn, which imports SciPy,
    at the same time (see Recorder): two threads importing SciPy's interdependent modules can
    each hold a module another needs, and Python then hands one of them a half-initialized
    module: the ask failed with "cannot import name 'check_random_state' from partially
    initialized module 'scipy.stats._qmc'" (tests/e2e/test_study_server.py, 2 runs of 3 when
    asks ran beside the writer's imports)."""
    if samplers & {"qmc", "gp"}:
        import scipy.optimize
        import scipy.stats.qmc  # noqa: F401


def make_pruner(pruner: Pruner, max_epochs: int) -> optuna.pruners.BasePruner:
    """none | median | asha (= successive_halving) | hyperband, with resources in epochs.

    In a zoomed stage each compares fresh trials only: the warm-start copies carry no learning
    curve (see `zoom.next_stage`). They do count toward the median pruner's 3 start-up trials,
    so it judges a fresh trial from the stage's second one on. The median is taken over the
    trials that started earlier, running ones included, so that a pack's members, which train
    in lock-step, are judged as trials run one after another are (`search.median`)."""
    if pruner.type == "none":
        return optuna.pruners.NopPruner()
    if pruner.type == "median":
        return EarlierTrialsMedianPruner(startup=3, warmup=pruner.warmup_epochs)
    if pruner.type in ("asha", "successive_halving"):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_epochs, reduction_factor=pruner.reduction_factor
        )
    return optuna.pruners.HyperbandPruner(
        min_resource=pruner.min_epochs,
        max_resource=max_epochs,
        reduction_factor=pruner.reduction_factor,
    )


def max_epochs(spec: SweepSpec) -> int:
    """The most epochs a trial can run, the resource budget of a Hyperband pruner."""
    return schema.max_epochs(spec.train, spec.space)


def study_name(sweep: str, stage: str) -> str:
    return f"{sweep}:{stage}"


SWEEP_ID = "sweep_id"  # the user attribute of a stage's study: its sweep folder's id


def foreign_studies(
    storage: optuna.storages.BaseStorage, sweep: str, folder_made: bool, sweep_id: str | None
) -> list[str]:
    """The studies named for sweep `sweep` that another sweep folder made (two folders of one
    name sharing a store mixed their trials): all of them for a folder not made yet; none for
    one of an earlier version, which has no id; else those not tagged with its id."""
    if folder_made and sweep_id is None:
        return []
    prefix = study_name(sweep, "")
    return [
        summary.study_name
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if summary.study_name.startswith(prefix)
        and (not folder_made or summary.user_attrs.get(SWEEP_ID) != sweep_id)
    ]

"""The sweeper as a Python library: one function per `sweeper` command, each returning a record.

    import sweeper
    result = sweeper.launch("search_spaces/quickstart.yaml")   # starts (or joins) Ray
    sweeper.status("digits-quick").to_json()
    sweeper.best("digits-quick")                                # a Best, or None

A sweep is named by its name (under ./sweeps/) or its folder. `launch` and `resume` connect to
Ray (`address`, else RAY_ADDRESS, else a local instance) and say so in their signature; nothing
else starts Ray. The read-only functions (`status`, `best`, `list_sweeps`, `export`) import
neither Ray nor matplotlib, so they answer in the time it takes to read the studies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import UserError
from sweeper.records import Best, SweepStatus, SweepSummary
from sweeper.results import summary as results
from sweeper.run.folder import SweepFolder, find_sweep
from sweeper.run.sweep import Plan

if TYPE_CHECKING:
    from sweeper.records import StageProgress
    from sweeper.run.lineage import FamilyRun
    from sweeper.run.panda import PandaResult, PandaRun
    from sweeper.run.sweep import SweepResult

Sweep = str | Path | SweepFolder  # a sweep's name under ./sweeps/, or its folder
OnProgress = Callable[["StageProgress"], None]
OnEpoch = Callable[[int, dict[str, float]], None]


def _folder(sweep: Sweep) -> SweepFolder:
    return sweep if isinstance(sweep, SweepFolder) else find_sweep(str(sweep))


def prepare(spec_path: str | Path, folder: SweepFolder | None = None) -> Plan:
    """Check a space.yaml, its data and its sweep folder (`folder`: the one being resumed, else
    where the spec puts it); nothing is written (see sweep.prepare)."""
    from sweeper.run import sweep

    return sweep.prepare(Path(spec_path), folder)


def run_plan(
    plan: Plan, address: str | None = None, on_progress: OnProgress | None = None
) -> SweepResult:
    """Run (or resume) a prepared sweep on Ray; `on_progress` hears of each stage as it opens,
    of every finished trial and of trials starting.
    The result's best trial is read from Optuna alone (`best()` adds its model's URI): a driver
    submitted as a Ray job may have lost its working folder by now, and MLflow's client needs
    one to open a SQLite store."""
    from sweeper.run import sweep
    from sweeper.run.dispatch import check_fits_this_machine, start_ray
    from sweeper.run.folder import launch_lock

    with launch_lock(plan.folder):
        if start_ray(address):
            check_fits_this_machine(plan.spec.resources)
        result = sweep.run(plan, on_progress)
    return dataclasses.replace(result, best=results.best(plan.folder, with_model=False))


def launch(
    spec_path: str | Path, address: str | None = None, on_progress: OnProgress | None = None
) -> SweepResult:
    """`sweeper launch`: run a sweep; an existing sweep with the same spec is resumed."""
    return run_plan(prepare(spec_path), address, on_progress)


def resume(
    sweep: Sweep, address: str | None = None, on_progress: OnProgress | None = None
) -> SweepResult:
    """`sweeper resume`: finish a stopped or crashed sweep from its folder (a path means that
    folder, from any working directory)."""
    folder = _folder(sweep)
    return run_plan(prepare(folder.spec_copy, folder), address, on_progress)


def status(sweep: Sweep) -> SweepStatus:
    """`sweeper status`: trial counts per stage and each stage's search box."""
    return results.status(_folder(sweep))


def best(sweep: Sweep) -> Best | None:
    """`sweeper best`: the best completed trial (None before one completes)."""
    return results.best(_folder(sweep))


def list_sweeps(root: str | Path | None = None) -> list[SweepSummary]:
    """`sweeper list`: the sweeps under <root>/sweeps (default: the working directory)."""
    return results.list_sweeps(Path(root) if root is not None else Path.cwd())


def export(sweep: Sweep, path: str | Path, overwrite: bool = False) -> int:
    """`sweeper export`: one row per trial to .parquet or .csv (an existing file only when
    `overwrite`); returns the row count."""
    from sweeper.results.export import check_output, write

    folder = _folder(sweep)
    check_output(Path(path), overwrite)
    return write(results.load_view(folder), Path(path))


def predict(
    sweep: Sweep,
    data: str | Path,
    out: str | Path,
    trial: int | None = None,
    stage: str | None = None,
    overwrite: bool = False,
) -> int:
    """`sweeper predict`: the labels (and class probabilities) a kept model gives the rows of
    `data`, written to `out` (.parquet or .csv; an existing file only when `overwrite`); the
    best trial's model unless `trial` is given. Returns the row count."""
    from sweeper.results.export import check_output
    from sweeper.results.predict import predict as predict_rows

    folder = _folder(sweep)
    check_output(Path(out), overwrite)
    return predict_rows(folder, Path(data), Path(out), stage, trial)


def report(sweep: Sweep, output: str | Path | None = None, overwrite: bool = False) -> Path:
    """`sweeper report`: the HTML report, by default report.html in the sweep folder (its own,
    written anew each time); `output`: an .html file, an existing one only when `overwrite`."""
    from sweeper.results.export import check_output

    folder = _folder(sweep)
    if output is None:
        return results.write_report(folder, folder.path / "report.html")
    check_output(Path(output), overwrite, (".html",))
    return results.write_report(folder, Path(output))


def delete(
    sweep: Sweep, force: bool = False, confirm: Callable[[Path], bool] | None = None
) -> Path | None:
    """`sweeper delete`: remove the sweep's studies, MLflow experiment and the files it made;
    a folder holding anything else is refused unless `force`. `confirm(folder)` is asked once
    every refusal has been ruled out; its False deletes nothing (and returns None)."""
    from sweeper.run.sweep import check_deletable
    from sweeper.run.sweep import delete as delete_sweep

    folder = _folder(sweep)
    check_deletable(folder, force)
    if confirm is not None and not confirm(folder.path):
        return None
    delete_sweep(folder, force)
    return folder.path


def prune(sweep: Sweep, trial: int, stage: str | None = None) -> str:
    """`sweeper prune`: ask the running sweep to stop `trial` at its next epoch; its stage."""
    from sweeper.run.control import request_prune
    from sweeper.run.folder import is_running

    folder = _folder(sweep)
    if not is_running(folder):
        raise UserError(f"sweep {str(sweep)!r} is not running: there is no trial to stop")
    stage_name = results.running_stage(folder, trial, stage)
    request_prune(folder.path, stage_name, trial)
    return stage_name


def panda_run(
    spec_path: str | Path,
    overrides: dict[str, Any] | None = None,
    source: str | None = None,
    epochs: int | None = None,
) -> PandaRun:
    """The configuration `sweeper train` trains. Fresh: the sweep's best trial (else the centre
    of each range) with `overrides` on top, for `epochs` epochs when given. From `source`
    (RUN_ID[@EPOCH], NAME or NAME:STAGE:TRIAL; see sweeper.run.lineage): its checkpoint and
    options with `overrides` that do not change the architecture, for `epochs` more epochs
    (default: `epochs` among the overrides, else the spec's). Nothing is written here."""
    from model import TrainConfig
    from sweeper.run import lineage, panda

    plan = prepare(spec_path)
    overrides = dict(overrides or {})
    if epochs is not None and overrides.get("epochs", epochs) != epochs:  # one was dropped
        raise UserError(
            f"--epochs {epochs} and --set epochs={overrides['epochs']} disagree: give one"
        )
    if source is None:
        if epochs is not None:
            overrides["epochs"] = epochs
        found = results.best(plan.folder) if plan.folder.spec_copy.is_file() else None
        options = panda.configuration(plan.spec, found, overrides, plan.dataset.n_classes)
        panda.check_layers(overrides, options)
        return panda.PandaRun(plan, options)
    origin = lineage.resolve(source, plan.folder, plan.spec)
    if epochs is not None:
        more = epochs
    elif "epochs" in overrides:  # `--set epochs=N`: N more (null is refused, not the default)
        more = overrides.pop("epochs")
    else:
        more = plan.spec.train.get("epochs", TrainConfig.epochs)
    options, changed = lineage.continued_options(origin.checkpoint.progress, overrides, more)
    panda.check_layers(overrides, options)
    panda.check_fits(origin, options, plan)
    return panda.PandaRun(plan, options, origin, changed)


def train_one(
    spec_path: str | Path,
    overrides: dict[str, Any] | None = None,
    backend: str = "auto",
    on_epoch: OnEpoch | None = None,
    source: str | None = None,
    epochs: int | None = None,
) -> PandaResult:
    """`sweeper train`: panda mode, one model trained here (from `source` when given, see
    `panda_run`) and logged to MLflow."""
    return panda_run(spec_path, overrides, source, epochs).train(backend, on_epoch)


def panda_history(spec_path: str | Path, source: str) -> list[FamilyRun]:
    """`sweeper train --history`: the panda runs linked to `source` (a run, or a trial they
    started from), oldest first, with their parents, epochs, changed options and best value."""
    from sweeper.run import lineage
    from sweeper.run.folder import sweep_folder
    from sweeper.spec.schema import load

    spec = load(Path(spec_path))
    return lineage.family(sweep_folder(spec), spec, source)

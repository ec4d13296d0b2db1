"""Reading a sweep's results from its Optuna storage: status, best trial, sweep list."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.errors import UserError
from sweeper.records import (
    MODEL_ARTIFACT,
    Best,
    ModelUsage,
    StageStatus,
    SweepStatus,
    SweepSummary,
    empty_counts,
    is_diverged,
    run_again,
)
from sweeper.results.view import SweepView, stage_counts, stage_studies, view
from sweeper.run.folder import SweepFolder, is_running
from sweeper.run.ownership import require_marked
from sweeper.search.study import read_storage


def _studies(folder: SweepFolder) -> list[tuple[Any, optuna.Study | None]]:
    spec = folder.load_spec()
    return stage_studies(spec, read_storage(spec.storage.optuna, folder.path))


def status(folder: SweepFolder) -> SweepStatus:
    """Each stage's trial counts and, once opened, its search box."""
    spec = folder.load_spec()
    studies = _studies(folder)
    stages = [
        StageStatus(
            stage.name,
            stage.trials,
            stage_counts(study) if study else empty_counts(),
            study.user_attrs.get("space") if study else None,
            stage.describe(),
            sum(map(is_diverged, study.get_trials(deepcopy=False))) if study else 0,
            run_again(study.get_trials(deepcopy=False)) if study else 0,
        )
        for stage, study in studies
    ]
    budget = spec.budget.model_dump(exclude_defaults=True) if spec.budget is not None else None
    opened = any(study is not None for _, study in studies)
    if is_running(folder):
        state = "running"
    elif not opened:  # a folder of panda runs only (`sweeper train`), or killed as Ray started
        state = "not started"
    else:  # a killed driver leaves RUNNING trials behind: stopped, not running
        state = "finished" if all(s.finished >= s.target for s in stages) else "stopped"
    return SweepStatus(spec.name, stages, model_usage(folder), budget, state)


def load_view(folder: SweepFolder) -> SweepView:
    spec = folder.load_spec()
    return view(spec, read_storage(spec.storage.optuna, folder.path))


def write_report(folder: SweepFolder, path: Path) -> Path:
    """Render a sweep's report (see `sweeper.results.report`) from its studies to `path`."""
    from sweeper.results import (
        plots,  # matplotlib: only for this command
        report,
    )

    spec = folder.load_spec()
    storage = read_storage(spec.storage.optuna, folder.path)
    sweep = view(spec, storage)
    figures = plots.sweep_figures(sweep)
    for stage, study in stage_studies(spec, storage):
        if study is not None:
            figures |= plots.stage_figures(sweep, stage.name, study.get_trials(deepcopy=False))
    path.write_text(report.render(sweep, plots.pngs(figures)))
    return path


def best(folder: SweepFolder, with_model: bool = True) -> Best | None:
    """The best completed trial of all stages (None before one completes), with the URI of its
    model once the StudyServer has written it (`with_model`: look it up in MLflow)."""
    ranked = load_view(folder).ranked()
    if not ranked:
        return None
    found = Best.of(ranked[0])
    if not with_model:
        return found
    uri = models(folder).get((found.stage, found.trial))
    tracking_uri = folder.tracking_uri(folder.load_spec())
    return dataclasses.replace(found, model_uri=uri, tracking_uri=tracking_uri)


def models(folder: SweepFolder) -> dict[tuple[str, int], str]:
    """(stage, trial) → the model URI of each kept model."""
    from sweeper.tracking.store import kept_models

    spec = folder.load_spec()
    return kept_models(folder.tracking_uri(spec), spec.name)


def model_usage(folder: SweepFolder) -> ModelUsage | None:
    """The kept models in the sweep folder's artifacts: how many, how many bytes (None when
    artifacts live elsewhere, with a tracking server)."""
    root = folder.artifacts
    if folder.load_spec().storage.mlflow or not root.is_dir():
        return None
    found = list(root.glob(f"*/artifacts/{MODEL_ARTIFACT}/MLmodel"))
    size = sum(f.stat().st_size for m in found for f in m.parent.rglob("*") if f.is_file())
    return ModelUsage(len(found), size)


def running_stage(folder: SweepFolder, number: int, stage: str | None = None) -> str:
    """The stage in which trial `number` is running (restricted to `stage` when given)."""
    seen = []
    for spec_stage, study in _studies(folder):
        if study is None or stage not in (None, spec_stage.name):
            continue
        for trial in study.get_trials(deepcopy=False):
            if trial.number == number:
                if trial.state == TrialState.RUNNING:
                    return spec_stage.name
                seen.append(f"{trial.state.name} in stage {spec_stage.name}")
    where = f" of stage {stage!r}" if stage else ""
    state = f" (it is {', '.join(seen)})" if seen else " (no such trial)"
    raise UserError(f"trial {number}{where} is not running{state}")


UNREADABLE = "unreadable"  # `list`'s state of a folder it could not read, as its table says


def list_sweeps(root: Path) -> list[SweepSummary]:
    """Every sweep under <root>/sweeps with its trial counts."""
    out = []
    base = root / "sweeps"
    for path in sorted(base.glob("*/spec.yaml")) if base.is_dir() else []:
        try:  # one broken or foreign folder does not hide the others
            require_marked(path.parent)
            summary = status(SweepFolder(path.parent))
        except UserError as error:
            out.append(
                SweepSummary(path.parent.name, str(path.parent), error=str(error), state=UNREADABLE)
            )
            continue
        done = sum(s.finished for s in summary.stages)
        target = sum(s.target for s in summary.stages)
        out.append(SweepSummary(summary.name, str(path.parent), done, target, state=summary.state))
    return out

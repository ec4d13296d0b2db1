"""Reading a sweep's results from its Optuna storage: status, best trial, sweep list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.errors import UserError
from sweeper.ownership import require_marked
from sweeper.study import read_storage
from sweeper.sweep import SweepFolder
from sweeper.view import SweepView, stage_counts, stage_studies, view


def _studies(folder: SweepFolder) -> list[tuple[Any, optuna.Study | None]]:
    spec = folder.load_spec()
    return stage_studies(spec, read_storage(spec.storage.optuna, folder.path))


def status(folder: SweepFolder) -> dict[str, Any]:
    """{"name", "stages": [{"name", "target", "complete", "pruned", "failed", "running", …}]}"""
    spec = folder.load_spec()
    stages = []
    for stage, study in _studies(folder):
        counts = (
            stage_counts(study)
            if study
            else {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
        )
        entry = {"name": stage.name, "target": stage.trials, **counts}
        if study is not None and "space" in study.user_attrs:
            entry["space"] = study.user_attrs["space"]
        stages.append(entry)
    return {"name": spec.name, "stages": stages}


def load_view(folder: SweepFolder) -> SweepView:
    spec = folder.load_spec()
    return view(spec, read_storage(spec.storage.optuna, folder.path))


def write_report(folder: SweepFolder, path: Path) -> Path:
    """Render a sweep's report (see `sweeper.report`) from its studies to `path`."""
    from sweeper import plots, report  # matplotlib: only for this command

    spec = folder.load_spec()
    storage = read_storage(spec.storage.optuna, folder.path)
    sweep = view(spec, storage)
    figures = plots.sweep_figures(sweep)
    for stage, study in stage_studies(spec, storage):
        if study is not None:
            figures |= plots.stage_figures(sweep, stage.name, study.get_trials(deepcopy=False))
    path.write_text(report.render(sweep, plots.pngs(figures)))
    return path


def best(folder: SweepFolder) -> dict[str, Any] | None:
    """Best completed trial of all stages: {"stage", "trial", "value", "params", "metrics"}."""
    ranked = load_view(folder).ranked()
    if not ranked:
        return None
    top = ranked[0]
    return {
        "stage": top["stage"],
        "trial": top["number"],
        "value": top["value"],
        "params": top["params"],
        "metrics": top["metrics"],
    }


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


def list_sweeps(root: Path) -> list[dict[str, Any]]:
    """Every sweep under <root>/sweeps with its trial counts."""
    out = []
    base = root / "sweeps"
    for path in sorted(base.glob("*/spec.yaml")) if base.is_dir() else []:
        try:  # one broken or foreign folder does not hide the others
            require_marked(path.parent)
            summary = status(SweepFolder(path.parent))
        except UserError as error:
            out.append({"name": path.parent.name, "folder": str(path.parent), "error": str(error)})
            continue
        done = sum(s["complete"] + s["pruned"] for s in summary["stages"])
        target = sum(s["target"] for s in summary["stages"])
        out.append(
            {
                "name": summary["name"],
                "folder": str(path.parent),
                "finished": done,
                "target": target,
            }
        )
    return out

"""Reading a sweep's results from its Optuna storage: status, best trial, sweep list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper import space as scales
from sweeper.errors import UserError
from sweeper.server import is_warm_start, stage_counts
from sweeper.study import make_storage, study_name
from sweeper.sweep import SweepFolder


def _studies(folder: SweepFolder) -> list[tuple[Any, optuna.Study | None]]:
    spec = folder.load_spec()
    storage = make_storage(spec.storage.optuna, folder.path)
    names = set(optuna.get_all_study_names(storage))
    out = []
    for stage in spec.stages:
        name = study_name(spec.name, stage.name)
        out.append(
            (stage, optuna.load_study(study_name=name, storage=storage) if name in names else None)
        )
    return out


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


def best(folder: SweepFolder) -> dict[str, Any] | None:
    """Best completed trial of all stages: {"stage", "trial", "value", "params", "metrics"}."""
    spec = folder.load_spec()
    maximize = spec.objective.direction == "maximize"
    found = None
    for stage, study in _studies(folder):
        if study is None:
            continue
        space = {
            k: scales.Param.model_validate(v) for k, v in study.user_attrs.get("space", {}).items()
        }
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if is_warm_start(trial) or trial.value is None:
                continue
            if found is None or (
                trial.value > found["value"] if maximize else trial.value < found["value"]
            ):
                found = {
                    "stage": stage.name,
                    "trial": trial.number,
                    "value": trial.value,
                    "params": {**spec.train, **scales.decode(space, trial.params)},
                    "metrics": trial.user_attrs.get("final", {}),
                }
    return found


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
        summary = status(SweepFolder(path.parent))
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

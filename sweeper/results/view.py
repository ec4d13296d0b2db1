"""A sweep's trials as its studies hold them: counts, boxes, and one row per trial.

Shared by the StudyServer (stage plots, the final report) and by the commands that read a sweep
(`status`, `best`, `export`, `report`); it reads Optuna and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from sweeper.records import STATES, TrialRecord, empty_counts
from sweeper.search.study import study_name
from sweeper.spec import scales
from sweeper.spec.schema import Stage, SweepSpec


def is_warm_start(trial: optuna.trial.FrozenTrial) -> bool:
    return "warm_start_from" in trial.user_attrs


def stage_counts(study: optuna.Study) -> dict[str, int]:
    """complete / pruned / failed / running trials of a stage, warm-start copies excluded
    (and retries queued but not started yet)."""
    counts = empty_counts()
    for trial in study.get_trials(deepcopy=False):
        if not is_warm_start(trial) and trial.state in STATES:
            counts[STATES[trial.state][0]] += 1
    return counts


def stage_best(study: optuna.Study, maximize: bool) -> float | None:
    """The best value among a stage's own completed trials (warm-start copies excluded)."""
    values = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not is_warm_start(t) and t.value is not None
    ]
    return (max if maximize else min)(values, default=None)


def stage_studies(
    spec: SweepSpec, storage: optuna.storages.BaseStorage
) -> list[tuple[Stage, optuna.Study | None]]:
    """Each stage of a spec with its study (None for a stage not opened yet)."""
    names = set(optuna.get_all_study_names(storage))
    out = []
    for stage in spec.stages:
        name = study_name(spec.name, stage.name)
        out.append(
            (stage, optuna.load_study(study_name=name, storage=storage) if name in names else None)
        )
    return out


def stage_space(study: optuna.Study) -> scales.Space:
    """The box a stage searched, as recorded in its study."""
    return {k: scales.Param.model_validate(v) for k, v in study.user_attrs.get("space", {}).items()}


@dataclass
class SweepView:
    """Everything the plots, the report and the export show, read once from Optuna."""

    spec: SweepSpec
    spaces: dict[str, scales.Space]  # stage name → its box
    rows: list[TrialRecord]  # one per trial of every stage (warm-start copies left out)

    @property
    def maximize(self) -> bool:
        return self.spec.objective.direction == "maximize"

    def ranked(self, stage: str | None = None) -> list[TrialRecord]:
        """Completed trials, best first."""
        done = [
            r
            for r in self.rows
            if r.state == "COMPLETE" and stage in (None, r.stage) and r.value is not None
        ]
        return sorted(done, key=lambda r: r.value, reverse=self.maximize)


def view(spec: SweepSpec, storage: optuna.storages.BaseStorage) -> SweepView:
    spaces, rows = {}, []
    for stage, study in stage_studies(spec, storage):
        if study is None:
            continue
        space = spaces[stage.name] = stage_space(study)
        for trial in study.get_trials(deepcopy=False):
            if is_warm_start(trial) or trial.state == TrialState.WAITING:
                continue
            rows.append(TrialRecord.of(stage.name, trial, space, spec.train, spec.objective.metric))
    return SweepView(spec, spaces, rows)

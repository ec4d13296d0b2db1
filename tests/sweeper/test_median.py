"""The median stopping rule over earlier trials (`search.median`): Optuna's decisions when
trials run one at a time, and a pack's members judged as if they had."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.search.median import EarlierTrialsMedianPruner

# dev accuracy by epoch (1, 2, 3, 4) of eight trials
CURVES = [
    [0.50, 0.60, 0.70, 0.72],
    [0.40, 0.55, 0.65, 0.70],
    [0.60, 0.70, 0.75, 0.80],
    [0.30, 0.35, 0.40, 0.45],
    [0.55, 0.62, 0.71, 0.74],
    [0.20, 0.60, 0.69, 0.90],
    [0.45, 0.50, 0.66, 0.68],
    [0.65, 0.72, 0.78, 0.79],
]


def study_with(pruner: optuna.pruners.BasePruner, direction: str, warm: int) -> optuna.Study:
    """A study whose first `warm` trials are COMPLETE without a curve (a zoom's copies)."""
    study = optuna.create_study(direction=direction, pruner=pruner)
    for value in range(warm):
        study.add_trial(optuna.trial.create_trial(value=float(value), state=TrialState.COMPLETE))
    return study


def one_at_a_time(pruner: optuna.pruners.BasePruner, direction: str, warm: int) -> list:
    """(trial, epoch) of each stop, the trials run one after another."""
    study, stops = study_with(pruner, direction, warm), []
    sign = 1 if direction == "maximize" else -1
    for k, curve in enumerate(CURVES):
        trial = study.ask()
        for epoch, value in enumerate(curve, start=1):
            trial.report(sign * value, epoch)
            if trial.should_prune():
                stops.append((k, epoch))
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, sign * max(curve))
    return stops


def in_lockstep(pruner: optuna.pruners.BasePruner, warm: int) -> list:
    """(trial, epoch) of each stop, the eight trials one pack, as the StudyServer runs it: every
    member reports an epoch, then the stopped ones are told PRUNED."""
    study, stops = study_with(pruner, "maximize", warm), []
    trials = {k: study.ask() for k in range(len(CURVES))}
    for epoch in range(1, 5):
        stopping = []
        for k, trial in trials.items():
            trial.report(CURVES[k][epoch - 1], epoch)
            if trial.should_prune():
                stopping.append(k)
        for k in stopping:
            stops.append((k, epoch))
            study.tell(trials.pop(k), state=TrialState.PRUNED)
    for k, trial in trials.items():
        study.tell(trial, max(CURVES[k]))
    return stops


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize(("warm", "warmup"), [(0, 0), (0, 2), (3, 1)])
def test_one_trial_at_a_time_it_stops_what_optunas_median_pruner_stops(direction, warm, warmup):
    ours = one_at_a_time(EarlierTrialsMedianPruner(startup=3, warmup=warmup), direction, warm)
    optunas = one_at_a_time(
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=warmup), direction, warm
    )
    assert ours == optunas
    assert ours  # the curves do get trials stopped


def test_a_packs_members_are_judged_against_the_members_asked_before_them():
    # three warm copies (no curves): the start-up count is met, the medians come from the pack.
    # Epoch 2 (the warmup's end): member 1 (0.55) is below member 0 (0.60); 3 (0.35) and 6
    # (0.50) below the median of those asked before them (0.60 both); 5 (0.60) is not below it.
    # Epoch 3, among the running 0, 2, 4, 5, 7: 4 (best 0.71) below the median of 0 and 2
    # (0.725), 5 (0.69) below that of 0, 2, 4 (0.71). Epoch 4: 2 and 7 beat 0's 0.72.
    assert in_lockstep(EarlierTrialsMedianPruner(startup=3, warmup=2), warm=3) == [
        (1, 2), (3, 2), (6, 2), (4, 3), (5, 3)
    ]  # fmt: skip
    # Optuna's rule waits for completed curves, which a pack has none of: nothing is stopped
    assert in_lockstep(optuna.pruners.MedianPruner(3, n_warmup_steps=2), warm=3) == []

"""The pure decisions around a trial: its recorded state, the pruner's epoch budget, and the
warm start of a zoomed stage."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.records import Outcome, TrialResult, Verdict, decide
from sweeper.search.patience import Patience
from sweeper.search.study import make_pruner, max_epochs
from sweeper.search.zoom import next_stage
from sweeper.spec import scales
from sweeper.spec.schema import SweepSpec, Zoom

OK = {"dev_accuracy": 0.8}
V, TS = Verdict, TrialState


@pytest.mark.parametrize(
    ("result", "stop_reason", "verdict"),
    [
        (TrialResult(Outcome.COMPLETED, metrics=OK), None, V(TS.COMPLETE, 0.8)),
        (TrialResult(Outcome.EARLY_STOPPED, metrics=OK), None, V(TS.COMPLETE, 0.8)),
        (TrialResult(Outcome.STOPPED, metrics=OK), None, V(TS.PRUNED, None, "pruned")),
        (TrialResult(Outcome.STOPPED), "manual", V(TS.PRUNED, None, "manual")),
        (TrialResult(Outcome.STOPPED, metrics=OK), "stalled", V(TS.COMPLETE, 0.8)),
        (TrialResult(Outcome.DIVERGED), None, V(TS.PRUNED, None, "diverged")),
        (TrialResult(Outcome.ERROR, error="boom"), None, V(TS.FAIL, None, "error")),
        (TrialResult(Outcome.LOST, error="NodeDiedError"), None, V(TS.FAIL, None, "lost")),
        (TrialResult(Outcome.COMPLETED), None, V(TS.FAIL, None, "no finite dev_accuracy")),
        (
            TrialResult(Outcome.COMPLETED, metrics={"dev_accuracy": math.nan}),
            None,
            V(TS.FAIL, None, "no finite dev_accuracy"),
        ),
    ],
)
def test_decide_maps_each_outcome_to_one_state(result, stop_reason, verdict):
    assert decide(result, "dev_accuracy", stop_reason) == verdict


@pytest.mark.parametrize(
    ("maximize", "curve", "stops"),
    [
        # the best (0.7 at epoch 2) is not beaten for 2 epochs: stop at epoch 4; ties don't count
        (True, [0.5, 0.7, 0.7, 0.6, 0.9], [False, False, False, True, False]),
        (False, [0.9, 0.5, 0.6, 0.4, 0.45, 0.41], [False, False, False, False, False, True]),
        (True, [math.nan, math.nan, 0.3], [False, True, False]),  # no value is no improvement
    ],
)
def test_patience_stops_after_that_many_epochs_without_improvement(maximize, curve, stops):
    patience = Patience(2, maximize)
    assert [patience.stalled(value) for value in curve] == stops


def spec(train: dict, space: dict) -> SweepSpec:
    return SweepSpec.model_validate(
        {
            "name": "s",
            "data": {"source": "builtin:flower"},
            "train": train,
            "space": {"learning_rate": {"scale": "log", "low": 1e-3, "high": 1.0}, **space},
            "stages": [{"name": "coarse", "trials": 4}],
        }
    )


def test_hyperbands_budget_is_the_searched_epochs_upper_bound():
    searched = spec({}, {"epochs": {"scale": "int", "low": 5, "high": 80}})
    assert max_epochs(searched) == 80
    assert max_epochs(spec({"epochs": 12}, {})) == 12
    assert max_epochs(spec({}, {})) == 30  # the trainer's own default
    choice = spec({}, {"epochs": {"scale": "categorical", "choices": [10, 40, 20]}})
    assert max_epochs(choice) == 40
    pruner = make_pruner(searched.stages[0].pruner.model_copy(update={"type": "hyperband"}), 80)
    assert pruner._max_resource == 80


SPACE = {"x": scales.Param(scale="uniform", low=0.0, high=1.0)}


def finished(number: int, x: float, value: float, state=TrialState.COMPLETE):
    trial = optuna.trial.create_trial(
        state=state,
        params=scales.encode(SPACE, {"x": x}),
        distributions=scales.distributions(SPACE),
        value=value,
        intermediate_values={1: value},
    )
    trial.number = number
    return trial


def test_a_zoomed_stage_starts_with_copies_of_the_top_trials_in_its_box():
    trials = [
        finished(0, 0.40, 0.9),
        finished(1, 0.50, 0.8, TrialState.PRUNED),
        finished(2, 0.90, 0.1, TrialState.PRUNED),
        finished(3, 0.10, 0.2, TrialState.PRUNED),
    ]  # ranked 0, 1, 3, 2: the top half is 0 and 1
    space, warm = next_stage(SPACE, trials, Zoom(top=0.5, margin=0.1), True, "coarse", set())
    assert space["x"].low < 0.40 and space["x"].high > 0.50
    assert not space["x"].contains(0.10) and not space["x"].contains(0.90)
    # each copy is COMPLETE with its value at the common budget (epoch 1) and no curve, so the
    # zoomed stage's pruner compares its own trials only (tests/sweeper/test_zoom.py)
    assert [(t.user_attrs["warm_start_from"], t.state, t.value) for t in warm] == [
        ("coarse:0", TrialState.COMPLETE, 0.9),
        ("coarse:1", TrialState.COMPLETE, 0.8),
    ]
    assert not any(t.intermediate_values for t in warm)
    assert warm[0].params == scales.encode(space, {"x": 0.40})
    _, again = next_stage(SPACE, trials, Zoom(top=0.5, margin=0.1), True, "coarse", {"coarse:0"})
    assert [t.user_attrs["warm_start_from"] for t in again] == ["coarse:1"]


def test_a_zero_margin_box_keeps_warm_copies_on_its_edge():
    """10**log10(0.07) is 0.07000000000000002: a box drawn with margin 0 around a trial at 0.07
    starts one rounding step above it, and the copy must still be accepted (clamped)."""
    space = {"learning_rate": scales.Param(scale="log", low=1e-3, high=1.0)}
    trials = []
    for number, rate in enumerate([0.07, 0.2]):
        trial = optuna.trial.create_trial(
            params=scales.encode(space, {"learning_rate": rate}),
            distributions=scales.distributions(space),
            value=0.9 - number / 10,
        )
        trial.number = number
        trials.append(trial)
    box, warm = next_stage(space, trials, Zoom(top=1.0, margin=0.0), True, "coarse", set())
    assert box["learning_rate"].low > 0.07  # the rounding this test is about
    assert [t.user_attrs["warm_start_from"] for t in warm] == ["coarse:0", "coarse:1"]
    assert warm[0].params["learning_rate"] == box["learning_rate"].low

"""Coarse to fine: ranking finished trials and the box the next stage samples."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.search.zoom import rank_finished, zoom_space
from sweeper.spec import scales
from sweeper.spec.scales import Param

SPACE = {"x": Param(scale="uniform", low=0.0, high=1.0)}


def _trial(number: int, x: float, curve: list[float], state=TrialState.COMPLETE, reason=None):
    """A finished trial as the StudyServer leaves it (a pruned one's value: its last report)."""
    return optuna.trial.create_trial(
        state=state,
        params=scales.encode(SPACE, {"x": x}),
        distributions=scales.distributions(SPACE),
        value=curve[-1] if curve and state != TrialState.FAIL else None,
        intermediate_values=dict(enumerate(curve, start=1)),
        user_attrs={"reason": reason} if reason else {},
    )


def test_ranking_puts_trials_that_got_further_first_then_the_better_value():
    pruned = TrialState.PRUNED
    trials = [
        _trial(0, 0.1, [0.90, 0.91], pruned, "pruned"),  # stopped at epoch 2
        _trial(1, 0.2, [0.5, 0.6, 0.7, 0.8]),  # ran to the end, weakest value of all
        _trial(2, 0.3, [0.95], pruned, "pruned"),  # stopped at epoch 1
        _trial(3, 0.4, [0.7, 0.8, 0.85, 0.9]),
        _trial(4, 0.5, [0.6, 0.7], pruned, "pruned"),
        _trial(5, 0.6, [0.9, 0.99], pruned, "diverged"),  # a diverged region is not a good one
        _trial(6, 0.7, [0.9, 0.99], pruned, "manual"),  # nor one the user pruned by hand
        _trial(7, 0.8, [0.9], TrialState.FAIL),
        _trial(8, 0.9, [], pruned, "pruned"),  # stopped before any report: no value
    ]
    for i, t in enumerate(trials):
        t.number = i
    assert [t.number for t in rank_finished(trials, maximize=True)] == [3, 1, 0, 4, 2]
    # minimizing, a lower value is better, but how far a trial got still comes first
    assert [t.number for t in rank_finished(trials, maximize=False)] == [1, 3, 4, 0, 2]


def test_zoom_box_spans_the_top_fraction_of_finished_trials_not_only_the_completed():
    pruned = TrialState.PRUNED
    trials = [
        _trial(0, 0.50, [0.8, 0.9, 0.92]),  # the only completed trial
        _trial(1, 0.30, [0.8, 0.85], pruned, "pruned"),
        _trial(2, 0.62, [0.7, 0.8], pruned, "pruned"),
        _trial(3, 0.95, [0.6], pruned, "pruned"),
        _trial(4, 0.05, [0.5], pruned, "pruned"),
        _trial(5, 0.90, [0.4], pruned, "pruned"),
    ]
    box, best = zoom_space(SPACE, trials, top=0.5, margin=0.1, maximize=True)
    assert sorted(scales.decode(SPACE, t.params)["x"] for t in best) == [0.30, 0.50, 0.62]
    assert (box["x"].low, box["x"].high) == pytest.approx((0.20, 0.72))


def test_zoom_without_finished_trials_keeps_the_space():
    assert zoom_space(SPACE, [], top=0.2, margin=0.1, maximize=True) == (SPACE, [])

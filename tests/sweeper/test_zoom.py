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


LAYERED = {
    "num_layers": Param(scale="int", low=1, high=3),
    "hidden_units": Param(scale="pow2", low=8, high=256),
    "hidden_units_3": Param(scale="pow2", low=8, high=256),
}


def test_a_per_layer_width_is_sampled_only_for_trials_that_have_the_layer():
    """`hidden_units_3` is a conditional parameter: absent from trials of 1 or 2 layers."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [scales.sample(study.ask(), LAYERED) for _ in range(40)]
    deep = [v for v in drawn if v["num_layers"] == 3]
    assert deep and len(deep) < len(drawn)
    assert all(("hidden_units_3" in v) == (v["num_layers"] == 3) for v in drawn)


def test_the_zoom_box_of_a_per_layer_width_comes_from_the_trials_that_have_the_layer():
    values = [  # best first: a 1-layer trial, then 3-layer trials with their own layer-3 width
        {"num_layers": 1, "hidden_units": 64},
        {"num_layers": 3, "hidden_units": 32, "hidden_units_3": 16},
        {"num_layers": 3, "hidden_units": 128, "hidden_units_3": 64},
        {"num_layers": 2, "hidden_units": 256},
    ]
    trials = []
    for number, v in enumerate(values):
        params = scales.encode(LAYERED, v)
        distributions = scales.distributions(LAYERED)
        trial = optuna.trial.create_trial(
            params=params,
            distributions={k: distributions[k] for k in params},
            value=1.0 - number / 10,
        )
        trial.number = number
        trials.append(trial)
    box, best = zoom_space(LAYERED, trials, top=0.75, margin=0.0, maximize=True)
    assert [t.number for t in best] == [0, 1, 2]
    assert (box["num_layers"].low, box["num_layers"].high) == (1, 3)
    assert (box["hidden_units"].low, box["hidden_units"].high) == (32, 128)
    assert (box["hidden_units_3"].low, box["hidden_units_3"].high) == (16, 64)  # trials 1, 2 only

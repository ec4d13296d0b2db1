"""The sweep's figures (sweeper/results/plots.py), drawn from hand-built trials."""

from __future__ import annotations

import optuna
import optuna.distributions as od
import pytest
from optuna.trial import TrialState, create_trial

from sweeper.results import plots
from sweeper.results.view import SweepView
from tests.sweeper.test_server import SPEC  # coarse, then a fine stage zoomed on it

DISTRIBUTIONS = {
    "learning_rate": od.FloatDistribution(1e-4, 1.0, log=True),
    "one_minus_beta": od.FloatDistribution(1e-3, 0.1, log=True),
}


def trial(learning_rate: float, value: float, copy: bool) -> optuna.trial.FrozenTrial:
    return create_trial(
        state=TrialState.COMPLETE,
        params={"learning_rate": learning_rate, "one_minus_beta": 0.01},
        distributions=DISTRIBUTIONS,
        value=value,
        user_attrs={"warm_start_from": "coarse:0", "warm_start_epochs": 2} if copy else {},
    )


def test_a_stages_importances_are_of_its_own_trials_not_its_warm_start_copies():
    """The fine stage's importances were computed over its warm-start copies too (the coarse
    stage's top trials, valued at the ranking's common budget): a fine stage with one own
    completed trial showed learning_rate at 0.86, all of it learnt from the copies."""
    copies = [trial(10 ** -(i / 3), 0.5 + i / 20, copy=True) for i in range(8)]
    own = trial(0.01, 0.7, copy=False)
    figure = plots.importances(SweepView(SPEC, {}, []), "fine", [*copies, own])
    widths = [bar.get_width() for bar in figure.axes[0].patches]
    assert widths == pytest.approx([0.5, 0.5])  # one trial tells the parameters apart by nothing

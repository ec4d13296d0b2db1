"""A stage's sampler, built and used, adds nothing to the sweep's log: Optuna's warnings reach the
user's terminal through the StudyServer actor in every sweep."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from sweeper.search.study import make_sampler
from sweeper.spec.stages import Stage

DISTRIBUTIONS = {"x": FloatDistribution(1e-4, 1.0, log=True), "n": IntDistribution(1, 3)}


@pytest.mark.parametrize("sampler", ["random", "qmc", "tpe", "gp", "grid"])
def test_a_stages_sampler_warns_nothing(sampler):
    if sampler == "gp":
        pytest.importorskip("torch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stage = Stage(name="s", trials=8, sampler=sampler)
        study = optuna.create_study(sampler=make_sampler(stage, 0, DISTRIBUTIONS))
        for _ in range(8):  # past every sampler's start-up trials
            trial = study.ask(DISTRIBUTIONS)
            study.tell(trial, trial.params["x"] * trial.params["n"])
    assert [str(w.message) for w in caught] == []


def test_a_grid_stage_tells_its_last_grid_point():
    """A grid stage with as many trials as grid points (or more): Optuna's GridSampler stops
    the study when its last point is told, which only `study.optimize` allows ('`Study.stop`
    is supposed to be invoked inside an objective function or a callback'): the StudyServer
    failed at the stage's last trial, and every resume failed again."""
    distributions = {"n": IntDistribution(1, 3)}
    study = optuna.create_study(
        sampler=make_sampler(Stage(name="g", trials=4, sampler="grid"), 0, distributions)
    )
    for _ in range(4):  # the grid's three points, then one more
        trial = study.ask(distributions)
        study.tell(trial, trial.params["n"])
    assert sorted(t.params["n"] for t in study.trials[:3]) == [1, 2, 3]

"""The GP sampler learns from pruned and diverged trials instead of proposing their region again
(`search.gp`)."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeper.records import Outcome, TrialResult, decide
from sweeper.search.gp import PruningAwareGPSampler, as_the_gp_sees_them
from sweeper.search.study import make_sampler
from sweeper.spec.stages import Stage

X = {"x": FloatDistribution(0.0, 1.0)}


def recorded(x: float, outcome: Outcome, curve: dict[int, float]) -> optuna.trial.FrozenTrial:
    """A trial at `x` that ended with `outcome` after reporting `curve`, recorded as the
    StudyServer records it (`decide`'s state and reason)."""
    verdict = decide(TrialResult(outcome, [], {}), "dev_accuracy", None)
    return create_trial(
        params={"x": x},
        distributions=X,
        state=verdict.state,
        intermediate_values=curve,
        user_attrs={"reason": verdict.reason},
    )


def study_rising_to_a_bad_edge(sampler: optuna.samplers.BaseSampler, edge: Outcome):
    """Dev accuracy rises with x on six completed trials; near x = 1 networks ended badly:
    one diverged, or three a pruner stopped at 0.3 (worse than any completed)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for x in (0.05, 0.15, 0.25, 0.35, 0.45, 0.55):
        study.add_trial(create_trial(params={"x": x}, distributions=X, value=0.5 + 0.4 * x))
    if edge is Outcome.DIVERGED:
        study.add_trial(recorded(1.0, Outcome.DIVERGED, {}))
    else:
        for x in (0.9, 0.95, 1.0):
            study.add_trial(recorded(x, Outcome.STOPPED, {1: 0.2, 2: 0.3, 3: 0.25}))
    return study


def test_pruned_trials_at_their_best_value_and_diverged_ones_at_the_worst_seen():
    curve = {1: 0.2, 2: 0.3, 3: 0.25}
    trials = [
        create_trial(params={"x": 0.1}, distributions=X, value=0.7),
        recorded(0.2, Outcome.STOPPED, curve),  # by its pruner
        recorded(0.3, Outcome.DIVERGED, {1: 0.4}),
        create_trial(  # by hand (`sweeper prune`): its region is not judged
            params={"x": 0.4},
            distributions=X,
            state=TrialState.PRUNED,
            intermediate_values=curve,
            user_attrs={"reason": "manual"},
        ),
        recorded(0.5, Outcome.STOPPED, {}),  # before its first epoch: nothing to learn
    ]
    seen = as_the_gp_sees_them(trials, True, X)
    assert [t.state for t in seen] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED] * 2
    assert [t.value for t in seen[:3]] == [0.7, 0.3, 0.3]
    assert seen[1].params == {"x": 0.2} and seen[2].params == {"x": 0.3}
    assert [t.value for t in as_the_gp_sees_them(trials, False, X)[:3]] == [0.7, 0.2, 0.7]
    alone = trials[2:3]  # nothing else seen yet: nothing to charge it
    assert as_the_gp_sees_them(alone, True, X) == alone


@pytest.mark.parametrize("edge", [Outcome.DIVERGED, Outcome.STOPPED])
def test_gp_moves_away_from_a_bad_edge_where_optunas_proposes_it_again(edge):
    pytest.importorskip("torch")
    plain = study_rising_to_a_bad_edge(optuna.samplers.GPSampler(seed=0, n_startup_trials=5), edge)
    aware = study_rising_to_a_bad_edge(PruningAwareGPSampler(seed=0, n_startup_trials=5), edge)
    assert plain.ask(X).params["x"] > 0.99  # on up the slope, into the same bad region
    assert 0.45 < aware.ask(X).params["x"] < 0.9  # near the best completed, short of the bad edge


def test_a_pruned_trial_without_a_modelled_parameter_stays_out():
    """The process models the parameters every COMPLETE trial has: here the third layer's
    units. A pruned one-layer network has no such parameter; shown to the process it would
    break it (KeyError in Optuna's normalisation), so it is left out."""
    pytest.importorskip("torch")
    deep = X | {"units_3": FloatDistribution(8, 128)}
    study = optuna.create_study(
        direction="maximize", sampler=PruningAwareGPSampler(seed=0, n_startup_trials=5)
    )
    for x in (0.1, 0.3, 0.5, 0.7, 0.9):
        params = {"x": x, "units_3": 16 + 100 * x}
        study.add_trial(create_trial(params=params, distributions=deep, value=x))
    shallow = recorded(0.2, Outcome.STOPPED, {1: 0.4})
    study.add_trial(shallow)
    seen = as_the_gp_sees_them(study.get_trials(), True, deep)
    assert seen[-1].state == TrialState.PRUNED
    assert as_the_gp_sees_them(study.get_trials(), True, X)[-1].state == TrialState.COMPLETE
    assert 0.0 <= study.ask({"x": X["x"], "units_3": deep["units_3"]}).params["x"] <= 1.0


def test_a_gp_stage_gets_the_pruning_aware_sampler():
    pytest.importorskip("torch")
    stage = Stage(name="s", trials=1, sampler="gp")
    assert isinstance(make_sampler(stage, 0, X), PruningAwareGPSampler)

"""The GP sampler learns from a diverged trial instead of proposing it again (`search.gp`)."""

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sweeper.records import Outcome, TrialResult, decide
from sweeper.search.gp import DivergenceAwareGPSampler, diverged_as_worst
from sweeper.search.study import make_sampler
from sweeper.spec.stages import Stage

X = {"x": FloatDistribution(0.0, 1.0)}


def study_rising_to_a_diverged_edge(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Dev accuracy rises with x on six completed trials; at x = 1 the network diverged and the
    trial was recorded as the StudyServer records it (PRUNED, reason "diverged")."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for x in (0.05, 0.15, 0.25, 0.35, 0.45, 0.55):
        study.add_trial(create_trial(params={"x": x}, distributions=X, value=0.5 + 0.4 * x))
    verdict = decide(TrialResult(Outcome.DIVERGED, [], {}), "dev_accuracy", None)
    study.add_trial(
        create_trial(
            params={"x": 1.0},
            distributions=X,
            state=verdict.state,
            user_attrs={"reason": verdict.reason},
        )
    )
    return study


def next_x(study: optuna.Study) -> float:
    return study.ask(X).params["x"]


def test_a_diverged_trial_is_seen_at_the_worst_completed_value():
    study = study_rising_to_a_diverged_edge(optuna.samplers.RandomSampler())
    manual = create_trial(params={"x": 0.9}, distributions=X, state=TrialState.PRUNED)
    study.add_trial(manual)  # pruned by hand or by a pruner: its region is not judged
    seen = diverged_as_worst(study.get_trials(), maximize=True)
    assert [t.state for t in seen] == [TrialState.COMPLETE] * 7 + [TrialState.PRUNED]
    assert seen[6].params == {"x": 1.0} and seen[6].value == pytest.approx(0.5 + 0.4 * 0.05)
    assert diverged_as_worst(study.get_trials(), maximize=False)[6].value == pytest.approx(0.72)
    alone = study.get_trials()[6:7]  # nothing completed yet: nothing to charge it
    assert diverged_as_worst(alone, maximize=True) == alone


def test_gp_moves_away_from_a_diverged_edge_where_optunas_proposes_it_again():
    pytest.importorskip("torch")
    plain = next_x(
        study_rising_to_a_diverged_edge(optuna.samplers.GPSampler(seed=0, n_startup_trials=5))
    )
    aware = next_x(
        study_rising_to_a_diverged_edge(DivergenceAwareGPSampler(seed=0, n_startup_trials=5))
    )
    assert plain > 0.99  # the same diverging configuration, once more
    assert 0.55 < aware < 0.95  # on up the slope, short of where it blew up
    assert isinstance(
        make_sampler(Stage(name="s", trials=1, sampler="gp"), 0, X), DivergenceAwareGPSampler
    )

"""Coarse to fine: ranking finished trials and the box the next stage samples."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.search.zoom import next_stage, top_trials
from sweeper.spec import scales
from sweeper.spec.scales import Param
from sweeper.spec.schema import Zoom

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


def _numbered(trials):
    for i, t in enumerate(trials):
        t.number = i
    return trials


PRUNED = TrialState.PRUNED
FINISHED = [  # x, learning curve (epochs 1, 2, …), state, reason
    (0.1, [0.90, 0.91], PRUNED, "pruned"),  # stopped at epoch 2
    (0.2, [0.5, 0.6, 0.7, 0.8], TrialState.COMPLETE, None),  # ran to the end, weakest curve
    (0.3, [0.95], PRUNED, "pruned"),  # stopped at epoch 1
    (0.4, [0.7, 0.8, 0.85, 0.9], TrialState.COMPLETE, None),
    (0.5, [0.6, 0.7], PRUNED, "pruned"),
    (0.6, [0.9, 0.99], PRUNED, "diverged"),  # a diverged region is not a good one
    (0.7, [0.9, 0.99], PRUNED, "manual"),  # nor one the user pruned by hand
    (0.8, [0.9], TrialState.FAIL, None),
    (0.9, [], PRUNED, "pruned"),  # stopped before any report: no value
]


def finished():
    return _numbered([_trial(i, x, c, s, r) for i, (x, c, s, r) in enumerate(FINISHED)])


@pytest.mark.parametrize(
    "top,maximize,numbers,common",
    [
        # 3 of the 5 rankable trials: 3 reached epoch 2, compared by their best up to epoch 2;
        # the weak completed trial 1 (0.6 by epoch 2) is out although it ran longest
        (0.5, True, [0, 3, 4], 2),
        (0.4, True, [3, 1], 4),  # 2 trials ran to epoch 4: compared at the end
        (1.0, True, [2, 0, 3, 4, 1], 1),  # all 5: only epoch 1 is common to all
        (0.5, False, [1, 4, 3], 2),  # minimizing: the lowest value by epoch 2 first
    ],
)
def test_top_trials_are_compared_at_the_most_epochs_that_enough_of_them_reached(
    top, maximize, numbers, common
):
    best, at = top_trials(finished(), top, maximize)
    assert [t.number for t in best] == numbers
    assert at == common


def test_next_stage_box_and_warm_start_copies_for_the_common_budget_ranking():
    """Box around x = 0.1, 0.4, 0.5 (trials 0, 3, 4), widened by 0.1 and clipped at 0; each copy
    is COMPLETE with its best value by epoch 2 and no curve."""
    box, warm = next_stage(SPACE, finished(), Zoom(top=0.5, margin=0.1), True, "coarse", set())
    assert (box["x"].low, box["x"].high) == pytest.approx((0.0, 0.6))
    assert [t.user_attrs["warm_start_from"] for t in warm] == ["coarse:0", "coarse:3", "coarse:4"]
    assert [t.params["x"] for t in warm] == [0.1, 0.4, 0.5]
    assert [t.value for t in warm] == [0.91, 0.8, 0.7]
    assert all(t.state == TrialState.COMPLETE and not t.intermediate_values for t in warm)
    assert all(t.user_attrs["warm_start_epochs"] == 2 for t in warm)
    _, again = next_stage(
        SPACE, finished(), Zoom(top=0.5, margin=0.1), True, "coarse", {"coarse:3"}
    )
    assert [t.user_attrs["warm_start_from"] for t in again] == ["coarse:0", "coarse:4"]


def test_the_fine_stages_pruner_compares_fresh_trials_only():
    """A median pruner given the elite's curves stops a fresh trial whose epoch 1 is below
    theirs (what stopped 7 of 12 fine trials at epoch 3 in issue 18); given the copies, which
    carry no curve, it has no peer at epoch 1 yet and lets the stage's first trial go on."""

    def first_trial_pruned(copies) -> bool:
        pruner = optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        study.add_trials(copies)
        trial = study.ask()
        trial.report(0.3, step=1)  # far below every top trial's epoch 1
        return trial.should_prune()

    _, warm = next_stage(SPACE, finished(), Zoom(top=0.5, margin=0.1), True, "coarse", set())
    assert not first_trial_pruned(warm)
    with_curves = [t for t in finished() if t.number in (0, 3, 4)]
    assert first_trial_pruned(with_curves)


def test_zoom_box_spans_the_top_fraction_of_finished_trials_not_only_the_completed():
    pruned = TrialState.PRUNED
    trials = _numbered(
        [
            _trial(0, 0.50, [0.8, 0.9, 0.92]),  # the only completed trial
            _trial(1, 0.30, [0.8, 0.85], pruned, "pruned"),
            _trial(2, 0.62, [0.7, 0.8], pruned, "pruned"),
            _trial(3, 0.95, [0.6], pruned, "pruned"),
            _trial(4, 0.05, [0.5], pruned, "pruned"),
            _trial(5, 0.90, [0.4], pruned, "pruned"),
        ]
    )
    box, best = _zoom(SPACE, trials, top=0.5, margin=0.1)
    assert sorted(best) == [0, 1, 2]  # x = 0.50, 0.30 and 0.62
    assert (box["x"].low, box["x"].high) == pytest.approx((0.20, 0.72))


def _zoom(space, trials, top: float, margin: float):
    """The zoomed box of a maximizing stage, and the numbers of the trials it copied."""
    box, warm = next_stage(space, trials, Zoom(top=top, margin=margin), True, "s", set())
    return box, [int(copy.user_attrs["warm_start_from"].split(":")[1]) for copy in warm]


def test_zoom_without_finished_trials_keeps_the_space():
    assert _zoom(SPACE, [], top=0.2, margin=0.1) == (SPACE, [])


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
    box, best = _zoom(LAYERED, trials, top=0.75, margin=0.0)
    assert best == [0, 1, 2]
    assert (box["num_layers"].low, box["num_layers"].high) == (1, 3)
    assert (box["hidden_units"].low, box["hidden_units"].high) == (32, 128)
    assert (box["hidden_units_3"].low, box["hidden_units_3"].high) == (16, 64)  # trials 1, 2 only

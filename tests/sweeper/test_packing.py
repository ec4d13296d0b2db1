"""How many trials a task packs, and which options they share (sweeper/run/packing.py)."""

from __future__ import annotations

import pytest

from model import TrainConfig
from model.stacked import pack_key
from sweeper.run.packing import (
    AUTO_MAX,
    balanced,
    members_per_task,
    shapes_the_pack,
)
from sweeper.spec.schema import Resources


def test_the_options_a_pack_shares_are_those_of_its_key():
    base = TrainConfig(hidden_units=[16, 16])
    for name, value in [
        ("hidden_units", [32, 16]),
        ("num_layers", 2),  # same depth: same key
        ("batch_size", 32),
        ("optimizer", "adam"),
        ("activation", "tanh"),
        ("init", "xavier"),
        ("batch_norm", True),
        ("learning_rate", 0.5),
        ("keep_prob", 0.5),
        ("l2", 0.1),
        ("epochs", 3),
    ]:
        changed = TrainConfig.from_dict({"hidden_units": [16, 16], name: value})
        if pack_key(changed) != pack_key(base):
            assert shapes_the_pack(name), name
    assert shapes_the_pack("hidden_units_2") and not shapes_the_pack("keep_prob_2")
    assert not shapes_the_pack("learning_rate") and not shapes_the_pack("epochs")


@pytest.mark.parametrize(
    ("n_x", "hidden", "n_classes", "optimizer", "expected"),
    [
        (2, [16, 16], 2, "adam", AUTO_MAX),  # tiny: as many as measured
        (64, [32], 10, "adam", 27),  # 2,410 parameters × 4 arrays × 4 bytes into 1 MiB
        (64, [128, 128], 10, "adam", 1),  # 26k parameters: 2 would fit, too few to pay
        (784, [256], 10, "adam", 1),  # packing lost in the benchmark at every K
        (64, [128, 128], 10, "gd", 5),  # no optimizer state: θ and dθ only
        (64, [64], 10, "momentum", 18),  # θ, dθ and v
    ],
)
def test_auto_packs_what_fits_the_cache_and_falls_back_to_one(
    n_x, hidden, n_classes, optimizer, expected
):
    config = TrainConfig(hidden_units=hidden, optimizer=optimizer)
    assert members_per_task("auto", config, n_x, n_classes) == expected
    assert members_per_task(5, config, n_x, n_classes) == 5  # a number is taken as given


def test_the_last_packs_are_balanced_over_free_slots():
    assert balanced(16, open_trials=64, free_tasks=2) == 16
    assert balanced(16, open_trials=20, free_tasks=2) == 10
    assert balanced(16, open_trials=10, free_tasks=1) == 10
    assert balanced(16, open_trials=3, free_tasks=2) == 2
    assert balanced(1, open_trials=50, free_tasks=2) == 1


def test_pack_is_one_by_default_and_a_number_or_auto():
    assert Resources().pack == 1
    assert Resources(pack="auto").pack == "auto" and Resources(pack=16).pack == 16
    for bad in (0, "many", 1.5):
        with pytest.raises(ValueError):
            Resources(pack=bad)


def _auto_k(stage_trials: int, params: dict, fixed: dict | None = None) -> int:
    """K the driver picks for a leader with `params` in a stage of `stage_trials` (digits)."""
    from sweeper.records import StageProgress
    from sweeper.run.dispatch import StageRun
    from sweeper.spec.schema import Objective

    stage = StageRun(
        server=None,  # _pack_size asks nothing of the server
        index=0,
        fixed={"optimizer": "adam", "num_layers": 1, **(fixed or {})},
        dataset_ref=None,
        objective=Objective(metric="dev_accuracy", direction="maximize"),
        maximize=True,
        resources=Resources(pack="auto"),
        progress=StageProgress("s", stage_trials, {}),
        data_shape=(64, 10),
    )
    return stage._pack_size(params)


def test_auto_trains_one_trial_per_task_where_the_stage_searches_the_structure():
    # 64→32→10 adam: 27 fit the cache (above), whatever the stage's size
    assert _auto_k(1000, {"learning_rate": 0.1, "l2": 0.01}, {"hidden_units": [32]}) == 27
    assert _auto_k(24, {"learning_rate": 0.1, "l2": 0.01}, {"hidden_units": [32]}) == 27
    # any pack-shaping param searched: the followers would share it, so one per task
    assert _auto_k(1000, {"hidden_units": 32, "learning_rate": 0.1}) == 1
    assert _auto_k(1000, {"batch_size": 64}, {"hidden_units": [32]}) == 1
    assert _auto_k(1000, {"num_layers": 1}, {"hidden_units": [32]}) == 1
    assert _auto_k(1000, {"hidden_units_1": 32}, {"hidden_units": [32]}) == 1
    assert _auto_k(1000, {"optimizer": "adam"}, {"hidden_units": [32]}) == 1


def test_a_number_is_taken_as_given_whatever_the_stage_searches():
    config = TrainConfig(hidden_units=[32], optimizer="adam")
    assert members_per_task(16, config, 64, 10, structure_searched=True) == 16
    assert members_per_task("auto", config, 64, 10, structure_searched=True) == 1
    assert members_per_task("auto", config, 64, 10, structure_searched=False) == 27

"""Scales: sampled distributions are right statistically; zoom boxes are exact."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from scipy import stats

from sweeper.spec import scales
from sweeper.spec.scales import Param


def _sample(param: Param, n: int = 2000, seed: int = 0) -> list:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = scales.distributions({"x": param})
    return [scales.decode({"x": param}, study.ask(dists).params)["x"] for _ in range(n)]


def test_one_minus_log_is_uniform_in_log10_one_minus_beta():
    betas = np.array(_sample(Param(scale="one_minus_log", low=0.9, high=0.999)))
    r = np.log10(1 - betas)
    assert r.min() >= -3 - 1e-9 and r.max() <= -1 + 1e-9
    assert stats.kstest(r, stats.uniform(loc=-3, scale=2).cdf).pvalue > 0.01
    # and clearly not uniform in β itself
    assert stats.kstest(betas, stats.uniform(loc=0.9, scale=0.099).cdf).pvalue < 1e-6


def test_log_is_uniform_in_log10():
    alphas = np.array(_sample(Param(scale="log", low=1e-4, high=1.0)))
    assert stats.kstest(np.log10(alphas), stats.uniform(loc=-4, scale=4).cdf).pvalue > 0.01


def test_pow2_gives_only_powers_of_two_within_bounds_evenly():
    sizes = _sample(Param(scale="pow2", low=32, high=1024))
    assert set(sizes) == {32, 64, 128, 256, 512, 1024}
    counts = np.bincount([int(math.log2(s)) for s in sizes])[5:]
    assert stats.chisquare(counts).pvalue > 0.01


def test_int_and_categorical():
    assert set(_sample(Param(scale="int", low=1, high=4), 400)) == {1, 2, 3, 4}
    assert set(_sample(Param(scale="categorical", choices=["relu", "tanh"]), 100)) == {
        "relu",
        "tanh",
    }


@pytest.mark.parametrize(
    "param,values,margin,expected",
    [
        # log: top α in [1e-3, 1e-2], 10% of the 4-decade range = 0.4 decades each side
        (Param(scale="log", low=1e-4, high=1.0), [1e-3, 1e-2], 0.1, (10**-3.4, 10**-1.6)),
        # clipped at the original bounds
        (Param(scale="log", low=1e-4, high=1.0), [2e-4, 0.5], 0.1, (1e-4, 1.0)),
        # one_minus_log: β ∈ {0.99, 0.95}: log10(1−β) ∈ [−2, −1.30]; margin 0.1·2 decades = 0.2
        (
            Param(scale="one_minus_log", low=0.9, high=0.999),
            [0.99, 0.95],
            0.1,
            (1 - 10 ** (math.log10(0.05) + 0.2), 1 - 10**-2.2),
        ),
        # pow2: sizes 64..128 with one doubling of margin (0.2·5 = 1) → 32..256
        (Param(scale="pow2", low=32, high=1024), [64, 128], 0.2, (32, 256)),
        # int rounds outwards
        (Param(scale="int", low=1, high=8), [3, 4], 0.1, (2, 5)),
        (Param(scale="uniform", low=0.0, high=1.0), [0.4, 0.5], 0.1, (0.3, 0.6)),
    ],
)
def test_zoom_box(param, values, margin, expected):
    box = param.zoom(values, margin)
    assert box.scale == param.scale
    assert (box.low, box.high) == pytest.approx(expected, rel=1e-9)


def test_zoom_categorical_keeps_present_choices():
    param = Param(scale="categorical", choices=["relu", "tanh", "sigmoid"])
    assert param.zoom(["tanh", "relu", "tanh"], 0.1).choices == ["relu", "tanh"]


def test_encode_decode_round_trip():
    space = {
        "beta": Param(scale="one_minus_log", low=0.9, high=0.999),
        "batch_size": Param(scale="pow2", low=16, high=512),
    }
    values = {"beta": 0.95, "batch_size": 64}
    stored = scales.encode(space, values)
    assert stored == {"one_minus_beta": pytest.approx(0.05), "log2_batch_size": 6}
    assert scales.decode(space, stored) == pytest.approx(values)


def test_list_valued_choice_round_trips_through_a_persistent_optuna_storage(tmp_path):
    """hidden_units: {scale: categorical, choices: [[20, 3], [64]]}: Optuna's storages keep only
    scalars, so a list is stored as its JSON text and decoded back to the list."""
    import warnings

    import optuna

    param = Param(scale="categorical", choices=[[20, 3], [64]])
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/study.db")
    study = optuna.create_study(storage=storage)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns about non-scalar choices
        trial = study.ask(scales.distributions({"hidden_units": param}))
    stored = optuna.load_study(study_name=study.study_name, storage=storage).trials[0].params
    assert stored == trial.params and isinstance(stored["hidden_units"], str)
    value = scales.decode({"hidden_units": param}, stored)["hidden_units"]
    assert value in ([20, 3], [64]) and isinstance(value, list)
    assert scales.encode({"hidden_units": param}, {"hidden_units": value}) == stored

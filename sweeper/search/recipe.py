"""The recommended plan for a budget: what `budget: {trials: N}` in a space.yaml runs.

`search: frugal` (the default) is the coarse-to-fine recipe below, at under half of random
search's epochs. `search: thorough` trains every trial for all its epochs and samples them with
a Gaussian process (`sampler: gp`, needs PyTorch): at equal trials its best model was level
with the recipe's or better on every data set at 24 and 64 trials (10 points better on the
spirals, 2 on wide-weak), for about twice the epochs (docs/search.md, "The thorough plan").

The frugal plan: a quasi-random coarse stage over the whole space, pruned by ASHA, then a TPE
stage on the box around the coarse stage's best quarter (ranked at a common budget, see
`zoom.top_trials`), warm-started with those trials, pruned by a median pruner that compares its
own trials only, and ending (COMPLETE) any trial whose objective has stalled (`patience`).
The choices and the measurements behind them are in docs/search.md
(benchmarks/search_quality.py against Optuna's TPE + Hyperband, GPSampler, random search and
Ray Tune + ASHA).
"""

from __future__ import annotations

import math
from typing import Literal

from sweeper.spec.stages import Pruner, Stage, Zoom

Search = Literal["frugal", "thorough"]

COARSE_SHARE = 0.4  # of the trials; the rest zoom in
FINE_ZOOM = Zoom(top=0.25, margin=0.15)
# From this many trials a fine trial may stall a quarter of the epochs, not a fifth: at 64 the
# longer patience found better models on five of six data sets and stayed under half of random
# search's epochs; at 24 it did not stay under (docs/search.md, "Patience by budget")
LONG_PATIENCE_TRIALS = 64


def recipe(
    trials: int, epochs: int, seed: int | None = None, search: Search = "frugal"
) -> list[Stage]:
    """The stages for `trials` trials of up to `epochs` epochs each; with `seed`, stage i's
    sampler seed is seed + i (else `study.stage_seed`'s default, its index); `search` picks
    the plan (see the module's docstring)."""
    plan = thorough(trials) if search == "thorough" else frugal(trials, epochs)
    if seed is None:
        return plan
    return [stage.model_copy(update={"seed": seed + i}) for i, stage in enumerate(plan)]


def thorough(trials: int) -> list[Stage]:
    """One stage of Gaussian-process trials, each trained for all its epochs."""
    return [Stage(name="gp", trials=trials, sampler="gp")]


def frugal(trials: int, epochs: int) -> list[Stage]:
    """Coarse to fine. Early epochs rank final ones poorly on hard problems (on five
    interleaved spirals every network is at chance for its first epochs), so the coarse stage's
    first rung is a fifth of the epochs, not one, and the fine stage prunes only after a third
    of them. In the fine region most networks reach their best early and plateau: a fine trial
    ends after a fifth of the epochs without improving, complete, its best epoch kept; from 64
    trials on, after a quarter (`LONG_PATIENCE_TRIALS`)."""
    coarse = max(1, math.ceil(COARSE_SHARE * trials))
    fifth = max(1, math.ceil(epochs / 5))
    asha = Pruner(type="asha", min_epochs=fifth, reduction_factor=3)
    plan = [Stage(name="coarse", trials=coarse, sampler="qmc", pruner=asha)]
    if trials > coarse:
        median = Pruner(type="median", warmup_epochs=math.ceil(epochs / 3))
        plan.append(
            Stage(
                name="fine",
                trials=trials - coarse,
                sampler="tpe",
                pruner=median,
                zoom=FINE_ZOOM,
                patience=math.ceil(epochs / 4) if trials >= LONG_PATIENCE_TRIALS else fifth,
            )
        )
    return plan

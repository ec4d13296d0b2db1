"""The recommended plan for a trial budget: what `budget: {trials: N}` in a space.yaml runs.

The choices and the measurements behind them are in docs/search.md (benchmarks/search_quality.py
against Optuna's TPE + Hyperband, GPSampler, random search and Ray Tune + ASHA).
"""

from __future__ import annotations

import math

from sweeper.spec.stages import Pruner, Stage, Zoom

COARSE_SHARE = 0.4  # of the trials, spread over the whole space
COARSE_PRUNER = Pruner(type="asha", min_epochs=1, reduction_factor=3)
FINE_PRUNER = Pruner(type="asha", min_epochs=2, reduction_factor=3)
FINE_ZOOM = Zoom(top=0.25, margin=0.15)


def recipe(trials: int) -> list[Stage]:
    """A quasi-random coarse stage with ASHA over the whole space, then a TPE stage on the box
    around the coarse stage's best quarter, warm-started with those trials."""
    coarse = max(1, math.ceil(COARSE_SHARE * trials))
    plan = [Stage(name="coarse", trials=coarse, sampler="qmc", pruner=COARSE_PRUNER)]
    if trials > coarse:
        plan.append(
            Stage(
                name="fine",
                trials=trials - coarse,
                sampler="tpe",
                pruner=FINE_PRUNER,
                zoom=FINE_ZOOM,
            )
        )
    return plan

"""Coarse to fine: which trials of a stage were best, the box the next stage samples, and the
warm-start copies of those trials that open it.

With pruning, few coarse trials run to the end: ranking completed trials alone would let one or
two of them, noisy as any single run, decide the whole fine stage. A pruner stops a trial because
its peers at the same epoch did better, so a trial that got further beat those that stopped
earlier: finished trials rank by how far they got (completed first), then by their value (a
pruned trial's is its last reported one).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.spec import scales
from sweeper.spec.schema import Zoom


def rank_finished(
    trials: list[optuna.trial.FrozenTrial], maximize: bool
) -> list[optuna.trial.FrozenTrial]:
    """Completed trials and those a pruner stopped, best first. Diverged and manually pruned
    trials are left out: their last value says nothing good about their region."""

    def key(trial: optuna.trial.FrozenTrial) -> tuple[float, float]:
        reached = math.inf if trial.state == TrialState.COMPLETE else trial.last_step
        return (-reached, -trial.value if maximize else trial.value)

    ranked = [
        t
        for t in trials
        if t.value is not None
        and (
            t.state == TrialState.COMPLETE
            or (t.state == TrialState.PRUNED and t.user_attrs.get("reason", "pruned") == "pruned")
        )
    ]
    return sorted(ranked, key=key)


def zoom_space(
    space: scales.Space,
    trials: list[optuna.trial.FrozenTrial],
    top: float,
    margin: float,
    maximize: bool,
) -> tuple[scales.Space, list[optuna.trial.FrozenTrial]]:
    """The box around the top fraction of finished trials (widened by `margin` of each range in
    scaled coordinates), and those top trials. A per-layer option's range is drawn from the top
    trials that have that layer; where none has it, its range stays as it was."""
    ranked = rank_finished(trials, maximize)
    if not ranked:
        return space, []
    best = ranked[: max(1, math.ceil(top * len(ranked)))]
    values = [scales.decode(space, t.params) for t in best]
    zoomed = {}
    for name, p in space.items():
        having = [v[name] for v in values if name in v]
        zoomed[name] = p.zoom(having, margin) if having else p
    return zoomed, best


def next_stage(
    previous_space: scales.Space,
    trials: list[optuna.trial.FrozenTrial],
    zoom: Zoom,
    maximize: bool,
    source: str,
    copied: set[str],
) -> tuple[scales.Space, list[optuna.trial.FrozenTrial]]:
    """Open a zoomed stage: its box (see `zoom_space`) around the finished `trials` of stage
    `source`, and the warm-start copies of those top trials that lie in the new box, so that TPE
    starts informed. Each copy keeps its state (a pruned one stays pruned: TPE weighs it by how
    far it got) and names its origin (`warm_start_from` = "stage:number"); origins in `copied`
    (a stage opened again on resume) are not copied twice."""
    space, best = zoom_space(previous_space, trials, zoom.top, zoom.margin, maximize)
    warm = []
    for trial in best:
        values = scales.decode(previous_space, trial.params)
        origin = f"{source}:{trial.number}"
        inside = all(p.contains(values[k]) for k, p in space.items() if k in values)
        if origin not in copied and inside:
            distributions = scales.distributions(space)
            params = {  # a top trial on the box's edge may lie one rounding step outside it
                k: _clamp(v, distributions[k]) for k, v in scales.encode(space, values).items()
            }
            warm.append(
                optuna.trial.create_trial(
                    state=trial.state,
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    value=trial.value,
                    intermediate_values=trial.intermediate_values,
                    user_attrs={"warm_start_from": origin},
                )
            )
    return space, warm


def _clamp(value: Any, distribution: optuna.distributions.BaseDistribution) -> Any:
    """`value` inside a float or int distribution's bounds (categoricals as they are)."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value
    return min(max(value, distribution.low), distribution.high)

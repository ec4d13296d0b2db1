"""Coarse to fine: which trials of a stage were best, the box the next stage samples, and the
warm-start copies of those trials that open it.

Which region is best is decided at a common budget. With pruning, trials end after different
numbers of epochs, and Hyperband lets some brackets run to the end unchallenged: ranking the
completed trials first put a completed trial at 0.60 above pruned ones at 0.85 (issue 18), and
ranking by last value compares epoch 1 with epoch 20. So the top trials are compared at the
most epochs that enough of them reached, each by the best value it had reported by then
(`objective.at: best`). The warm-start copies carry that value and no learning curve: the fine
stage's sampler learns from them, its pruner compares fresh trials only (it would otherwise
judge every new trial's epoch 2 against the elite's and stop most of them).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.records import stopped_by_pruner
from sweeper.spec import scales
from sweeper.spec.schema import Zoom


def rankable(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Completed trials and those a pruner stopped. Diverged and manually pruned trials are left
    out (their last value says nothing good about their region), as are warm-start copies (they
    stand for trials of an earlier stage)."""
    return [
        t
        for t in trials
        if t.value is not None
        and "warm_start_from" not in t.user_attrs
        and (t.state == TrialState.COMPLETE or stopped_by_pruner(t))
    ]


def reached(trial: optuna.trial.FrozenTrial) -> float:
    """Epochs a trial reported (a completed trial without a curve: all of them)."""
    return trial.last_step if trial.intermediate_values else math.inf


def value_by(trial: optuna.trial.FrozenTrial, epoch: float, maximize: bool) -> float:
    """The best value `trial` reported up to `epoch` (its value, where it has no curve)."""
    curve = [v for step, v in trial.intermediate_values.items() if step <= epoch]
    if not curve:
        return trial.value
    return max(curve) if maximize else min(curve)


def top_trials(
    trials: list[optuna.trial.FrozenTrial], top: float, maximize: bool
) -> tuple[list[optuna.trial.FrozenTrial], float]:
    """The best `top` fraction (at least one) of the rankable trials, best first, and the common
    budget they were compared at: the most epochs that that many trials reached."""
    ranked = rankable(trials)
    if not ranked:
        return [], 0
    n = max(1, math.ceil(top * len(ranked)))
    common = sorted((reached(t) for t in ranked), reverse=True)[n - 1]
    peers = [t for t in ranked if reached(t) >= common]
    sign = -1 if maximize else 1
    peers.sort(key=lambda t: (sign * value_by(t, common, maximize), t.number))
    return peers[:n], common


def box(space: scales.Space, best: list[optuna.trial.FrozenTrial], margin: float) -> scales.Space:
    """The sub-box of `space` spanning the `best` trials, widened by `margin` of each range. A
    per-layer option's range is drawn from the trials that have that layer; where none has it,
    or there are no trials, its range stays as it was."""
    values = [scales.decode(space, t.params) for t in best]
    zoomed = {}
    for name, p in space.items():
        having = [v[name] for v in values if name in v]
        zoomed[name] = p.zoom(having, margin) if having else p
    return zoomed


def next_stage(
    previous_space: scales.Space,
    trials: list[optuna.trial.FrozenTrial],
    zoom: Zoom,
    maximize: bool,
    source: str,
    copied: set[str],
) -> tuple[scales.Space, list[optuna.trial.FrozenTrial]]:
    """Open a zoomed stage: its box around the top fraction of the finished `trials` of stage
    `source` (see `top_trials`), widened by `zoom.margin` of each range in scaled coordinates,
    and the warm-start copies of those top trials, so that its sampler starts informed. A copy
    is COMPLETE with the value its trial had at the common budget of the ranking and no
    learning curve (pruners see fresh trials only), and names its origin (`warm_start_from` =
    "stage:number"); origins in `copied` (a stage opened again on resume) are not copied
    twice."""
    best, common = top_trials(trials, zoom.top, maximize)
    space = box(previous_space, best, zoom.margin)
    distributions = scales.distributions(space)
    warm = []
    for trial in best:
        origin = f"{source}:{trial.number}"
        if origin in copied:
            continue
        values = scales.decode(previous_space, trial.params)
        params = {  # a top trial on the box's edge may lie one rounding step outside it
            k: _clamp(v, distributions[k]) for k, v in scales.encode(space, values).items()
        }
        warm.append(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                params=params,
                distributions={k: distributions[k] for k in params},
                value=value_by(trial, common, maximize),
                user_attrs={"warm_start_from": origin, "warm_start_epochs": _finite(common)},
            )
        )
    return space, warm


def _clamp(value: Any, distribution: optuna.distributions.BaseDistribution) -> Any:
    """`value` inside a float or int distribution's bounds (categoricals as they are)."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value
    return min(max(value, distribution.low), distribution.high)


def _finite(epochs: float) -> float | None:
    return epochs if math.isfinite(epochs) else None

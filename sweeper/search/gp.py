"""Optuna's GPSampler, taught what the sweeper's PRUNED trials say about their region.

GPSampler models COMPLETE trials only, and the sweeper records two kinds of trial PRUNED:
- a trial its stage's pruner stopped. The process never learns that the region was tried, so it
  keeps proposing it: with a median pruner, 24 trials found 0.556 on the 20 noisy classes of
  benchmarks/search_quality.py where learning from the pruned trials found 0.625 (docs/search.md,
  "GP with a pruner"). Here the process sees such a trial as completed at the best value it
  reported, the model `objective.at: best` would have kept had it ended there: a lower bound
  on what it would have reached, as the zoom ranks it (`zoom.value_by`). Optuna's TPE learns
  from pruned trials too, ranking them by their last reported value.
- a diverged network (`records.decide`: running it again would diverge again). After one at the
  edge of the space the process's data do not change, nor its acquisition optimum: on digits
  (64 trials, seed 0) a plain GPSampler spent 48 trials repeating α = 1, three layers of 128
  units, each diverging in its first epoch. Here it is seen as completed at the worst value
  seen, as SMAC charges a crashed run its `crash_cost`.
A trial stopped by hand (`sweeper prune`) stays out: that says nothing about its region. So
does a pruned or diverged trial without every parameter of the space the process models: that
space is what all COMPLETE trials share (Optuna's intersection search space), and a shallower
network than theirs lacks the deeper layers' options. The 5 start-up trials count the pruned
and diverged trials the process sees.
"""

from __future__ import annotations

import math
from collections.abc import Container, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.records import is_diverged, stopped_by_pruner
from sweeper.search.zoom import value_by


def completed_at(trial: FrozenTrial, value: float) -> FrozenTrial:
    """A COMPLETE trial of `trial`'s parameters at `value` (nothing else of it is kept)."""
    return optuna.trial.create_trial(
        params=trial.params,
        distributions=trial.distributions,
        value=value,
        state=TrialState.COMPLETE,
    )


def as_the_gp_sees_them(
    trials: Sequence[FrozenTrial], maximize: bool, space: Mapping[str, BaseDistribution]
) -> list[FrozenTrial]:
    """`trials` with each one a pruner stopped after reporting COMPLETE at its best reported
    value, then each diverged one COMPLETE at the worst value among those (diverged trials are
    left as they are while no value is known); only trials with every parameter of `space`,
    the one the process models, are rewritten."""

    def modelled(trial: FrozenTrial) -> bool:
        return all(trial.distributions.get(name) == d for name, d in space.items())

    seen = [
        completed_at(t, value_by(t, math.inf, maximize))
        if stopped_by_pruner(t) and t.intermediate_values and modelled(t)
        else t
        for t in trials
    ]
    values = [t.value for t in seen if t.state == TrialState.COMPLETE and t.value is not None]
    if not values:
        return seen
    worst = min(values) if maximize else max(values)
    return [completed_at(t, worst) if is_diverged(t) and modelled(t) else t for t in seen]


class _StudyAsTheGPSeesIt:
    """The study as the sampler's model reads it (`_get_trials`, which GPSampler's
    `sample_relative` calls): everything is the study's own but the trials, which
    `as_the_gp_sees_them` rewrites for the search space `space`."""

    def __init__(self, study: optuna.Study, space: Mapping[str, BaseDistribution]):
        self._study, self._space = study, space

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        every = self._study._get_trials(deepcopy=deepcopy, states=None, use_cache=use_cache)
        maximize = self._study.direction == optuna.study.StudyDirection.MAXIMIZE
        seen = as_the_gp_sees_them(every, maximize, self._space)
        return seen if states is None else [t for t in seen if t.state in states]


class PruningAwareGPSampler(optuna.samplers.GPSampler):
    """GPSampler that models pruned and diverged trials (see the module's docstring)."""

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        seen = _StudyAsTheGPSeesIt(study, search_space)
        return super().sample_relative(seen, trial, search_space)

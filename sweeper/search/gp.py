"""Optuna's GPSampler, taught that a diverged network is a bad configuration.

A trial whose cost blew up is recorded PRUNED (`records.decide`: running it again would diverge
again), and GPSampler models COMPLETE trials only. So after a divergence at the edge of the
space the Gaussian process never learns of it: its acquisition optimum is unchanged and it
proposes the same parameters again, and again. On digits (64 trials, seed 0 of
benchmarks/search_quality.py) a plain GPSampler spent 48 of its 64 trials repeating α = 1, three
layers of 128 units, each diverging in its first epoch. Here the process sees each diverged trial
as a completed one at the worst value completed so far, as SMAC charges a crashed run its
`crash_cost`: it learns the region is bad and moves on. Trials pruned for any other reason are
left out, as before (a pruned trial's value is a short curve's, not a verdict on its region).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.records import Outcome


def is_diverged(trial: FrozenTrial) -> bool:
    """Pruned because its cost blew up (the StudyServer tags the reason, `records.decide`)."""
    reason = trial.user_attrs.get("reason")
    return trial.state == TrialState.PRUNED and reason == Outcome.DIVERGED.value


def diverged_as_worst(trials: Sequence[FrozenTrial], maximize: bool) -> list[FrozenTrial]:
    """`trials` with each diverged one replaced by a COMPLETE trial of the same parameters at the
    worst value among the COMPLETE ones (left as they are while none is complete)."""
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not values:
        return list(trials)
    worst = min(values) if maximize else max(values)
    return [
        optuna.trial.create_trial(
            params=t.params, distributions=t.distributions, value=worst, state=TrialState.COMPLETE
        )
        if is_diverged(t)
        else t
        for t in trials
    ]


class _StudyWithDivergedAsWorst:
    """The study as the sampler reads it (`_get_trials`, which GPSampler calls): everything is
    the study's own but the trials, which `diverged_as_worst` rewrites."""

    def __init__(self, study: optuna.Study):
        self._study = study

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
        seen = diverged_as_worst(every, maximize)
        return seen if states is None else [t for t in seen if t.state in states]


class DivergenceAwareGPSampler(optuna.samplers.GPSampler):
    """GPSampler that models each diverged trial at the worst completed value."""

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return super().sample_relative(_StudyWithDivergedAsWorst(study), trial, search_space)

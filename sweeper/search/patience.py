"""A stage's `patience`: a trial whose objective has stopped improving ends, COMPLETE.

Early stopping on the objective, decided where the pruner is (the StudyServer, and the
benchmark's in-process stages). Unlike a pruned trial, a stalled one is complete: with
`objective.at: best` its kept model is its best epoch's, which may be the sweep's best (on flower
most good networks reach their best dev accuracy within a few epochs and then plateau, so a
pruner would throw the best models away and a full run wastes the epochs). The trainer's own
`early_stopping` watches dev_loss instead, which on wide, weakly informative data rises while
the accuracy still improves (docs/search.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna

STALLED = "stalled"  # the reason tag of a trial that patience stopped


@dataclass
class Patience:
    """Counts a trial's epochs since its objective last improved on its best so far."""

    epochs: int  # stop after this many epochs without improvement
    maximize: bool
    best: float = math.nan
    stale: int = 0

    def stalled(self, value: float) -> bool:
        """Record one epoch's value; True once `epochs` epochs in a row have not improved.
        A value that is not finite (no dev metric this epoch) counts as no improvement."""
        better = math.isfinite(value) and (
            math.isnan(self.best) or (value > self.best if self.maximize else value < self.best)
        )
        if better:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return self.stale >= self.epochs


def stops_now(
    trial: optuna.Trial, epoch: int, value: float, patience: Patience | None, manual: bool
) -> bool:
    """Report an epoch's objective `value` to Optuna and say whether the trial stops now: by
    hand (`sweeper prune`), stalled (`patience`), or by its stage's pruner. The first two are
    tagged on the trial (`reason`), which `records.decide` reads when it ends. The StudyServer
    and the benchmark's in-process stages both decide here."""
    if math.isfinite(value):
        trial.report(value, step=epoch)
    if manual:
        trial.set_user_attr("reason", "manual")
        return True
    if patience is not None and patience.stalled(value):
        trial.set_user_attr("reason", STALLED)
        return True
    return trial.should_prune()

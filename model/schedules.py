"""Learning-rate decay: α as a pure function of α0 and the epoch number, counted as the notes do.

The notes (course 2, week II, "Learning Rate Decay": /work/shared/seeds/000_….txt line 326,
001_….txt lines 1087–1102) give one formula, α = α0 / (1 + decay_rate·epoch_num), with epochs
numbered from 1 and decayed from the first: α0 = 0.2, decay_rate = 1 gives α = 0.1, 0.067,
0.05, 0.04 for epochs 1–4 (the notes' table prints 0.67 for 0.067). The other schedules are the
lecture's "other learning rate decay methods" and the optimization assignment's, not the notes':

    inverse_time:  α0 / (1 + decay_rate·epoch)              the notes (decay_rate 0: constant)
    exponential:   α0 · base^epoch                          the lecture's 0.95^epoch_num·α0
    step:          α0 · base^⌊epoch/interval⌋               the lecture's discrete staircase
    staircase:     α0 / (1 + decay_rate·⌊epoch/interval⌋)   the optimization assignment's
                                                            schedule_lr_decay (time_interval)
    inverse_sqrt:  α0 / √epoch                              the lecture's k/√epoch_num·α0, k in α0

Each schedule reads only its own arguments (ARGUMENTS); a trainer option for another one is
refused rather than ignored (TrainConfig).
"""

from __future__ import annotations

import math

# The arguments of learning_rate each schedule reads.
ARGUMENTS: dict[str, tuple[str, ...]] = {
    "inverse_time": ("decay_rate",),
    "exponential": ("base",),
    "step": ("base", "interval"),
    "staircase": ("decay_rate", "interval"),
    "inverse_sqrt": (),
}
SCHEDULES = tuple(ARGUMENTS)


def learning_rate(
    alpha0: float,
    epoch: int,
    decay_rate: float = 0.0,
    schedule: str = "inverse_time",
    interval: int = 10,
    base: float = 0.95,
) -> float:
    """α for `epoch` (1, 2, …); `base` in (0, 1] so that α can never become 0."""
    if epoch < 1:
        raise ValueError(f"epochs are numbered from 1: {epoch=}")
    if not 0.0 < base <= 1.0:
        raise ValueError(f"the decay base must be in (0, 1]: {base=}")
    if schedule == "inverse_time":
        return alpha0 / (1.0 + decay_rate * epoch)
    if schedule == "exponential":
        return alpha0 * base**epoch
    if schedule == "step":
        return alpha0 * base ** (epoch // interval)
    if schedule == "staircase":
        return alpha0 / (1.0 + decay_rate * (epoch // interval))
    if schedule == "inverse_sqrt":
        return alpha0 / math.sqrt(epoch)
    raise ValueError(f"unknown {schedule=}; choose one of {SCHEDULES}")

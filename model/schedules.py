"""Learning-rate decay: α as a pure function of α0 and the epoch number (0-based)."""

from __future__ import annotations

SCHEDULES = ("inverse_time", "exponential", "step")


def learning_rate(
    alpha0: float,
    epoch: int,
    decay_rate: float = 0.0,
    schedule: str = "inverse_time",
    step_size: int = 10,
) -> float:
    """α for `epoch`.

    inverse_time: α0 / (1 + decay_rate·epoch)      (the notes' formula; decay_rate=0 → constant)
    exponential:  α0 · decay_rate^epoch            (e.g. 0.95^epoch)
    step:         α0 · decay_rate^⌊epoch/step_size⌋ (discrete staircase)
    """
    if schedule == "inverse_time":
        return alpha0 / (1.0 + decay_rate * epoch)
    if schedule == "exponential":
        return alpha0 * decay_rate**epoch
    if schedule == "step":
        return alpha0 * decay_rate ** (epoch // step_size)
    raise ValueError(f"unknown {schedule=}; choose one of {SCHEDULES}")

"""`budget.hours`: when a launch (or resume) stops starting trials.

The time is shared among the stages still to run by their trials still to start, and a stage's
share ends at `stage_end`; time a stage leaves unused goes to the next ones. Trials running when
a stage's share ends finish (so no trial is cut short and every count stays exact), the stage
closes with fewer trials than planned, the later stages do not open, and the best model found so
far is registered as usual. `sweeper resume` runs the trials left, with `hours` more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    end: float  # on time.monotonic()'s clock

    @classmethod
    def after(cls, hours: float) -> Deadline:
        return cls(time.monotonic() + 3600 * hours)

    def stage_end(self, stage_trials_left: int, trials_left: int) -> float:
        """When the stage with `stage_trials_left` of the sweep's `trials_left` trials (to
        start, this and the later stages) must stop starting them: its share of the time left."""
        now = time.monotonic()
        return now + max(0.0, self.end - now) * stage_trials_left / max(1, trials_left)

    def passed(self) -> bool:
        return time.monotonic() >= self.end

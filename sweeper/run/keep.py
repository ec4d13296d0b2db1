"""Which trials keep their trained model: a pure decision over a stage's completed values.

A stage keeps the models of its `keep` best completed trials (ties go to the earlier trial), so
the sweep's best trial always has one and disk use is bounded by `keep` models per stage; a
model pushed out of the top is deleted. `all` keeps every completed trial's model.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class KeptModels:
    """One stage's completed values and the trials whose models are kept."""

    keep: int | Literal["all"]
    maximize: bool
    values: dict[int, float] = field(default_factory=dict)  # trial number → objective value
    kept: set[int] = field(default_factory=set)

    def top(self) -> set[int]:
        if self.keep == "all":
            return set(self.values)
        sign = 1 if self.maximize else -1
        best = heapq.nlargest(self.keep, self.values, key=lambda n: (sign * self.values[n], -n))
        return set(best)

    def offer(self, number: int, value: float) -> tuple[bool, set[int]]:
        """Record a completed trial: (keep its model?, the trials whose models go now)."""
        self.values[number] = value
        top = self.top()
        dropped = self.kept - top
        self.kept = top
        return number in top, dropped

"""Requests from a second terminal to a running sweep, through a file in the sweep's folder.

`sweeper prune` appends a line; the StudyServer (which runs on the driver's node, beside the
folder) reads the file again whenever its modification time changes, so a check costs one
`stat` per reported epoch. A file needs no Ray connection, address or token from the second
terminal, and the request survives a driver restart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PRUNE_REQUESTS = "prune-requests.jsonl"


def request_prune(sweep_dir: Path, stage: str, number: int) -> None:
    """Ask the running sweep to stop trial `number` of `stage` at its next epoch."""
    with open(sweep_dir / PRUNE_REQUESTS, "a") as requests:
        requests.write(json.dumps({"stage": stage, "trial": number}) + "\n")


class PruneRequests:
    """The set of (stage, trial number) pairs asked to stop, re-read when the file changes."""

    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / PRUNE_REQUESTS
        self.seen: tuple[int, int] | None = None
        self.requested: set[tuple[str, int]] = set()

    def __contains__(self, key: tuple[str, int]) -> bool:
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return False
        if (status.st_mtime_ns, status.st_size) != self.seen:
            self.seen = (status.st_mtime_ns, status.st_size)
            lines = self.path.read_text().splitlines()
            self.requested = {
                (r["stage"], r["trial"]) for r in map(json.loads, filter(None, lines))
            }
        return key in self.requested

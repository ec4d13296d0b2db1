"""Ray: connecting, the trial task's resources, and the driver loop that keeps trials in flight."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import NodeDiedError, ObjectLostError, OwnerDiedError, WorkerCrashedError

import model
import sweeper
from sweeper.errors import UserError
from sweeper.records import Outcome, TrialResult, count_key
from sweeper.run.trial import train_trial
from sweeper.spec.schema import Objective, Resources

LOST = (WorkerCrashedError, NodeDiedError, ObjectLostError, OwnerDiedError)


def start_ray(address: str | None) -> None:
    """Connect to `address` / RAY_ADDRESS, or start a local Ray instance for this process,
    listening on 127.0.0.1 only."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # the two packages' folders, wherever this module sits inside them
    runtime_env = (
        {"py_modules": [os.path.dirname(model.__file__), os.path.dirname(sweeper.__file__)]}
        if address
        else None
    )
    local = {} if address else {"address": "local", "_node_ip_address": "127.0.0.1"}
    ray.init(
        # no address: a new Ray of our own, on loopback (never some other cluster found on
        # this machine, which `ray.init()` would join)
        **({"address": address} if address else local),
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env=runtime_env,
    )
    if not address:
        make_token_private()


def make_token_private() -> None:
    """Ray's token file (its auth token mode) readable by the user alone: Ray writes it 0644."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if path.is_file() and path.stat().st_uid == os.getuid():
        path.chmod(0o600)
        if path.parent.name == ".ray":
            path.parent.chmod(0o700)


def concurrency(resources: Resources) -> int:
    """`auto` = the cluster's CPUs / cpus_per_trial (or GPUs / gpus_per_trial when on GPU).
    GPU trials on a cluster without GPUs would wait forever: that is a UserError."""
    total = ray.cluster_resources()
    if resources.gpus_per_trial and not total.get("GPU"):
        raise UserError(
            f"resources.gpus_per_trial is {resources.gpus_per_trial} but the Ray cluster has no "
            "GPU: set it to 0 to train on CPUs, or add GPU nodes"
        )
    if resources.concurrency != "auto":
        return resources.concurrency
    slots = total.get("CPU", 1) / resources.cpus_per_trial
    if resources.gpus_per_trial:
        slots = min(slots, total["GPU"] / resources.gpus_per_trial)
    return max(1, int(slots))


@dataclass
class StageProgress:
    """What the driver loop tells its observer after each finished trial."""

    stage: str
    target: int
    counts: dict[str, int]
    running: int = 0
    best: float | None = None
    last: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageRun:
    """One stage's trials, kept `width` in flight until `target` of them are finished.

    A task lost with its worker or node is told FAIL (reason=lost) and its params run again,
    up to `max_retries` times per configuration. Ctrl-C cancels the tasks in flight.
    """

    server: Any
    index: int
    fixed: dict[str, Any]
    dataset_ref: Any
    objective: Objective
    maximize: bool
    resources: Resources
    progress: StageProgress
    on_progress: Callable[[StageProgress], None] | None = None
    in_flight: dict[Any, tuple[int, dict[str, Any], int]] = field(default_factory=dict)
    retry: list[tuple[int, int]] = field(default_factory=list)  # (trial number, attempt)

    def run(self) -> StageProgress:
        task = ray.remote(train_trial).options(
            num_cpus=self.resources.cpus_per_trial,
            num_gpus=self.resources.gpus_per_trial,
            max_retries=0,
        )
        width = concurrency(self.resources)
        try:
            while self._unfinished() > 0 or self.in_flight:
                while len(self.in_flight) < width and self._unfinished() > len(self.in_flight):
                    self._launch(task, *(self.retry.pop() if self.retry else (None, 0)))
                self.progress.running = len(self.in_flight)
                done, _ = ray.wait(list(self.in_flight), num_returns=1)
                self._record(done[0])
        except KeyboardInterrupt:
            for ref in self.in_flight:
                ray.cancel(ref, force=True)
            raise
        return self.progress

    def _unfinished(self) -> int:
        counts = self.progress.counts
        return self.progress.target - counts["complete"] - counts["pruned"]

    def _launch(self, task: Any, retry_of: int | None, attempt: int) -> None:
        if retry_of is not None:
            ray.get(self.server.retry.remote(self.index, retry_of))
        number, trial_params = ray.get(self.server.ask.remote(self.index))
        backend = "cupy" if self.resources.gpus_per_trial else "numpy"
        options = {**self.fixed, **trial_params}
        ref = task.remote(
            self.index, number, options, self.dataset_ref, self.server, self.objective, backend
        )
        self.in_flight[ref] = (number, trial_params, attempt)

    def _record(self, ref: Any) -> None:
        number, params, attempt = self.in_flight.pop(ref)
        try:
            result: TrialResult = ray.get(ref)
        except LOST as error:
            result = TrialResult(Outcome.LOST, error=type(error).__name__)
            if attempt < self.resources.max_retries:
                self.retry.append((number, attempt + 1))
        state = ray.get(self.server.tell.remote(self.index, number, result))
        progress = self.progress
        progress.counts[count_key(state)] += 1
        value = result.metrics.get(self.objective.metric)
        if state == "COMPLETE" and value is not None and self._improves(value):
            progress.best = value
        progress.last = {"number": number, "state": state, "params": params}
        progress.running = len(self.in_flight)
        if self.on_progress is not None:
            self.on_progress(progress)
        if result.outcome is Outcome.ERROR:
            self._check_failures(result.error or "")

    def _improves(self, value: float) -> bool:
        best = self.progress.best
        return best is None or (value > best if self.maximize else value < best)

    def _check_failures(self, error: str) -> None:
        failures = self.progress.counts["failed"]
        if failures > max(3, self.progress.target // 2):
            raise RuntimeError(
                f"stage {self.progress.stage}: {failures} trials failed; last error:\n{error}"
            )

"""Ray: connecting, the trial task's resources, and the driver loop that keeps trials in flight."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import NodeDiedError, ObjectLostError, OwnerDiedError, WorkerCrashedError

import model
import sweeper
from model.config import TrainConfig
from sweeper.errors import UserError
from sweeper.records import Outcome, StageProgress, TrialResult, count_key
from sweeper.run.packing import (
    balanced,
    before_a_deadline,
    members_per_task,
    shapes_the_pack,
)
from sweeper.run.trial import train_trials
from sweeper.spec.schema import Objective, Resources

LOST = (WorkerCrashedError, NodeDiedError, ObjectLostError, OwnerDiedError)


def start_ray(address: str | None) -> bool:
    """Connect to `address` / RAY_ADDRESS, or start a local Ray instance for this process,
    listening on 127.0.0.1 only; True when it started one."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address.startswith("ray://"):  # failed at the first task, a folder made
        raise UserError(
            f"Ray cluster at {address}: Ray Client (ray://) cannot run the sweeper's trial tasks, "
            "which stream each trial's result as it ends; give the head's GCS address "
            "(HEAD:6379) from a machine in the cluster, or submit the launch as a Ray job "
            "(`ray job submit -- sweeper launch space.yaml`)"
        )
    # the two packages' folders, wherever this module sits inside them
    runtime_env = (
        {"py_modules": [os.path.dirname(model.__file__), os.path.dirname(sweeper.__file__)]}
        if address
        else None
    )
    local = {} if address else {"address": "local", "_node_ip_address": "127.0.0.1"}
    try:
        ray.init(
            # no address: a new Ray of our own, on loopback (never some other cluster found on
            # this machine, which `ray.init()` would join)
            **({"address": address} if address else local),
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env=runtime_env,
        )
    except (ValueError, ConnectionError) as error:  # a malformed or unreachable address
        if not address:
            raise
        raise UserError(f"Ray cluster at {address}: {error}") from None
    if not address:
        make_token_private()
    return not address


def check_fits_this_machine(resources: Resources) -> None:
    """On a Ray of this machine alone, a trial that needs more CPUs than it has would wait
    forever (a cluster's autoscaler may yet add a node that has them: there it waits)."""
    cpus = ray.cluster_resources().get("CPU", 0.0)
    if resources.cpus_per_trial > cpus:
        raise UserError(
            f"resources.cpus_per_trial is {resources.cpus_per_trial:g} but this machine has "
            f"{cpus:g} CPUs: lower it, or launch on a cluster (--address)"
        )


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


@dataclass(frozen=True)
class Member:
    """One trial of a task in flight: its number, params and how many times it was lost before."""

    number: int
    params: dict[str, Any]
    attempt: int = 0


@dataclass
class StageRun:
    """One stage's trials, kept `width` tasks in flight until `target` of them are finished.

    A task trains a pack of up to `resources.pack` trials of one structure (see
    sweeper/run/packing.py), each its own Optuna trial: the task yields each trial's result as
    it ends, and it is told at once. A task lost with its worker or node is told FAIL
    (reason=lost) for each member not yet told, and their params run again (together, as one
    pack), up to `max_retries` times per configuration. Ctrl-C cancels the tasks in flight.
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
    data_shape: tuple[int, int | None] = (1, None)  # (n_x, n_classes): what `pack: auto` sizes
    stop_starting_at: float | None = None  # time.monotonic() after which no trial starts
    in_flight: dict[Any, dict[int, Member]] = field(default_factory=dict)  # task → untold
    retry: list[list[Member]] = field(default_factory=list)  # lost packs, their next attempts
    # FAILs of this launch that would fail again (the stage's count also holds lost and
    # interrupted trials, which are retried: after a Ctrl-C of 12 trials, one error ended it)
    failures: int = 0

    def run(self) -> StageProgress:
        task = ray.remote(train_trials).options(
            num_cpus=self.resources.cpus_per_trial,
            num_gpus=self.resources.gpus_per_trial,
            max_retries=0,
            num_returns="streaming",
        )
        width = concurrency(self.resources)
        if self.on_progress is not None:  # the stage as opened: a resumed or finished one too
            self.on_progress(self.progress)
        try:
            while self._may_start() or self.in_flight:
                while len(self.in_flight) < width and self._may_start():
                    self._launch(task, width)
                if not self.in_flight:  # out of time with nothing running
                    break
                running = self._running()
                if running != self.progress.running:  # trials started: said at once, not
                    self.progress.running = running  # when the next one ends
                    if self.on_progress is not None:
                        self.on_progress(self.progress)
                ready, _ = ray.wait(list(self.in_flight), num_returns=1)
                self._record(ready[0])
                if not self._may_start():  # out of time: queued now, a kill -9 cannot lose them
                    self._queue_retries()
        except KeyboardInterrupt:
            for ref in self.in_flight:
                ray.cancel(ref, force=True)
            self._queue_retries()
            raise
        self._queue_retries()
        return self.progress

    def _queue_retries(self) -> None:
        """Lost members this launch did not run again (its time ran out, or Ctrl-C): their
        exact params wait in Optuna's queue, which `sweeper resume` asks first (kept only here,
        they were dropped, though `status` counted them as to run again)."""
        for lost in self.retry:
            for member in lost:
                ray.get(self.server.retry.remote(self.index, member.number))
        self.retry.clear()

    def _unfinished(self) -> int:
        return self.progress.target - self.progress.finished

    def _may_start(self) -> bool:
        """Trials remain to start (beyond those running), and there is time to start them."""
        if self.stop_starting_at is not None and time.monotonic() >= self.stop_starting_at:
            return False
        return self._unfinished() > self._running()

    def _running(self) -> int:
        return sum(len(members) for members in self.in_flight.values())

    def _launch(self, task: Any, width: int) -> None:
        open_trials = self._unfinished() - self._running()
        if self.retry:
            lost = self.retry.pop()
            members, rest = lost[:open_trials], lost[open_trials:]
            if rest:
                self.retry.append(rest)
            members = [self._ask_again(member) for member in members]
        else:
            number, params = ray.get(self.server.ask.remote(self.index))
            size = balanced(self._pack_size(params), open_trials, width - len(self.in_flight))
            if self.stop_starting_at is not None:
                size = before_a_deadline(size, open_trials, width)
            followers = ray.get(self.server.ask_like.remote(self.index, number, size - 1))
            members = [Member(number, params)] + [Member(n, p) for n, p in followers]
        backend = "cupy" if self.resources.gpus_per_trial else "numpy"
        ref = task.remote(
            self.index,
            [member.number for member in members],
            [{**self.fixed, **member.params} for member in members],
            self.dataset_ref,
            self.server,
            self.objective,
            backend,
        )
        self.in_flight[ref] = {member.number: member for member in members}

    def _ask_again(self, lost: Member) -> Member:
        """A new trial that runs the lost trial's exact params (`StudyServer.retry`)."""
        ray.get(self.server.retry.remote(self.index, lost.number))
        number, params = ray.get(self.server.ask.remote(self.index))
        return Member(number, params, lost.attempt + 1)

    def _pack_size(self, params: dict[str, Any]) -> int:
        if self.resources.pack == 1:
            return 1
        try:
            config = TrainConfig.from_dict({**self.fixed, **params})
        except ValueError:  # the task records the refused option as its trial's error
            return 1
        searched = any(shapes_the_pack(name) for name in params)  # its followers would share it
        return members_per_task(self.resources.pack, config, *self.data_shape, searched)

    def _record(self, task: Any) -> None:
        """Tell the next trial the task yielded; all it had left, if its worker was lost."""
        members = self.in_flight[task]
        try:
            number, result = ray.get(next(task))
        except StopIteration:  # ended without a result for some member: a bug, recorded as such
            del self.in_flight[task]
            for member in members.values():
                self._tell(member, TrialResult(Outcome.ERROR, error="its task yielded no result"))
            return
        except LOST as error:
            del self.in_flight[task]
            lost = list(members.values())
            for member in lost:
                self._tell(member, TrialResult(Outcome.LOST, error=type(error).__name__))
            again = [m for m in lost if m.attempt < self.resources.max_retries]
            if again:
                self.retry.append(again)
            return
        member = members.pop(number)
        if not members:
            del self.in_flight[task]
        self._tell(member, result)

    def _tell(self, member: Member, result: TrialResult) -> None:
        state = ray.get(self.server.tell.remote(self.index, member.number, result))
        progress = self.progress
        progress.counts[count_key(state)] += 1
        progress.run_again += (  # retried: its retries not spent (see `_record`)
            state == "FAIL"
            and result.outcome is Outcome.LOST
            and member.attempt < self.resources.max_retries
        )
        value = result.metrics.get(self.objective.metric)
        if state == "COMPLETE" and value is not None and self._improves(value):
            progress.best = value
        progress.running = self._running()
        if self.on_progress is not None:
            self.on_progress(progress)
        if state == "FAIL" and result.outcome is not Outcome.LOST:  # it would fail again
            self._check_failures(result.error or f"no finite {self.objective.metric}")

    def _improves(self, value: float) -> bool:
        best = self.progress.best
        return best is None or (value > best if self.maximize else value < best)

    def _check_failures(self, error: str) -> None:
        self.failures += 1
        if self.failures > max(3, self.progress.target // 2):
            raise RuntimeError(
                f"stage {self.progress.stage}: {self.failures} trials failed; last error:\n{error}"
            )

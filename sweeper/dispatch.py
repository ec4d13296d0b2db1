"""Ray: connecting, the trial task's resources, and the driver loop that keeps trials in flight."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import (
    NodeDiedError,
    ObjectLostError,
    OwnerDiedError,
    RayActorError,
    WorkerCrashedError,
)

from sweeper.spec import Resources
from sweeper.trial import train_trial

LOST = (WorkerCrashedError, NodeDiedError, ObjectLostError, OwnerDiedError)


def start_ray(address: str | None) -> None:
    """Connect to `address` / RAY_ADDRESS, or start a local Ray instance for this process."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    project_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runtime_env = (
        {"py_modules": [os.path.join(project_root, "model"), os.path.join(project_root, "sweeper")]}
        if address
        else None
    )
    ray.init(
        address=address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env=runtime_env,
    )


def concurrency(resources: Resources) -> int:
    """`auto` = the cluster's CPUs / cpus_per_trial (or GPUs / gpus_per_trial when on GPU)."""
    if resources.concurrency != "auto":
        return resources.concurrency
    total = ray.cluster_resources()
    slots = total.get("CPU", 1) / resources.cpus_per_trial
    if resources.gpus_per_trial:
        slots = min(slots, total.get("GPU", 0) / resources.gpus_per_trial)
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


def run_stage(
    server: Any,
    index: int,
    stage_name: str,
    target: int,
    counts: dict[str, int],
    fixed: dict[str, Any],
    dataset_ref: Any,
    objective: str,
    maximize: bool,
    resources: Resources,
    on_progress: Callable[[StageProgress], None] | None = None,
) -> StageProgress:
    """Run trials of one stage until `target` of them are finished (complete or pruned).

    Keeps `concurrency` tasks in flight. A task lost with its worker or node is told FAIL
    (reason=lost) and its params run again, up to `max_retries` times per configuration.
    """
    backend = "cupy" if resources.gpus_per_trial else "numpy"
    task = ray.remote(train_trial).options(
        num_cpus=resources.cpus_per_trial,
        num_gpus=resources.gpus_per_trial,
        max_retries=0,
    )
    width = concurrency(resources)
    progress = StageProgress(stage_name, target, dict(counts))
    in_flight: dict[Any, tuple[int, dict[str, Any], int]] = {}
    retry: list[tuple[dict[str, Any], int]] = []

    def finished() -> int:
        return progress.counts["complete"] + progress.counts["pruned"]

    def launch(params: dict[str, Any] | None = None, attempt: int = 0) -> None:
        if params is not None:
            ray.get(server.enqueue.remote(index, params))
        number, trial_params = ray.get(server.ask.remote(index))
        ref = task.remote(
            index, number, {**fixed, **trial_params}, dataset_ref, server, objective, backend
        )
        in_flight[ref] = (number, trial_params, attempt)

    while finished() + len(in_flight) < target or in_flight:
        while len(in_flight) < width and finished() + len(in_flight) < target:
            launch(*retry.pop()) if retry else launch()
        progress.running = len(in_flight)
        done, _ = ray.wait(list(in_flight), num_returns=1)
        number, params, attempt = in_flight.pop(done[0])
        try:
            result = ray.get(done[0])
        except LOST as error:
            result = {
                "outcome": "lost",
                "history": [],
                "final": {},
                "node_id": "",
                "error": f"lost: {type(error).__name__}",
            }
            if attempt < resources.max_retries:
                retry.append((params, attempt + 1))
        except RayActorError:
            raise
        state = ray.get(
            server.tell.remote(
                index,
                number,
                result["outcome"],
                result["history"],
                result["final"],
                result["node_id"],
                result["error"],
            )
        )
        key = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[state]
        progress.counts[key] += 1
        value = result["final"].get(objective)
        if (
            state == "COMPLETE"
            and value is not None
            and (
                progress.best is None
                or (value > progress.best if maximize else value < progress.best)
            )
        ):
            progress.best = value
        progress.last = {"number": number, "state": state, "params": params}
        progress.running = len(in_flight)
        if on_progress is not None:
            on_progress(progress)
        if state == "FAIL" and result["error"] and not result["error"].startswith("lost"):
            failures = progress.counts["failed"]
            if failures > max(3, target // 2):
                raise RuntimeError(
                    f"stage {stage_name}: {failures} trials failed; last error:\n{result['error']}"
                )
    return progress

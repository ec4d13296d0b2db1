"""The trial task: train one configuration, or a pack of them, on a worker; each trial reports
each epoch to the server.

Runs inside a Ray worker; BLAS gets as many threads as the task has CPUs (one by default), so N
cores train N models at full speed. It receives the dataset from the object store and never
opens a storage. The training itself is `sweeper.run.fit`'s.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterator
from typing import Any

import ray
from threadpoolctl import threadpool_limits

from sweeper.data.datasets import Dataset
from sweeper.records import Outcome, TrialResult
from sweeper.run.fit import fit, fit_pack, kept_network
from sweeper.spec.schema import Objective


def train_trials(
    index: int,
    numbers: list[int],
    options: list[dict[str, Any]],
    dataset: Dataset,
    server: Any,
    objective: Objective,
    backend_name: str,
) -> Iterator[tuple[int, TrialResult]]:
    """Train trials `numbers` of stage `index` (one alone, several as a pack), each reporting
    its metrics after every epoch and stopped on its own when the server says so. A Ray
    generator task: yields (number, what `StudyServer.tell` needs) as each trial ends, so that
    the driver records a pruned or finished member while the others train on."""
    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    _pin_blas(max(1, int(context.get_assigned_resources().get("CPU", 1))))

    def report(epoch: int, training: dict[int, dict[str, float]]) -> list[int]:
        """Every member's epoch in one round trip (they are many and the server is one)."""
        members = list(training)
        reports = [(numbers[k], epoch, training[k]) for k in members]
        stops = ray.get(server.report_pack.remote(index, reports))
        return [k for k, stop in zip(members, stops, strict=True) if stop]

    def alone(epoch: int, metrics: dict[str, float]) -> bool:
        return bool(report(epoch, {0: metrics}))

    ended: set[int] = set()
    try:
        kept = kept_network(objective)
        if len(numbers) == 1:  # a pack of one is slower than the lone trainer (benchmark)
            results = iter([(0, fit(options[0], dataset, alone, backend_name, kept))])
        else:
            results = fit_pack(options, dataset, report, backend_name, kept)
        for k, result in results:
            ended.add(k)
            yield numbers[k], dataclasses.replace(result, node_id=node_id)
    except Exception:  # a bug or bad option is recorded as FAIL, not a crashed sweep
        error = traceback.format_exc()
        for k, number in enumerate(numbers):
            if k not in ended:
                yield number, TrialResult(Outcome.ERROR, node_id=node_id, error=error)


_blas_threads = 0  # what this worker process's BLAS is limited to; 0 = not yet


def _pin_blas(threads: int) -> None:
    """Limit BLAS threads once per worker process, not per trial (threadpoolctl takes ~2 ms)."""
    global _blas_threads
    if threads != _blas_threads:
        threadpool_limits(limits=threads)
        _blas_threads = threads

"""The trial task: train one configuration on a worker and report each epoch to the server.

Runs inside a Ray worker; BLAS gets as many threads as the task has CPUs (one by default), so N
cores train N models at full speed. It receives the dataset from the object store and never
opens a storage.
"""

from __future__ import annotations

import dataclasses
import traceback
from typing import Any

import ray
from threadpoolctl import threadpool_limits

from model import KeepBest, TrainConfig, evaluate, get_backend, train
from model.checkpoint import Checkpoint
from model.train import EpochCallback
from sweeper.data.datasets import Dataset
from sweeper.records import Outcome, TrialResult
from sweeper.spec.schema import Objective


def fit(
    options: dict[str, Any],
    dataset: Dataset,
    callback: EpochCallback | None,
    backend_name: str,
    keep_best: KeepBest | None = None,
) -> TrialResult:
    """Train one configuration; its outcome, per-epoch history and final metrics: dev/test
    of the returned network (the best epoch's with `keep_best`, see `kept_network`), and
    train_* of the epoch it comes from."""
    d = dataset
    result = train(
        TrainConfig.from_dict(options),
        d.X_train,
        d.y_train,
        d.X_dev,
        d.y_dev,
        d.n_classes,
        callback,
        get_backend(backend_name),
        keep_best=keep_best,
    )
    metrics: dict[str, float] = {}
    outcome = Outcome(result.outcome.value)
    ran_to_end = outcome in (Outcome.COMPLETED, Outcome.EARLY_STOPPED)
    if outcome is not Outcome.DIVERGED:
        for split, X, y in (("dev", d.X_dev, d.y_dev), ("test", d.X_test, d.y_test)):
            if X.shape[1]:  # split.test: 0 leaves no test set, and so no test metrics
                evaluated = evaluate(result.network, X, y)
                metrics.update({f"{split}_{k}": v for k, v in evaluated.items()})
        metrics.update({k: v for k, v in result.kept.items() if k.startswith("train_")})
    # the network goes back as arrays (kept ones are written by the StudyServer, never here)
    checkpoint = Checkpoint.of(result.network) if ran_to_end else None
    return TrialResult(outcome, result.history, metrics, checkpoint=checkpoint)


def kept_network(objective: Objective) -> KeepBest | None:
    """`at: best` keeps the epoch best by the objective's metric, and so its value is that
    epoch's (Keras: ModelCheckpoint(save_best_only=True); Ray Tune: the best checkpoint by
    `checkpoint_score_attribute`); `at: last` keeps the last epoch's (after early stopping,
    the lowest dev_loss epoch's, as Keras's EarlyStopping(restore_best_weights=True))."""
    if objective.at == "last":
        return None
    return KeepBest(objective.metric, objective.direction == "maximize")


def train_trial(
    index: int,
    number: int,
    options: dict[str, Any],
    dataset: Dataset,
    server: Any,
    objective: Objective,
    backend_name: str,
) -> TrialResult:
    """Train, reporting the objective's metric after each epoch (the pruner sees every epoch);
    return what `StudyServer.tell` needs, for the model `objective.at` keeps."""
    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    _pin_blas(max(1, int(context.get_assigned_resources().get("CPU", 1))))

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        value = metrics.get(objective.metric, float("nan"))
        return ray.get(server.report.remote(index, number, epoch, value))

    try:
        result = fit(options, dataset, report, backend_name, kept_network(objective))
        return dataclasses.replace(result, node_id=node_id)
    except Exception:  # a bug or bad option in one trial is recorded as FAIL, not a crashed sweep
        return TrialResult(Outcome.ERROR, node_id=node_id, error=traceback.format_exc())


_blas_threads = 0  # what this worker process's BLAS is limited to; 0 = not yet


def _pin_blas(threads: int) -> None:
    """Limit BLAS threads once per worker process, not per trial (threadpoolctl takes ~2 ms)."""
    global _blas_threads
    if threads != _blas_threads:
        threadpool_limits(limits=threads)
        _blas_threads = threads

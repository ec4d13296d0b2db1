"""The trial task: train one configuration, or a pack of them, on a worker; each trial reports
each epoch to the server.

Runs inside a Ray worker; BLAS gets as many threads as the task has CPUs (one by default), so N
cores train N models at full speed. It receives the dataset from the object store and never
opens a storage.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterator
from typing import Any

import ray
from threadpoolctl import threadpool_limits

from model import KeepBest, TrainConfig, evaluate, get_backend, train
from model.checkpoint import Checkpoint
from model.stacked import PackCallback, each_trained, pack_key
from model.train import CheckpointCallback, EpochCallback, TrainResult
from sweeper.data.datasets import Dataset
from sweeper.records import Outcome, TrialResult
from sweeper.spec.schema import Objective


def fit(
    options: dict[str, Any],
    dataset: Dataset,
    callback: EpochCallback | None,
    backend_name: str,
    keep_best: KeepBest | None = None,
    resume: Checkpoint | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> TrialResult:
    """Train one configuration; its outcome, per-epoch history and final metrics: dev/test
    of the returned network (the best epoch's with `keep_best`, see `kept_network`), and
    train_* of the epoch it comes from. `resume` and `on_checkpoint` are train()'s (panda mode
    continues a checkpoint and keeps each epoch's)."""
    d = dataset
    trained = train(
        TrainConfig.from_dict(options),
        d.X_train,
        d.y_train,
        d.X_dev,
        d.y_dev,
        d.n_classes,
        callback,
        get_backend(backend_name),
        resume=resume,
        on_checkpoint=on_checkpoint,
        keep_best=keep_best,
    )
    return _result(trained, dataset)


def fit_pack(
    options: list[dict[str, Any]],
    dataset: Dataset,
    callback: PackCallback,
    backend_name: str,
    keep_best: KeepBest | None = None,
) -> Iterator[tuple[int, TrialResult]]:
    """Train configurations of one `pack_key` together (`model.stacked.each_trained`),
    yielding (k, result of options[k]) as each ends, the result as `fit` would return it. The
    callback names configurations by their index in `options`. A configuration the trainer
    refuses is an ERROR of its own; the others train. Configurations of different keys (retries
    that Optuna's queue handed out with a lost pack's) train as one pack per key, in turn."""
    packs: dict[tuple, dict[int, TrainConfig]] = {}
    for k, member_options in enumerate(options):
        try:
            config = TrainConfig.from_dict(member_options)
        except Exception:
            yield k, TrialResult(Outcome.ERROR, error=traceback.format_exc())
            continue
        packs.setdefault(pack_key(config), {})[k] = config
    d = dataset
    splits = (d.X_train, d.y_train, d.X_dev, d.y_dev, d.n_classes)
    backend = get_backend(backend_name)
    for pack in packs.values():
        members, configs = list(pack), list(pack.values())
        renumbered = _renumbered(callback, members)
        for j, trained in each_trained(configs, *splits, renumbered, backend, keep_best):
            yield members[j], _result(trained, dataset)


def _renumbered(callback: PackCallback, members: list[int]) -> PackCallback:
    """`callback` for a pack whose j-th configuration is the caller's `members[j]`."""

    def renumbered(epoch: int, training: dict[int, dict[str, float]]) -> list[int]:
        stop = set(callback(epoch, {members[j]: metrics for j, metrics in training.items()}))
        return [j for j, k in enumerate(members) if k in stop]

    return renumbered


def _result(trained: TrainResult, dataset: Dataset) -> TrialResult:
    """What the StudyServer records of a trained network: dev/test metrics of the returned
    network, train_* of the epoch it comes from, and its checkpoint unless it diverged (a
    stopped trial's too: the server keeps it if it records the trial COMPLETE, as when a
    stage's `patience` stopped it)."""
    d = dataset
    metrics: dict[str, float] = {}
    outcome = Outcome(trained.outcome.value)
    if outcome is not Outcome.DIVERGED:
        for split, X, y in (("dev", d.X_dev, d.y_dev), ("test", d.X_test, d.y_test)):
            if X.shape[1]:  # split.test: 0 leaves no test set, and so no test metrics
                evaluated = evaluate(trained.network, X, y)
                metrics.update({f"{split}_{k}": v for k, v in evaluated.items()})
        metrics.update({k: v for k, v in trained.kept.items() if k.startswith("train_")})
    # the network goes back as arrays (kept ones are written by the StudyServer, never here)
    checkpoint = trained.checkpoint() if outcome is not Outcome.DIVERGED else None
    return TrialResult(outcome, trained.history, metrics, checkpoint=checkpoint)


def kept_network(objective: Objective) -> KeepBest | None:
    """`at: best` keeps the epoch best by the objective's metric, and so its value is that
    epoch's (Keras: ModelCheckpoint(save_best_only=True); Ray Tune: the best checkpoint by
    `checkpoint_score_attribute`); `at: last` keeps the last epoch's (after early stopping,
    the lowest dev_loss epoch's, as Keras's EarlyStopping(restore_best_weights=True))."""
    if objective.at == "last":
        return None
    return KeepBest(objective.metric, objective.direction == "maximize")


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

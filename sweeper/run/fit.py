"""Train one configuration, or a pack of them, into what the StudyServer records of each
(`TrialResult`). Free of Ray: the trial task (`sweeper.run.trial`) runs it on a worker, panda
mode and the benchmarks in their own process.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

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
    network, train_* and minibatch_cost of the epoch it comes from, and its checkpoint unless it
    diverged (a stopped trial's too: the server keeps it if it records the trial COMPLETE, as
    when a stage's `patience` stopped it)."""
    d = dataset
    metrics: dict[str, float] = {}
    outcome = Outcome(trained.outcome.value)
    if outcome is not Outcome.DIVERGED:
        for split, X, y in (("dev", d.X_dev, d.y_dev), ("test", d.X_test, d.y_test)):
            if X.shape[1]:  # split.test: 0 leaves no test set, and so no test metrics
                evaluated = evaluate(trained.network, X, y)
                metrics.update({f"{split}_{k}": v for k, v in evaluated.items()})
        # minibatch_cost too: a spec may name it as the objective (`decide` reads it from here)
        metrics.update(
            {
                k: v
                for k, v in trained.kept.items()
                if k.startswith("train_") or k == "minibatch_cost"
            }
        )
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

"""Where a continued panda run starts (`--from SOURCE`) and the family of runs it joins.

SOURCE is one of

    RUN_ID[@EPOCH]      an earlier panda run of this sweep, at its last epoch or one it kept
    NAME                the best trial of sweep NAME, from its kept model
    NAME:STAGE:TRIAL    trial TRIAL of stage STAGE of sweep NAME, from its kept model

A panda run keeps its checkpoints as MLflow artifacts `checkpoints/epoch-NNNN/`; a kept trial
model holds its checkpoint inside the model (`model/artifacts/network/`). Either is a
`model.checkpoint.Checkpoint` with its progress, so the new run goes on exactly where the source
stood. A new run is tagged with its parent (`sweeper.parent_run`, `sweeper.parent_epoch`) rather
than nested under it (`mlflow.parentRunId`): a family is a tree of equals, each run its own day.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from model.checkpoint import Checkpoint, Progress
from model.config import TrainConfig, per_layer_key
from sweeper import secrets
from sweeper.errors import UserError
from sweeper.records import MODEL_ARTIFACT, TrialRecord
from sweeper.run.folder import SweepFolder, find_sweep
from sweeper.spec.schema import SweepSpec
from sweeper.tracking.models import NETWORK

RUN_SOURCE = re.compile(r"^(?P<run>[0-9a-f]{32})(?:@(?P<epoch>\d+))?$")
CHECKPOINTS = "checkpoints"  # a panda run's artifact folder of kept epochs
TRIAL_CHECKPOINT = f"{MODEL_ARTIFACT}/artifacts/{NETWORK}"  # inside a kept trial model
# What a continued run may change: the update rule's numbers, the regularization, the batch
# size and how long. Anything else would change θ's shapes, the optimizer's state or the random
# streams the checkpoint continues, and is refused.
CONTINUABLE = frozenset(
    {"learning_rate", "lr_schedule", "lr_decay", "lr_base", "lr_step", "beta", "beta2",
     "epsilon", "l2", "keep_prob", "batch_size", "epochs", "early_stopping"}
)  # fmt: skip
PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
PARENT_RUN, PARENT_EPOCH = "parent_run", "parent_epoch"  # tags sweeper.<name> of a continued run


def epoch_folder(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


@dataclass(frozen=True)
class Origin:
    """A resolved SOURCE: the checkpoint to continue and how the new run links to it."""

    checkpoint: Checkpoint  # with its progress
    label: str  # how the UI and --history name it: `panda-2@4`, `digits:coarse:7`
    parent_run: str  # the MLflow run it comes from (a panda run, or the trial's run)
    history: list[dict[str, float]]  # the source's metrics per epoch, up to the branch point

    @property
    def epoch(self) -> int:
        return self.checkpoint.progress.epoch

    def tags(self) -> dict[str, str]:
        return {PARENT_RUN: self.parent_run, PARENT_EPOCH: str(self.epoch), "source": self.label}


def client_of(folder: SweepFolder, spec: SweepSpec) -> tuple[MlflowClient, str]:
    """A client of the sweep's MLflow store and its experiment's id; refused (exit 2) where
    there is none yet: reading never creates one."""
    if not folder.has_mlflow_store(spec):
        raise UserError(f"sweep {folder.path.name!r} has no MLflow runs yet")
    client = MlflowClient(secrets.expand(folder.tracking_uri(spec)))
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is None:
        raise UserError(f"sweep {spec.name!r} has no MLflow experiment yet")
    return client, experiment.experiment_id


def resolve(text: str, folder: SweepFolder, spec: SweepSpec) -> Origin:
    """The checkpoint SOURCE names (a run of the sweep of `folder` and `spec`, or a trial of
    any sweep); a UserError (exit 2) says what is missing."""
    match = RUN_SOURCE.match(text)
    if match:
        epoch = match["epoch"]
        return _from_run(folder, spec, match["run"], int(epoch) if epoch is not None else None)
    name, _, trial = text.partition(":")
    stage, _, number = trial.partition(":")
    if trial and not (stage and number.isdigit()):
        raise UserError(
            f"--from {text!r}: expected RUN_ID[@EPOCH], NAME or NAME:STAGE:TRIAL (a trial number)"
        )
    return _from_trial(find_sweep(name), name, stage or None, int(number) if number else None)


def _from_run(folder: SweepFolder, spec: SweepSpec, run_id: str, epoch: int | None) -> Origin:
    client, experiment_id = client_of(folder, spec)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"--from {run_id}: no such run in sweep {folder.path.name!r}") from None
    if run.info.experiment_id != experiment_id or run.data.tags.get("sweeper.kind") != "panda":
        raise UserError(f"--from {run_id}: not a `sweeper train` run of this sweep")
    kept = kept_epochs(client, run_id, folder)
    if not kept:
        raise UserError(f"--from {run_id}: the run kept no checkpoint")
    epoch = kept[-1] if epoch is None else epoch
    if epoch not in kept:
        raise UserError(
            f"--from {run_id}@{epoch}: epoch {epoch} was not kept; kept epochs: "
            + ", ".join(map(str, kept))
        )
    checkpoint = _download(client, run_id, f"{CHECKPOINTS}/{epoch_folder(epoch)}", folder)
    history = _history(client, run_id, epoch)
    return Origin(checkpoint, f"{short_name(run)}@{epoch}", run_id, history)


def short_name(run: Any) -> str:
    """`panda-3`, `coarse-7`: a run's stage and number, whatever its display name says."""
    tags = run.data.tags
    return f"{tags.get('sweeper.stage')}-{tags.get('sweeper.trial')}"


def kept_epochs(client: MlflowClient, run_id: str, folder: SweepFolder) -> list[int]:
    """The epochs whose checkpoints a panda run kept, in order (in `folder`'s own artifacts
    when they are there, see `SweepFolder.own_artifact`)."""
    here = folder.own_artifact(run_id, CHECKPOINTS)
    if here is not None:
        names = [p.name for p in here.iterdir() if p.is_dir()]
    else:
        names = [Path(f.path).name for f in client.list_artifacts(run_id, CHECKPOINTS) if f.is_dir]
    return sorted(int(name.removeprefix("epoch-")) for name in names)


def _from_trial(folder: SweepFolder, name: str, stage: str | None, number: int | None) -> Origin:
    from sweeper.results.summary import load_view, models

    view = load_view(folder)
    if stage is None:
        ranked = view.ranked()
        if not ranked:
            raise UserError(f"--from {name}: the sweep has no completed trial yet")
        record = ranked[0]
    else:
        found = [r for r in view.rows if r.stage == stage and r.number == number]
        if not found:
            raise UserError(f"--from {name}:{stage}:{number}: the sweep has no such trial")
        record = found[0]
    label = f"{name}:{record.stage}:{record.number}"  # the trial as --from names it
    uri = models(folder).get((record.stage, record.number))
    if uri is None:
        raise UserError(
            f"--from {label}: the trial kept no model (a sweep keeps the models of its best "
            "`models.keep` trials per stage, and only of trials that ran to their end)"
        )
    client, _ = client_of(folder, folder.load_spec())
    run_id = uri.removeprefix("runs:/").split("/")[0]
    checkpoint = _download(client, run_id, TRIAL_CHECKPOINT, folder)
    if checkpoint.progress is None:  # a model kept without its progress: continue from it
        checkpoint = _with_progress(checkpoint, record)
    return Origin(checkpoint, label, run_id, record.history[: checkpoint.progress.epoch])


def _with_progress(checkpoint: Checkpoint, record: TrialRecord) -> Checkpoint:
    """A network alone, given the trial's options and epoch count: zero moments, fresh
    generators (the same start, not the same run)."""
    options = TrainConfig.from_dict(record.params).to_dict()
    progress = Progress(epoch=len(record.history), options=options)
    return Checkpoint(checkpoint.arch, checkpoint.state, checkpoint.blocks, progress)


def _download(client: MlflowClient, run_id: str, path: str, folder: SweepFolder) -> Checkpoint:
    here = folder.own_artifact(run_id, path)
    if here is not None:
        return Checkpoint.load(here)
    with tempfile.TemporaryDirectory() as temporary, _no_progress_bar():
        local = client.download_artifacts(run_id, path, temporary)
        return Checkpoint.load(Path(local))


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a download bar on stderr for three small files; the live view is ours."""
    before = os.environ.get(PROGRESS_BAR)
    os.environ[PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[PROGRESS_BAR]
        else:
            os.environ[PROGRESS_BAR] = before


def _history(client: MlflowClient, run_id: str, upto: int) -> list[dict[str, float]]:
    """A run's per-epoch metrics up to epoch `upto` (the value logged first at each step: the
    epoch's own, not the final one logged at the last step)."""
    run = client.get_run(run_id)
    first = int(run.data.tags.get("sweeper.first_epoch", "1"))
    by_epoch: dict[int, dict[str, float]] = {}
    for key in run.data.metrics:
        for point in sorted(client.get_metric_history(run_id, key), key=lambda p: p.timestamp):
            if first <= point.step <= upto:
                by_epoch.setdefault(point.step, {}).setdefault(key, point.value)
    return [by_epoch[e] for e in sorted(by_epoch)]


def continued_options(
    progress: Progress, overrides: dict[str, Any], more_epochs: int
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The options of a run continuing `progress` with `overrides`, training `more_epochs` more
    epochs (the epoch count goes on, so `epochs` becomes the last epoch's number); and what
    changed, option → (before, after). An option outside CONTINUABLE that would change is
    refused with its --set name."""
    if isinstance(more_epochs, bool) or not isinstance(more_epochs, int) or more_epochs < 1:
        raise UserError(
            f"--set epochs={more_epochs!r}: with --from, epochs is how many more to train "
            f"after epoch {progress.epoch}, a whole number >= 1"
        )
    base = progress.options
    for given, value in overrides.items():
        option, layer = per_layer_key(given) or (given, None)
        before = base.get(option)
        if layer is not None and isinstance(before, list):
            before = before[layer - 1] if layer <= len(before) else None
        if option not in CONTINUABLE and value != before:
            raise UserError(
                f"--set {given}: a continued run keeps the network, optimizer and random streams "
                f"it continues, and {option} would change them (start a new run without --from "
                f"instead); options that may change: {', '.join(sorted(CONTINUABLE))}"
            )
    try:
        after = TrainConfig.from_dict({**base, **overrides, "epochs": progress.epoch + more_epochs})
    except (TypeError, ValueError) as error:
        raise UserError(f"trainer options: {error}") from None
    options = after.to_dict()
    changed = {
        k: (base.get(k), options[k])
        for k in sorted(CONTINUABLE - {"epochs"})
        if options[k] != base.get(k)
    }
    return options, changed


@dataclass(frozen=True)
class FamilyRun:
    """One run of a panda family, as `sweeper train --history` lists it."""

    run_id: str
    name: str
    parent: str  # `panda-1@4`, a trial run's name@epoch, or "" for a fresh start
    first_epoch: int
    last_epoch: int
    changed: str  # the options set on it, as the run's tag shows them
    best: float | None  # the best value of the objective's metric over its epochs
    status: str


def family(folder: SweepFolder, spec: SweepSpec, text: str) -> list[FamilyRun]:
    """Every panda run linked to SOURCE through parents, oldest first."""
    client, experiment_id = client_of(folder, spec)
    metric, maximize = spec.objective.metric, spec.objective.direction == "maximize"
    runs = client.search_runs([experiment_id], "tags.`sweeper.kind` = 'panda'", max_results=10_000)
    by_id = {run.info.run_id: run for run in runs}
    parent_of = {i: r.data.tags.get(f"sweeper.{PARENT_RUN}") for i, r in by_id.items()}
    match = RUN_SOURCE.match(text)
    if match:
        if match["run"] not in by_id:
            raise UserError(f"--history {text}: no `sweeper train` run {match['run']} here")
        roots = {_root(match["run"], parent_of)}
    else:  # a trial: the panda runs started from its run
        trial_run = resolve(text, folder, spec).parent_run
        roots = {i for i, parent in parent_of.items() if parent == trial_run}
    members, frontier = set(roots), set(roots)
    while frontier:
        frontier = {i for i, parent in parent_of.items() if parent in frontier} - members
        members |= frontier
    ordered = sorted((by_id[i] for i in members), key=lambda r: r.info.start_time)
    return [_family_run(client, run, metric, maximize) for run in ordered]


def _root(run_id: str, parent_of: dict[str, str | None]) -> str:
    while parent_of.get(run_id) in parent_of:
        run_id = parent_of[run_id]
    return run_id


def _family_run(client: MlflowClient, run: Any, metric: str, maximize: bool) -> FamilyRun:
    tags = run.data.tags
    first = int(tags.get("sweeper.first_epoch", "1"))
    last = first + int(tags.get("sweeper.epochs", "0")) - 1
    values = [
        p.value
        for p in client.get_metric_history(run.info.run_id, metric)
        if first <= p.step and math.isfinite(p.value)
    ]
    parent = tags.get("sweeper.source", "")
    return FamilyRun(
        run.info.run_id,
        short_name(run),
        parent,
        first,
        last,
        tags.get("sweeper.changed", ""),
        (max(values) if maximize else min(values)) if values else None,
        run.info.status,
    )

"""Panda mode (`sweeper train`): babysit one model, in this process, no Ray.

A fresh run's configuration is the spec's fixed `train:` options, then the sweep's best trial
where the sweep has one (otherwise the centre of each searched range, in its scaled coordinate),
then the `--set name=value` overrides. A continued run (`--from SOURCE`, see
`sweeper.run.lineage`) starts from the source's checkpoint and options, with the overrides on
top, and numbers its epochs on. Every epoch's checkpoint is written and a bounded number kept
(`sweeper.run.epoch_checkpoints`); a Ctrl-C keeps the last completed epoch. The run is logged to
the sweep's MLflow experiment with the tag sweeper.kind=panda, beside the sweep's trials, and
linked to its source by tags, so a family of runs can be followed day by day in the UI.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from model import TrainConfig, get_backend
from model.checkpoint import Checkpoint
from model.config import per_layer_key
from model.train import architecture
from sweeper.errors import UserError
from sweeper.records import Best, Outcome, TrialRecord
from sweeper.run import ownership
from sweeper.run.epoch_checkpoints import EpochCheckpoints
from sweeper.run.fit import fit
from sweeper.run.lineage import Origin
from sweeper.run.sweep import Plan
from sweeper.spec import scales
from sweeper.spec.schema import TRAINER_OPTIONS, SweepSpec
from sweeper.tracking.tracker import Tracker


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`name=value` pairs; values are read as YAML scalars (0.01, 64, true, adam), and a
    number YAML 1.1 leaves a string (1e-9, without a dot) as the number."""
    out = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--set {pair!r}: expected name=value, e.g. --set learning_rate=0.01")
        if not TrainConfig.knows(name):
            raise UserError(f"--set {name}: unknown trainer option; known: {list(TRAINER_OPTIONS)}")
        out[name] = _number_or_itself(yaml.safe_load(text))
    return out


def _number_or_itself(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def bias_variance(metrics: dict[str, float]) -> str:
    """Train vs dev error, the notes' diagnosis: a high train error is bias (a bigger network,
    longer training); a dev error well above it is variance (more data, regularization)."""
    if "train_accuracy" in metrics and "dev_accuracy" in metrics:
        train, dev = (100 * (1 - metrics[f"{s}_accuracy"]) for s in ("train", "dev"))
        return f"train error {train:.1f}% · dev error {dev:.1f}% · gap {dev - train:+.1f} points"
    if "train_loss" in metrics and "dev_loss" in metrics:
        train, dev = metrics["train_loss"], metrics["dev_loss"]
        return f"train loss {train:.4g} · dev loss {dev:.4g} · gap {dev - train:+.4g}"
    return ""


def centre(param: scales.Param) -> Any:
    """The middle of a range in its scaled coordinate (the first choice of a categorical)."""
    if param.scale == "categorical":
        return param.choices[0]
    middle = param.unscaled((param.scaled(param.low) + param.scaled(param.high)) / 2)
    if param.scale == "pow2":
        return 2 ** round(param.scaled(middle))
    return round(middle) if param.scale in ("int", "log_int") else middle


def configuration(
    spec: SweepSpec, best: Best | None, overrides: dict[str, Any], n_classes: int
) -> dict[str, Any]:
    """The options to train, checked by the trainer (a bad value is a UserError). A loss that
    does not fit the data's `n_classes` is refused, as in space.yaml (`schema._loss_problems`,
    `sweep._check_loss_fits`)."""
    searched = best.params if best else {k: centre(p) for k, p in spec.space.items()}
    given = {**spec.train, **searched}
    # `--set keep_prob=1.0` sets every layer: a searched keep_prob_2 no longer overrides it
    options = {
        **{k: v for k, v in given.items() if (per_layer_key(k) or (k,))[0] not in overrides},
        **overrides,
    }
    loss = overrides.get("loss")
    if loss == "mse" or (loss == "binary_cross_entropy" and n_classes > 2):
        raise UserError(
            f"--set loss={loss}: the data have {n_classes} classes, and {loss} would train on "
            "their indices as numbers: use auto, or softmax_cross_entropy"
        )
    try:
        TrainConfig.from_dict(options)
    except (TypeError, ValueError) as error:
        raise UserError(f"trainer options: {error}") from None
    return options


def check_layers(overrides: dict[str, Any], options: dict[str, Any]) -> None:
    """A per-layer `--set` (keep_prob_3) names a hidden layer of the network `options` build:
    the trainer ignores one deeper than `num_layers` (a search samples them so), silently."""
    depth = TrainConfig.from_dict(options).depth
    for name in overrides:
        option, layer = per_layer_key(name) or (name, 0)
        if layer > depth:
            which = f"{option}_l takes l = 1 … {depth}" if depth else "it has no hidden layer"
            raise UserError(f"--set {name}: the network has {depth} hidden layer(s); {which}")


def check_fits(origin: Origin, options: dict[str, Any], plan: Plan) -> None:
    """The checkpoint's network must be the one these options build on this spec's data."""
    config, data = TrainConfig.from_dict(options), plan.dataset
    wanted = architecture(config, data.X_train.shape[0], data.n_classes).layer_dims
    found = origin.checkpoint.arch.layer_dims
    if wanted != found:
        raise UserError(
            f"--from {origin.label}: its network has layer sizes {list(found)}, but this spec's "
            f"data gives {list(wanted)}: continue it with the spec it was trained on"
        )


BACKENDS = ("numpy", "cupy", "auto")  # what `sweeper train --backend` takes


def check_backend(name: str) -> None:
    """An array backend that is not one of BACKENDS, or not installed here, is the user's
    error (exit 2), found before anything is written."""
    if name not in BACKENDS:  # any importable module was tried as NumPy (`--backend json`)
        raise UserError(f"--backend {name!r}: choose one of {', '.join(BACKENDS)}")
    try:
        get_backend(name)
    except RuntimeError as error:
        raise UserError(f"--backend {name}: {error}") from None


@contextmanager
def _ctrl_c_deferred(swallow: bool = False) -> Iterator[None]:
    """A Ctrl-C meanwhile raises KeyboardInterrupt once the block is done, not inside it
    (`swallow`: not at all, and a second one raises it at once, inside the block).
    Only where Ctrl-C raises it: in the main thread (signals reach no other) under Python's
    own handler (not where SIGINT is ignored, as in a shell's background job)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    pressed: list[int] = []

    def press(signum: int, frame: Any) -> None:
        if pressed and swallow:
            raise KeyboardInterrupt
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, press)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed and not swallow:
        raise KeyboardInterrupt


@contextmanager
def hangup_and_terminate_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (`kill`, a service manager) and SIGHUP (the terminal closed, SSH dropped) do
    meanwhile what Ctrl-C does, so that the epochs trained so far are kept: they ended the
    process at once, the run unlogged. Only in the main thread, and for a signal that would
    end the process (not one ignored, as SIGHUP under nohup)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def as_ctrl_c(signum: int, frame: Any) -> None:
        handler = signal.getsignal(signal.SIGINT)  # the default, or `_ctrl_c_deferred`'s
        if not callable(handler):  # SIGINT ignored (a background job): stop all the same
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    previous = {
        sig: signal.signal(sig, as_ctrl_c)
        for sig in (signal.SIGTERM, signal.SIGHUP)
        if signal.getsignal(sig) is signal.SIG_DFL
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class PandaResult:
    """A `sweeper train` run: how training ended, the final metrics, its MLflow run and the
    epochs whose checkpoints it kept (`--from RUN_ID@EPOCH`)."""

    outcome: Outcome
    metrics: dict[str, float]
    run_id: str
    kept_epochs: list[int] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C: the run holds the epochs completed before it


@dataclass(frozen=True)
class PandaRun:
    """One configuration to train in panda mode: the sweep's plan, the checked options and,
    for a continued run, where it starts and which options it changes."""

    plan: Plan
    options: dict[str, Any]
    origin: Origin | None = None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        """The number of its last epoch (epochs are counted on from a source)."""
        return TrainConfig.from_dict(self.options).epochs

    @property
    def first_epoch(self) -> int:
        return self.origin.epoch + 1 if self.origin else 1

    def train(
        self, backend: str = "auto", on_epoch: Callable[[int, dict[str, float]], None] | None = None
    ) -> PandaResult:
        """Train in this process (no Ray), keep each epoch's checkpoint and log the run to the
        sweep's MLflow experiment."""
        return train(self, backend, on_epoch or (lambda e, m: None))


def train(
    run: PandaRun, backend: str, on_epoch: Callable[[int, dict[str, float]], None]
) -> PandaResult:
    """Train `run.options` on the plan's data (from its origin's checkpoint when given), keep
    its epochs' checkpoints and log the run to the sweep's experiment."""
    check_backend(backend)
    start_ms = int(time.time() * 1000)
    plan, options, origin, changed = run.plan, run.options, run.origin, run.changed
    spec, folder = plan.spec, plan.folder
    metric, maximize = spec.objective.metric, spec.objective.direction == "maximize"
    first_epoch = run.first_epoch
    planned = run.epochs - first_epoch + 1
    ownership.claim(folder.path, ownership.Identity(spec.name, spec.fingerprint()))
    folder.keep_spec(spec, plan.dataset.inputs)
    keeper = EpochCheckpoints.under(folder.path, f"{start_ms}-{os.getpid()}", planned, maximize)
    kept_history: list[dict[str, float]] = []  # the epochs whose checkpoints were written
    shown: list[int] = []  # the epochs on_epoch has heard of

    def callback(epoch: int, metrics: dict[str, float]) -> bool:
        shown.append(epoch)
        on_epoch(epoch, metrics)
        return False

    def keep(checkpoint: Checkpoint, metrics: dict[str, float]) -> None:
        with _ctrl_c_deferred():  # else a checkpoint could be published for an unlogged epoch
            keeper.write(checkpoint, metrics.get(metric))
            kept_history.append(metrics)

    resume = origin.checkpoint if origin else None
    try:
        result = fit(options, plan.dataset, callback, backend, resume=resume, on_checkpoint=keep)
        outcome, metrics, history, interrupted = (
            result.outcome, result.metrics, result.history, False
        )  # fmt: skip
    except KeyboardInterrupt:  # the epochs completed (and checkpointed) so far are logged
        history, interrupted, outcome = kept_history, True, Outcome.STOPPED
        metrics = history[-1] if history else {}
    except Exception:  # a bug: nothing is logged, and nothing left pending
        keeper.discard()
        raise
    # Training is over: a Ctrl-C now (the first) would lose the whole run, so it waits until
    # the run is logged and its checkpoints published; a second one exits at once.
    with _ctrl_c_deferred(swallow=True):
        # the epoch that diverged or early-stopped ends training before the trainer's callback
        for epoch, epoch_metrics in enumerate(history, start=first_epoch):
            if epoch > max(shown, default=first_epoch - 1):
                on_epoch(epoch, epoch_metrics)
        tracker = Tracker(folder.tracking_uri(spec), spec.name, folder.artifacts, folder.sweep_id)
        number = tracker.count_runs("panda")
        record = TrialRecord(
            stage="panda",
            number=number,
            state="PRUNED" if interrupted or outcome is Outcome.DIVERGED else "COMPLETE",
            value=None,
            params=options,
            metrics=metrics,
            history=history,
            start_ms=start_ms,
            end_ms=int(time.time() * 1000),
        )
        tags = {
            "outcome": "interrupted" if interrupted else outcome.value,
            "first_epoch": str(first_epoch),
            **(origin.tags() if origin else {}),
            **({"changed": json.dumps(changed)} if changed else {}),
        }
        run_id = tracker.log_trial(None, record, kind="panda", tags=tags, first_epoch=first_epoch)
        if origin:
            tracker.client.set_tag(run_id, MLFLOW_RUN_NAME, f"panda-{number} (from {origin.label})")
        kept = list(keeper.written)
        keeper.publish(tracker.client, run_id)
    return PandaResult(outcome, metrics, run_id, kept, interrupted)

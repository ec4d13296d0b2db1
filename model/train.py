"""Mini-batch training with per-epoch evaluation, early stopping and a stop-callback.

One epoch: reshuffle the training set, walk it in mini-batches X^{t} of `batch_size` columns
(the last partial batch kept), and for each do forward → cost → backward → optimizer step. After
the epoch the training set (a fixed sample of at most TRAIN_EVAL_EXAMPLES) and the dev set are
evaluated in inference mode, so train vs dev error shows bias and variance as the notes diagnose
them, and the metrics go to the callback, which may stop training (the sweeper prunes through
it). A NaN/inf cost stops training as diverged.

Training can go on from a checkpoint (`resume`): epochs are numbered on from its epoch (a decay
schedule continues), and the optimizer's moments and step count, the dropout generator and the
mini-batch order generator continue where they were, so 3 + 3 epochs equal 6 in one call.
Early stopping's patience starts afresh in a continued call.

Metrics per epoch: minibatch_cost (the running mean of J over the epoch's mini-batches, with
dropout and the L2 term, on parameters that changed during the epoch), train_loss and
train_accuracy (inference mode, no L2 term), dev_loss and dev_accuracy.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.backend import Backend, get_backend
from model.checkpoint import Checkpoint, Progress
from model.config import TrainConfig
from model.network import Architecture, Network, NetworkState
from model.optimizers import make_optimizer
from model.schedules import learning_rate

# An epoch whose mean cost exceeds this multiple of the untrained network's cost has diverged
# (α far too large), even where the cost stays finite, e.g. once exploding ReLU units go dead.
DIVERGENCE_FACTOR = 1000.0
EVAL_CHUNK = 8192  # columns per inference pass, so a large dev set needs no large buffers
# train_loss/train_accuracy are measured on a fixed random sample of this many training examples:
# an accuracy's standard error is then at most 1.6 points, and evaluating it costs < 5% of an
# epoch of the large shape of benchmarks/trainer_vs_torch.py.
TRAIN_EVAL_EXAMPLES = 1024


class Outcome(enum.Enum):
    COMPLETED = "completed"  # ran every epoch
    EARLY_STOPPED = "early_stopped"  # dev loss stopped improving
    STOPPED = "stopped"  # the callback asked to stop (a pruned trial)
    DIVERGED = "diverged"  # the cost became NaN, infinite, or DIVERGENCE_FACTOR × its start


@dataclass
class TrainResult:
    network: Network
    outcome: Outcome
    history: list[dict[str, float]] = field(default_factory=list)  # one metrics dict per epoch
    kept_epoch: int = 0  # the epoch whose parameters `network` holds (the best, after early stop)
    first_epoch: int = 1  # the number of history[0] (later than 1 in a continued call)
    progress: Progress | None = None  # where training of `network` stands (None: diverged)

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}

    @property
    def kept(self) -> dict[str, float]:
        """The metrics that describe the returned network."""
        return self.history[self.kept_epoch - self.first_epoch] if self.kept_epoch else {}

    def checkpoint(self) -> Checkpoint:
        """The returned network with its progress, on the host: training can go on from it."""
        return Checkpoint.of(self.network, self.progress)


@dataclass(frozen=True)
class KeepBest:
    """Return the parameters of the epoch best by `metric` (ties: the earliest), whatever ends
    training: Keras's ModelCheckpoint(save_best_only=True) reloaded at the end, Ray Tune's best
    checkpoint by `checkpoint_score_attribute`. Without it the last epoch's (or, after early
    stopping, the lowest dev_loss epoch's) parameters are returned."""

    metric: str
    maximize: bool

    def improves(self, value: float, best: float | None) -> bool:
        if not math.isfinite(value):
            return False
        return best is None or (value > best if self.maximize else value < best)


@dataclass
class EpochBook:
    """What a trainer remembers from epoch to epoch about one network: the epoch `keep_best`
    keeps, and early stopping's lowest dev_loss epoch, each as (snapshot, epoch). `train` and
    `model.stacked` share it, so a network trained in a pack keeps what it would alone."""

    keep_best: KeepBest | None
    early_stopping: int | None  # patience on dev_loss, in epochs
    kept_value: float | None = None
    kept: tuple[Any, int] | None = None
    lowest_loss: float = math.inf
    lowest: tuple[Any, int] | None = None
    stale: int = 0

    def record(self, epoch: int, metrics: dict[str, float], snapshot: Callable[[], Any]) -> bool:
        """Note an epoch that did not diverge (`snapshot()` copies what to keep of it); True
        when early stopping ends training here."""
        if self.keep_best is not None:
            value = metrics.get(self.keep_best.metric, math.nan)
            if self.keep_best.improves(value, self.kept_value):
                self.kept_value, self.kept = value, (snapshot(), epoch)
        if self.early_stopping is None or "dev_loss" not in metrics:
            return False
        if metrics["dev_loss"] < self.lowest_loss:
            self.lowest_loss, self.lowest, self.stale = metrics["dev_loss"], (snapshot(), epoch), 0
            return False
        self.stale += 1
        return self.stale >= self.early_stopping

    def chosen(self, outcome: Outcome) -> tuple[Any, int] | None:
        """The (snapshot, epoch) to return instead of the last: the best by `keep_best`, else
        after early stopping the lowest dev_loss epoch's; None: the last."""
        if self.keep_best is not None:
            return self.kept
        return self.lowest if outcome is Outcome.EARLY_STOPPED else None


def diverged(metrics: dict[str, float], initial_cost: float | None) -> bool:
    """NaN or infinite anywhere, or a cost DIVERGENCE_FACTOR × the untrained network's."""
    return not all(math.isfinite(v) for v in metrics.values()) or (
        metrics["minibatch_cost"] > DIVERGENCE_FACTOR * max(initial_cost, 1e-3)
    )


EpochCallback = Callable[[int, dict[str, float]], bool]  # (epoch, metrics) → True to stop
CheckpointCallback = Callable[[Checkpoint, dict[str, float]], None]  # after each epoch
# (epoch, m) → the order in which epoch 1, 2, … visits the m training examples
EpochShuffle = Callable[[int, int], np.ndarray]


@dataclass
class SeededShuffle:
    """The trainer's own order: a fresh permutation per epoch from one generator, whose state a
    checkpoint keeps."""

    rng: np.random.Generator

    def __call__(self, epoch: int, m: int) -> np.ndarray:
        return self.rng.permutation(m)


def seeded_shuffle(seed: int) -> SeededShuffle:
    return SeededShuffle(np.random.default_rng(seed))


def resolve_loss(loss: str, n_classes: int | None) -> str:
    """`auto` is softmax cross-entropy for > 2 classes and binary cross-entropy for 2."""
    if loss != "auto":
        return loss
    if n_classes is None:
        return "mse"
    return "softmax_cross_entropy" if n_classes > 2 else "binary_cross_entropy"


def encode_targets(xp: Any, y: Any, loss: str, n_classes: int | None, dtype: Any) -> Any:
    """Y as the network's output layout: one-hot (C, m), 0/1 row (1, m), or values (n_y, m)."""
    y = np.asarray(y)
    if loss == "softmax_cross_entropy":
        Y = np.zeros((n_classes, y.shape[0]), dtype=dtype)
        Y[y.astype(np.int64), np.arange(y.shape[0])] = 1.0
    else:
        Y = y.reshape(1, -1) if y.ndim == 1 else y
    return xp.asarray(Y, dtype=dtype)


def build_network(
    config: TrainConfig, n_x: int, n_classes: int | None, backend: Backend
) -> Network:
    """The network a config describes, for n_x features and n_classes classes (None: regression)."""
    return Network(architecture(config, n_x, n_classes), backend, seed=config.seed)


def architecture(config: TrainConfig, n_x: int, n_classes: int | None) -> Architecture:
    """The layer sizes and choices of a config, for n_x features and n_classes classes."""
    loss = resolve_loss(config.loss, n_classes)
    n_out = 1 if (n_classes is None or loss == "binary_cross_entropy") else n_classes
    dims = (n_x, *config.hidden_widths, n_out)
    return Architecture(
        layer_dims=dims,
        activation=config.activation,
        loss=loss,
        init=config.init,
        batch_norm=config.batch_norm,
        keep_prob=tuple(config.keep_prob)
        if isinstance(config.keep_prob, list)
        else config.keep_prob,
    )


def evaluate(net: Network, X: Any, y: Any) -> dict[str, float]:
    """Inference-mode loss and (for classification) accuracy on X (n_x, m) with labels y."""
    xp, loss = net.backend.xp, net.loss
    n_classes = net.arch.layer_dims[-1] if loss.name == "softmax_cross_entropy" else None
    m = X.shape[1]
    total_cost, correct = 0.0, 0
    for start in range(0, m, EVAL_CHUNK):
        Xc = X[:, start : start + EVAL_CHUNK]
        yc = y[start : start + EVAL_CHUNK] if y.ndim == 1 else y[:, start : start + EVAL_CHUNK]
        Yhat = net.forward(Xc, training=False)
        Yc = encode_targets(xp, net.backend.to_host(yc), loss.name, n_classes, net.backend.dtype)
        total_cost += net.cost(Yc) * Xc.shape[1]
        if loss.predict_classes is not None:
            correct += int((loss.predict_classes(xp, Yhat) == yc).sum())
    metrics = {"loss": total_cost / m}
    if loss.predict_classes is not None:
        metrics["accuracy"] = correct / m
    return metrics


def train(
    config: TrainConfig,
    X_train: Any,
    y_train: Any,
    X_dev: Any | None = None,
    y_dev: Any | None = None,
    n_classes: int | None = None,
    callback: EpochCallback | None = None,
    backend: Backend | None = None,
    initial: NetworkState | None = None,
    shuffle: EpochShuffle | None = None,
    resume: Checkpoint | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    keep_best: KeepBest | None = None,
) -> TrainResult:
    """Train a network on X_train (n_x, m) / y_train and report per-epoch metrics.

    Mini-batches are gathered as rows of (m, n_x), so X_train is best passed as `X.T` of data
    stored one example per row: any other layout costs a transposed copy of it on every call.
    Classification labels are integers 0..C−1 (`n_classes`=C); regression targets are floats with
    `n_classes`=None. Metrics per epoch: minibatch_cost, train_loss, train_accuracy and, when a
    dev set is given, dev_loss and dev_accuracy (see the module docstring).

    `initial` (θ and running statistics, as `Network.state()` gives them) replaces the drawn
    initialization, and `shuffle` the epoch order of `seeded_shuffle(config.seed)`: together they
    replay another implementation's random streams, which is how the course's published runs are
    reproduced digit for digit (tests/model/test_course_assignments.py).

    `resume` continues a checkpoint's training (its θ, running statistics and progress) up to
    epoch `config.epochs`, counted from the first call; `config` may differ from the options it
    was trained with in anything but the parameters' shapes. `on_checkpoint` receives the
    network and its progress, with the epoch's metrics, after every completed epoch (panda mode
    keeps them).

    `keep_best` returns the best epoch's θ and running statistics instead of the last's, however
    training ends (completed, early-stopped, stopped by the callback); the callback still sees
    every epoch.
    """
    backend = backend or get_backend()
    xp, dtype = backend.xp, backend.dtype
    progress = resume.progress if resume is not None else None
    initial = resume.state if resume is not None else initial
    if progress is not None and config.epochs <= progress.epoch:
        raise ValueError(
            f"epochs={config.epochs} must exceed the checkpoint's epoch {progress.epoch}: "
            "epochs are counted from the first call"
        )
    net = build_network(config, X_train.shape[0], n_classes, backend)
    if initial is not None:
        if initial.theta.shape != net.theta.shape:
            raise ValueError(
                f"initial θ has {initial.theta.shape[0]} parameters; the network of this config "
                f"has {net.theta.shape[0]}"
            )
        net.restore(initial)
    optimizer = make_optimizer(
        config.optimizer, net.theta.shape[0], backend, config.beta, config.beta2, config.epsilon
    )
    n_out = net.arch.layer_dims[-1] if net.loss.name == "softmax_cross_entropy" else n_classes
    # Examples as rows (m, n): a mini-batch gathers contiguous rows, and its .T is (n_x, m_t).
    XT = xp.ascontiguousarray(xp.asarray(X_train, dtype=dtype).T)
    YT = xp.ascontiguousarray(encode_targets(xp, y_train, net.loss.name, n_out, dtype).T)
    X_dev = None if X_dev is None else xp.asarray(X_dev, dtype=dtype)
    y_dev = None if y_dev is None else xp.asarray(y_dev)
    sample = np.random.default_rng(config.seed).permutation(XT.shape[0])[:TRAIN_EVAL_EXAMPLES]
    sample = xp.asarray(np.sort(sample))
    train_sample = (XT[sample].T, xp.asarray(y_train)[..., sample])  # y: (m,) or (n_y, m)
    shuffle = shuffle or seeded_shuffle(config.seed)
    if progress is not None:
        _continue(progress, net, optimizer, shuffle)
    result = TrainResult(net, Outcome.COMPLETED, first_epoch=progress.epoch + 1 if progress else 1)
    loop = _Loop(config, net, optimizer, shuffle, progress.initial_cost if progress else None)
    with np.errstate(all="ignore"):  # overflow in a diverging run is reported as DIVERGED
        _run_epochs(
            loop, XT, YT, train_sample, (X_dev, y_dev), callback, on_checkpoint, result, keep_best
        )
    return result


def _continue(progress: Progress, net: Network, optimizer: Any, shuffle: EpochShuffle) -> None:
    """Put the optimizer and the generators where the checkpoint left them (those it has)."""
    if progress.moments:
        optimizer.resume(progress.moments, progress.t)
    if "dropout" in progress.generators and isinstance(net.rng, np.random.Generator):
        net.rng.bit_generator.state = progress.generators["dropout"]
    if "shuffle" in progress.generators and isinstance(shuffle, SeededShuffle):
        shuffle.rng.bit_generator.state = progress.generators["shuffle"]


@dataclass
class _Loop:
    """What the epoch loop updates and a checkpoint's progress reads."""

    config: TrainConfig
    net: Network
    optimizer: Any
    shuffle: EpochShuffle
    initial_cost: float | None  # J of the untrained network on its first mini-batch

    def progress(self, epoch: int) -> Progress:
        """Where training stands after `epoch`, on the host (NumPy generators only: CuPy's have
        no portable state, and continue freshly seeded)."""
        host = self.net.backend.to_host
        generators = {}
        if isinstance(self.net.rng, np.random.Generator):
            generators["dropout"] = self.net.rng.bit_generator.state
        if isinstance(self.shuffle, SeededShuffle):
            generators["shuffle"] = self.shuffle.rng.bit_generator.state
        return Progress(
            epoch=epoch,
            options=self.config.to_dict(),
            t=self.optimizer.t,
            moments={k: np.asarray(host(v)) for k, v in self.optimizer.moments().items()},
            generators=generators,
            initial_cost=self.initial_cost,
        )


def _run_epochs(
    loop: _Loop,
    XT: Any,
    YT: Any,
    train_sample: tuple[Any, Any],
    dev: tuple[Any, Any],
    callback: EpochCallback | None,
    on_checkpoint: CheckpointCallback | None,
    result: TrainResult,
    keep_best: KeepBest | None = None,
) -> None:
    config, net, optimizer, shuffle = loop.config, loop.net, loop.optimizer, loop.shuffle
    xp = net.backend.xp
    m, batch = XT.shape[0], config.batch_size
    schedule_arguments = config.schedule_arguments()
    book = EpochBook(keep_best, config.early_stopping)
    for epoch in range(result.first_epoch, config.epochs + 1):
        alpha = learning_rate(
            config.learning_rate, epoch, schedule=config.lr_schedule, **schedule_arguments
        )
        permutation = xp.asarray(shuffle(epoch, m))  # reshuffled every epoch
        cost_sum = 0.0
        for t in range(0, m, batch):
            examples = permutation[t : t + batch]
            X_t, Y_t = XT[examples].T, YT[examples].T  # (n_x, m_t), (n_y, m_t)
            net.forward(X_t, training=True)
            cost = net.cost(Y_t, config.l2)
            if not math.isfinite(cost):
                break
            if loop.initial_cost is None:
                loop.initial_cost = cost
            cost_sum += cost * X_t.shape[1]
            net.backward(Y_t, config.l2)
            optimizer.step(net.theta, net.dtheta, alpha)
        metrics = {"minibatch_cost": cost_sum / m if math.isfinite(cost) else math.inf}
        if math.isfinite(cost):
            for split, (X, y) in (("train", train_sample), ("dev", dev)):
                if X is not None:
                    metrics.update({f"{split}_{k}": v for k, v in evaluate(net, X, y).items()})
        result.history.append(metrics)
        if diverged(metrics, loop.initial_cost):
            result.outcome, result.progress = Outcome.DIVERGED, None
            return
        result.kept_epoch = epoch
        if on_checkpoint is not None:
            on_checkpoint(Checkpoint.of(net, loop.progress(epoch)), metrics)
        if book.record(epoch, metrics, lambda: (net.state(), loop.progress(epoch))):  # noqa: B023
            result.outcome = Outcome.EARLY_STOPPED
            break
        if callback is not None and callback(epoch, metrics):
            result.outcome = Outcome.STOPPED
            break
    result.progress = loop.progress(result.kept_epoch) if result.kept_epoch else None
    chosen = book.chosen(result.outcome)
    if chosen is not None and chosen[1] != result.kept_epoch:
        (state, result.progress), result.kept_epoch = chosen
        net.restore(state)  # θ and the running statistics of the epoch kept

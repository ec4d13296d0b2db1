"""Mini-batch training with per-epoch evaluation, early stopping and a stop-callback.

One epoch: reshuffle the training set, walk it in mini-batches X^{t} of `batch_size` columns
(the last partial batch kept), and for each do forward → cost → backward → optimizer step. After
the epoch the dev set is evaluated in inference mode and the metrics go to the callback, which
may stop training (the sweeper prunes through it). A NaN/inf cost stops training as diverged.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from model.activations import HIDDEN
from model.backend import Backend, get_backend
from model.initializers import INITIALIZERS
from model.losses import LOSSES
from model.network import Architecture, Network
from model.optimizers import OPTIMIZERS, make_optimizer
from model.schedules import SCHEDULES, learning_rate

# An epoch whose mean cost exceeds this multiple of the untrained network's cost has diverged
# (α far too large), even where the cost stays finite, e.g. once exploding ReLU units go dead.
DIVERGENCE_FACTOR = 1000.0
EVAL_CHUNK = 8192  # columns per inference pass, so a large dev set needs no large buffers


@dataclass
class TrainConfig:
    """Every trainer option; names are those a space.yaml uses in `train:` and `space:`."""

    learning_rate: float = 0.001
    lr_schedule: str = (
        "inverse_time"  # inverse_time | exponential | step | staircase | inverse_sqrt
    )
    lr_decay: float = 0.0  # decay rate of inverse_time and staircase (0 = constant α)
    lr_base: float = 0.95  # base of exponential (α0·base^epoch) and step, in (0, 1]
    lr_step: int = 10  # epochs per step of step and staircase
    optimizer: str = "adam"  # gd | momentum | rmsprop | adam
    beta: float = 0.9  # momentum β, RMSprop β, Adam β1
    beta2: float = 0.999  # Adam β2
    epsilon: float = 1e-8
    num_layers: int = 2  # hidden layers (L − 1)
    hidden_units: int = 64  # units per hidden layer
    batch_size: int = 64
    epochs: int = 30
    l2: float = 0.0  # λ of the L2 penalty (λ/2m)·Σ‖W‖²
    keep_prob: float = 1.0  # inverted-dropout keep probability on hidden layers
    batch_norm: bool = False
    activation: str = "relu"  # relu | leaky_relu | tanh | sigmoid
    init: str = "he"  # zeros | small | he | xavier | glorot
    loss: str = "auto"  # auto | softmax_cross_entropy | binary_cross_entropy | mse
    early_stopping: int | None = None  # patience in epochs on dev_loss; best θ is restored
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting names the trainer does not know."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown trainer options {unknown}; known: {sorted(known)}")
        return cls(**values)

    def __post_init__(self) -> None:
        """Reject a bad value here, with its option's name, not epochs into a trial."""
        choices = {
            "optimizer": OPTIMIZERS,
            "activation": HIDDEN,
            "init": INITIALIZERS,
            "loss": ("auto", *LOSSES),
            "lr_schedule": SCHEDULES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; choose one of {sorted(allowed)}")
        ranges = {
            "learning_rate": (self.learning_rate > 0, "> 0"),
            "lr_decay": (self.lr_decay >= 0, ">= 0"),
            "lr_base": (0 < self.lr_base <= 1, "in (0, 1]"),
            "lr_step": (self.lr_step >= 1, ">= 1"),
            "beta": (0 <= self.beta < 1, "in [0, 1)"),
            "beta2": (0 <= self.beta2 < 1, "in [0, 1)"),
            "epsilon": (self.epsilon > 0, "> 0"),
            "num_layers": (self.num_layers >= 0, ">= 0"),
            "hidden_units": (self.hidden_units >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "epochs": (self.epochs >= 1, ">= 1"),
            "l2": (self.l2 >= 0, ">= 0"),
            "keep_prob": (0 < self.keep_prob <= 1, "in (0, 1]"),
            "early_stopping": (self.early_stopping is None or self.early_stopping >= 1, ">= 1"),
        }
        wrong = [
            f"{name}={getattr(self, name)!r} must be {rule}"
            for name, (ok, rule) in ranges.items()
            if not ok
        ]
        if wrong:
            raise ValueError("; ".join(wrong))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


EpochCallback = Callable[[int, dict[str, float]], bool]  # (epoch, metrics) → True to stop


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
    loss = resolve_loss(config.loss, n_classes)
    n_out = 1 if (n_classes is None or loss == "binary_cross_entropy") else n_classes
    dims = (n_x, *[config.hidden_units] * config.num_layers, n_out)
    arch = Architecture(
        layer_dims=dims,
        activation=config.activation,
        loss=loss,
        init=config.init,
        batch_norm=config.batch_norm,
        keep_prob=config.keep_prob,
    )
    return Network(arch, backend, seed=config.seed)


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
) -> TrainResult:
    """Train a network on X_train (n_x, m) / y_train and report per-epoch metrics.

    Mini-batches are gathered as rows of (m, n_x), so X_train is best passed as `X.T` of data
    stored one example per row: any other layout costs a transposed copy of it on every call.
    Classification labels are integers 0..C−1 (`n_classes`=C); regression targets are floats with
    `n_classes`=None. Metrics per epoch: train_loss (mean mini-batch cost), and when a dev set is
    given dev_loss and dev_accuracy.
    """
    backend = backend or get_backend()
    xp, dtype = backend.xp, backend.dtype
    net = build_network(config, X_train.shape[0], n_classes, backend)
    optimizer = make_optimizer(
        config.optimizer, net.theta.shape[0], backend, config.beta, config.beta2, config.epsilon
    )
    n_out = net.arch.layer_dims[-1] if net.loss.name == "softmax_cross_entropy" else n_classes
    # Examples as rows (m, n): a mini-batch gathers contiguous rows, and its .T is (n_x, m_t).
    XT = xp.ascontiguousarray(xp.asarray(X_train, dtype=dtype).T)
    YT = xp.ascontiguousarray(encode_targets(xp, y_train, net.loss.name, n_out, dtype).T)
    X_dev = None if X_dev is None else xp.asarray(X_dev, dtype=dtype)
    y_dev = None if y_dev is None else xp.asarray(y_dev)
    result = TrainResult(net, Outcome.COMPLETED)
    with np.errstate(all="ignore"):  # overflow in a diverging run is reported as DIVERGED
        _run_epochs(config, net, optimizer, XT, YT, X_dev, y_dev, callback, result)
    return result


def _run_epochs(
    config: TrainConfig,
    net: Network,
    optimizer: Any,
    XT: Any,
    YT: Any,
    X_dev: Any,
    y_dev: Any,
    callback: EpochCallback | None,
    result: TrainResult,
) -> None:
    xp = net.backend.xp
    shuffle_rng = np.random.default_rng(config.seed)
    m, batch = XT.shape[0], config.batch_size
    best_loss, best_theta, stale = math.inf, None, 0
    initial_cost = None  # J of the untrained network on the first mini-batch
    for epoch in range(1, config.epochs + 1):
        alpha = learning_rate(
            config.learning_rate,
            epoch,
            config.lr_decay,
            config.lr_schedule,
            config.lr_step,
            config.lr_base,
        )
        permutation = xp.asarray(shuffle_rng.permutation(m))  # reshuffled every epoch
        cost_sum = 0.0
        for t in range(0, m, batch):
            examples = permutation[t : t + batch]
            X_t, Y_t = XT[examples].T, YT[examples].T  # (n_x, m_t), (n_y, m_t)
            net.forward(X_t, training=True)
            cost = net.cost(Y_t, config.l2)
            if not math.isfinite(cost):
                break
            initial_cost = cost if initial_cost is None else initial_cost
            cost_sum += cost * X_t.shape[1]
            net.backward(Y_t, config.l2)
            optimizer.step(net.theta, net.dtheta, alpha)
        metrics = {"train_loss": cost_sum / m if math.isfinite(cost) else math.inf}
        if math.isfinite(cost) and X_dev is not None:
            dev = evaluate(net, X_dev, y_dev)
            metrics.update({f"dev_{k}": v for k, v in dev.items()})
        diverged = not all(math.isfinite(v) for v in metrics.values()) or (
            metrics["train_loss"] > DIVERGENCE_FACTOR * max(initial_cost, 1e-3)
        )
        result.history.append(metrics)
        if diverged:
            result.outcome = Outcome.DIVERGED
            break
        if config.early_stopping is not None and "dev_loss" in metrics:
            if metrics["dev_loss"] < best_loss:
                best_loss, best_theta, stale = metrics["dev_loss"], net.theta.copy(), 0
            else:
                stale += 1
                if stale >= config.early_stopping:
                    net.theta[...] = best_theta
                    result.outcome = Outcome.EARLY_STOPPED
                    break
        if callback is not None and callback(epoch, metrics):
            result.outcome = Outcome.STOPPED
            break

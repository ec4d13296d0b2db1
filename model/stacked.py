"""K networks of one architecture trained together: the caviar strategy in one array.

Every array gains a leading model axis: W^[l] is (K, n_l, n_{l−1}), Z^[l] is (K, n_l, m), θ is
(K, P), and each layer's product is one batched `xp.matmul` over the K networks instead of K
small ones, so the per-step Python and call overhead is paid once for the pack. The layers,
activations, losses and optimizers are those of the single network (they take the leading axis);
what differs per network k is what its own training would have differed in:

    α_k (learning rate and its schedule), β_k, β2_k, ε_k    (K, 1) rows of the optimizer
    λ_k, keep_prob_k                                         (K, 1, 1) per layer
    seed_k: W^[l]_k, its dropout masks D^[l]_k, its mini-batch order and train-metric sample
    batch-norm μ, σ² of its own mini-batch; running statistics (K, n_l, 1)

Each network k draws from its own generators exactly what `model.train` would draw for it alone
(W^[1..L] in order, then one mask per dropout layer per step; its own permutation each epoch), so
member k's parameters and per-epoch metrics equal those of `model.train(configs[k])` to floating
point rounding. A network ends on its own: diverged (dropped at the step its cost is NaN/inf),
early-stopped, stopped by the callback, or out of epochs; the pack then shrinks to the networks
still training, so an ended one costs nothing more.

(Over 300 lines: the pack's network, its per-member state and its epoch loop share one (K, …)
layout and shrink together when a member ends; split apart, each would re-derive the others'.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from model import layers
from model.backend import Backend, get_backend
from model.checkpoint import Progress
from model.config import TrainConfig
from model.network import Architecture, Network, NetworkState
from model.optimizers import Optimizer, make_optimizer
from model.schedules import learning_rate
from model.train import (
    EVAL_CHUNK,
    TRAIN_EVAL_EXAMPLES,
    EpochBook,
    KeepBest,
    Outcome,
    TrainResult,
    architecture,
    diverged,
    encode_targets,
)

# The options whose values networks of one pack must share (`pack_key`); any other may differ.
PACK_OPTIONS = (
    "hidden_units",
    "num_layers",
    "batch_size",
    "optimizer",
    "activation",
    "init",
    "loss",
    "batch_norm",
)


# After each epoch: the metrics of each network still training, by its index in the configs →
# the indices of those to stop.
PackCallback = Callable[[int, dict[int, dict[str, float]]], Collection[int]]


def pack_key(config: TrainConfig) -> tuple:
    """What networks of one pack must share: layer sizes, the update rule and the mini-batches."""
    return (
        config.hidden_widths,
        config.batch_size,
        config.optimizer,
        config.activation,
        config.init,
        config.loss,
        config.batch_norm,
    )


class StackedNetwork(Network):
    """K networks of one architecture in one set of arrays with a leading model axis.

    `arch` is shared except for keep_prob: `keep_probs[k]` gives network k's per hidden layer
    (a layer has a mask buffer when any network drops units in it; a network that keeps all of
    that layer's units draws nothing there, as it would alone).
    """

    def __init__(
        self,
        arch: Architecture,
        backend: Backend,
        seeds: list[int],
        keep_probs: list[tuple[float, ...]],
    ):
        self.members = (len(seeds),)
        self.rngs = [backend.rng(seed) for seed in seeds]
        widest_dropout = tuple(min(p) for p in zip(*keep_probs, strict=True)) or 1.0
        self._build(replace(arch, keep_prob=widest_dropout), backend, self.rngs)
        self._keep(keep_probs)

    def _keep(self, keep_probs: list[tuple[float, ...]]) -> None:
        """Each network's keep_prob per hidden layer, and per layer the (K, 1, 1) rows of
        keep_prob and 1/keep_prob in the arrays' dtype, made once for the pack's life."""
        xp, coefficient = self.backend.xp, self.backend.coefficient
        self.keep_probs = keep_probs
        by_layer = np.array(keep_probs, dtype=np.float64).reshape(len(keep_probs), -1).T
        rows = [p.reshape(-1, 1, 1) for p in by_layer]  # (K, 1, 1) per hidden layer
        self._dropout_rows = [
            (coefficient(xp.asarray(p)), coefficient(xp.asarray(1.0 / p))) for p in rows
        ]

    def _draw_dropout_mask(self, l: int, D: Any) -> None:
        """D^[l]_k from network k's own generator, with its own keep_prob: each network draws
        its U_k, the threshold and scale apply to the pack at once (a network that keeps every
        unit draws nothing; its U_k = 0 gives D_k = 1)."""
        for rng, keep_prob, U_k in zip(self.rngs, self.keep_probs, D, strict=True):
            if keep_prob[l - 1] < 1.0:
                rng.random(U_k.shape, dtype=U_k.dtype, out=U_k)
            else:
                U_k[...] = 0.0
        layers.dropout_mask(self.backend.xp, *self._dropout_rows[l - 1], D)

    def cost_of_each(self, Y: Any, l2: Any = 0.0) -> np.ndarray:
        """J of every network for the last forward pass, as float64 on the host: (K,)."""
        return self.backend.to_host(self._cost(Y, l2)).astype(np.float64)

    def member_state(self, k: int) -> NetworkState:
        """A copy of network k's θ and running statistics."""
        copy = lambda stats: [None if s is None else s[k].copy() for s in stats]  # noqa: E731
        return NetworkState(self.theta[k].copy(), copy(self.running_mean), copy(self.running_var))

    def take(self, keep: list[int]) -> StackedNetwork:
        """The pack of networks `keep` only, each with its parameters, statistics and generator."""
        kept = StackedNetwork.__new__(StackedNetwork)
        kept.members = (len(keep),)
        kept.rngs = [self.rngs[k] for k in keep]
        # _build draws fresh weights from throwaway generators, then θ is overwritten
        throwaway = [self.backend.rng(0) for _ in keep]
        kept._build(self.arch, self.backend, throwaway)
        kept._keep([self.keep_probs[k] for k in keep])
        kept.theta[...] = self.theta[keep]
        statistics = (kept.running_mean, self.running_mean), (kept.running_var, self.running_var)
        for mine, theirs in statistics:
            for l, stat in enumerate(theirs):
                if stat is not None:
                    mine[l][...] = stat[keep]
        return kept


@dataclass
class _Member:
    """The bookkeeping of one network of the pack: what `model.train` keeps for it alone."""

    config: TrainConfig
    index: int  # its place in `train_members`' configs, by which the callback names it
    arch: Architecture
    shuffle_rng: np.random.Generator  # its mini-batch order
    sample: np.ndarray  # its fixed sample of training examples for train_* metrics
    history: list[dict[str, float]] = field(default_factory=list)
    outcome: Outcome = Outcome.COMPLETED
    kept_epoch: int = 0
    initial_cost: float | None = None  # J of the untrained network on its first mini-batch
    book: EpochBook = field(default_factory=lambda: EpochBook(None, None))  # as model.train's
    result: TrainResult | None = None


class _Pack:
    """The networks still training, their optimizer and per-network optimizer rows."""

    def __init__(self, members: list[_Member], net: StackedNetwork, optimizer: Optimizer):
        self.members, self.net, self.optimizer = members, net, optimizer
        xp = net.backend.xp
        column = lambda values, *shape: xp.asarray(  # noqa: E731
            np.array(values, dtype=np.float64).reshape(len(values), *shape)
        )
        self.l2 = column([m.config.l2 for m in members], 1, 1)  # (K, 1, 1)
        self.column = column

    @classmethod
    def start(cls, members: list[_Member], backend: Backend) -> _Pack:
        net = StackedNetwork(
            members[0].arch,
            backend,
            [m.config.seed for m in members],
            [m.arch.keep_probs for m in members],
        )
        return cls(members, net, cls._optimizer(members, net))

    @staticmethod
    def _optimizer(members: list[_Member], net: StackedNetwork) -> Optimizer:
        xp = net.backend.xp
        row = lambda name: xp.asarray(  # noqa: E731
            np.array([getattr(m.config, name) for m in members], dtype=np.float64)[:, None]
        )
        return make_optimizer(
            members[0].config.optimizer,
            net.theta.shape,
            net.backend,
            row("beta"),
            row("beta2"),
            row("epsilon"),
        )

    def alpha(self, epoch: int) -> Any:
        """α_k of this epoch from each network's own schedule: (K, 1)."""
        return self.column(
            [
                learning_rate(
                    c.learning_rate, epoch, schedule=c.lr_schedule, **c.schedule_arguments()
                )
                for c in (m.config for m in self.members)
            ],
            1,
        )

    def take(self, keep: list[int]) -> _Pack:
        """The pack without the networks that ended; their optimizer rows go with them."""
        members = [self.members[k] for k in keep]
        net = self.net.take(keep)
        optimizer = self._optimizer(members, net)
        optimizer.t = self.optimizer.t
        for mine, theirs in zip(optimizer.state, self.optimizer.state, strict=True):
            mine[...] = theirs[keep]
        return _Pack(members, net, optimizer)


def train_members(configs: list[TrainConfig], *data: Any, **options: Any) -> list[TrainResult]:
    """`each_trained` (same arguments), waiting for the last network: result k equals
    `model.train(configs[k], …)`."""
    trained = dict(each_trained(configs, *data, **options))
    return [trained[k] for k in range(len(configs))]


def each_trained(
    configs: list[TrainConfig],
    X_train: Any,
    y_train: Any,
    X_dev: Any | None = None,
    y_dev: Any | None = None,
    n_classes: int | None = None,
    callback: PackCallback | None = None,
    backend: Backend | None = None,
    keep_best: KeepBest | None = None,
) -> Iterator[tuple[int, TrainResult]]:
    """Train every config together, yielding (k, result of configs[k]) as each network ends,
    so that a sweep records a pruned or finished member while the others train on.

    The configs must share `pack_key` (layer sizes, batch size, optimizer, activation, init,
    loss, batch norm); everything else may differ, epochs and early stopping included. After
    each epoch the callback receives the metrics of every network still training, keyed by its
    index in `configs` (one call for the pack: a sweep answers it with one round trip), and
    returns the indices of those to stop; each is then STOPPED alone, as `model.train`'s
    callback would stop it. `keep_best` is `model.train`'s, for every network.
    """
    if not configs:
        return
    keys = {pack_key(c) for c in configs}
    if len(keys) > 1:
        shared = ", ".join(PACK_OPTIONS)
        raise ValueError(f"networks of one pack must share {shared}; got {sorted(keys)}")
    backend = backend or get_backend()
    xp, dtype = backend.xp, backend.dtype
    n_x, m = X_train.shape[0], X_train.shape[1]
    members = [
        _Member(
            config,
            k,
            architecture(config, n_x, n_classes),
            np.random.default_rng(config.seed),
            np.sort(np.random.default_rng(config.seed).permutation(m)[:TRAIN_EVAL_EXAMPLES]),
            book=EpochBook(keep_best, config.early_stopping),
        )
        for k, config in enumerate(configs)
    ]
    pack = _Pack.start(members, backend)
    loss = pack.net.loss
    n_out = pack.net.arch.layer_dims[-1] if loss.name == "softmax_cross_entropy" else n_classes
    # Examples as rows (m, n), as model.train keeps them: a mini-batch gathers rows.
    XT = xp.ascontiguousarray(xp.asarray(X_train, dtype=dtype).T)
    YT = xp.ascontiguousarray(encode_targets(xp, y_train, loss.name, n_out, dtype).T)
    labels = xp.asarray(y_train) if loss.predict_classes is not None else None
    dev = None
    if X_dev is not None:
        dev_labels = backend.to_host(xp.asarray(y_dev))
        Y_dev = encode_targets(xp, dev_labels, loss.name, n_out, dtype)
        dev_classes = xp.asarray(y_dev) if loss.predict_classes is not None else None
        dev = (xp.asarray(X_dev, dtype=dtype), Y_dev, dev_classes)
    ended = _run_epochs(pack, XT, YT, labels, dev, backend, callback)
    while True:
        # overflow in a diverging network is reported as DIVERGED (the state is not left set
        # while the caller has a member)
        with np.errstate(all="ignore"):
            member = next(ended, None)
        if member is None:
            return
        yield member.index, member.result


def _run_epochs(
    pack: _Pack,
    XT: Any,
    YT: Any,
    labels: Any,
    dev: tuple | None,
    backend: Backend,
    callback: PackCallback | None,
) -> Iterator[_Member]:
    """The lock-step epochs; yields each member as it ends."""
    xp = backend.xp
    m, batch = XT.shape[0], pack.members[0].config.batch_size
    for epoch in range(1, max(member.config.epochs for member in pack.members) + 1):
        alpha = pack.alpha(epoch)
        order = xp.asarray(np.stack([member.shuffle_rng.permutation(m) for member in pack.members]))
        cost_sum = np.zeros(len(pack.members))
        for t in range(0, m, batch):
            examples = order[:, t : t + batch]  # (K, m_t): each network's own mini-batch
            X_t = XT[examples].swapaxes(-1, -2)  # (K, n_x, m_t)
            Y_t = YT[examples].swapaxes(-1, -2)  # (K, n_y, m_t)
            pack.net.forward(X_t, training=True)
            cost = pack.net.cost_of_each(Y_t, pack.l2)  # (K,)
            finite = np.isfinite(cost)
            for k, (member, J) in enumerate(zip(pack.members, cost, strict=True)):
                if member.initial_cost is None and math.isfinite(J):
                    member.initial_cost = float(J)
                if not math.isfinite(J):  # diverged: it leaves the pack, the others go on
                    member.history.append({"minibatch_cost": math.inf})
                    _end(member, Outcome.DIVERGED, pack.net, k)
                    yield member
            cost_sum += np.where(finite, cost, 0.0) * X_t.shape[-1]
            pack.net.backward(Y_t, pack.l2)
            pack.optimizer.step(pack.net.theta, pack.net.dtheta, alpha)
            if not finite.all():
                keep = np.flatnonzero(finite).tolist()
                pack = pack.take(keep)
                if not keep:
                    return
                alpha, order, cost_sum = alpha[keep], order[keep], cost_sum[keep]
        metrics = [{"minibatch_cost": total / m} for total in cost_sum]
        _evaluate_into(metrics, "train", pack, XT, YT, labels)
        if dev is not None:
            _evaluate_into(metrics, "dev", pack, *dev)
        ended = [
            _epoch_ends(member, epoch, measured, pack.net, k)
            for k, (member, measured) in enumerate(zip(pack.members, metrics, strict=True))
        ]
        training = {
            member.index: measured
            for member, measured, done in zip(pack.members, metrics, ended, strict=True)
            if not done
        }
        stop = set(callback(epoch, training)) if callback is not None and training else set()
        keep = []
        for k, (member, done) in enumerate(zip(pack.members, ended, strict=True)):
            if not done and member.index in stop:
                done = _end(member, Outcome.STOPPED, pack.net, k)
            elif not done and epoch == member.config.epochs:
                done = _end(member, Outcome.COMPLETED, pack.net, k)
            if done:
                yield member
            else:
                keep.append(k)
        if len(keep) < len(pack.members):
            if not keep:
                return
            pack = pack.take(keep)


def _epoch_ends(
    member: _Member, epoch: int, metrics: dict[str, float], net: StackedNetwork, k: int
) -> bool:
    """Record network k's epoch as `model.train` does, up to its callback; True when it diverged
    or stopped early."""
    member.history.append(metrics)
    if diverged(metrics, member.initial_cost):
        return _end(member, Outcome.DIVERGED, net, k)
    member.kept_epoch = epoch
    if member.book.record(epoch, metrics, lambda: net.member_state(k)):
        return _end(member, Outcome.EARLY_STOPPED, net, k)
    return False


def _end(member: _Member, outcome: Outcome, net: StackedNetwork, k: int) -> bool:
    """Network k is done: its result holds a single `Network` with the parameters `model.train`
    would return: the best epoch's by `keep_best`, else after early stopping the lowest
    dev_loss epoch's, else (and always when it diverged) the last's."""
    chosen = member.book.chosen(outcome) if outcome is not Outcome.DIVERGED else None
    state, member.kept_epoch = chosen or (net.member_state(k), member.kept_epoch)
    alone = Network(member.arch, net.backend, seed=member.config.seed)
    alone.restore(state)
    member.outcome = outcome
    # the epoch it holds, with no optimizer moments or generators: continued, it goes on from
    # that epoch's parameters (a continued packed trial kept at epoch 21 of 40 went on at 41)
    progress = None
    if outcome is not Outcome.DIVERGED:
        # and the untrained network's cost, the divergence reference a continued run keeps
        progress = Progress(
            epoch=member.kept_epoch,
            options=member.config.to_dict(),
            initial_cost=member.initial_cost,
        )
    member.result = TrainResult(
        alone, outcome, member.history, member.kept_epoch, progress=progress
    )
    return True


def _evaluate_into(
    metrics: list[dict[str, float]],
    split: str,
    pack: _Pack,
    X: Any,
    Y: Any,
    labels: Any,
) -> None:
    """Inference-mode loss (and accuracy) of every network, as `model.evaluate` computes them.

    For "train", X, Y, labels are the whole training set (rows, as gathered) and each network
    is measured on its own sample; for "dev" they are the dev set, shared by all.
    """
    net, xp = pack.net, pack.net.backend.xp
    if split == "train":
        sample = xp.asarray(np.stack([member.sample for member in pack.members]))  # (K, s)
        X, Y = X[sample].swapaxes(-1, -2), Y[sample].swapaxes(-1, -2)  # (K, n, s)
        labels = None if labels is None else labels[sample]  # (K, s)
    m = X.shape[-1]
    total_cost = np.zeros(len(pack.members))
    correct = np.zeros(len(pack.members), dtype=np.int64)
    for start in range(0, m, EVAL_CHUNK):
        chunk = slice(start, start + EVAL_CHUNK)
        Yhat = net.forward(X[..., chunk], training=False)  # (K, n_y, m_c)
        total_cost += net.cost_of_each(Y[..., chunk]) * Yhat.shape[-1]
        if labels is not None:
            hits = net.loss.predict_classes(xp, Yhat) == labels[..., chunk]
            correct += net.backend.to_host(hits.sum(axis=-1))
    for k, measured in enumerate(metrics):
        measured[f"{split}_loss"] = float(total_cost[k] / m)
        if labels is not None:
            measured[f"{split}_accuracy"] = int(correct[k]) / m

"""An L-layer fully connected network with its parameters in one flat vector θ.

Layers l = 1..L compute Z^[l] = W^[l]·A^[l−1] + b^[l] (or batch norm instead of b), then
A^[l] = g(Z^[l]) with dropout on hidden layers; the output layer applies the loss's activation.
All of W, b, γ, β are views into θ and all of dW, db, dγ, dβ into dθ, so an optimizer updates
everything with one fused step and gradient checking can perturb θ_i directly.

Forward and backward write into buffers that are allocated once per mini-batch size and reused,
so a training epoch allocates almost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model import activations, layers
from model.backend import Backend, get_backend
from model.initializers import init_weights
from model.losses import get_loss


@dataclass(frozen=True)
class Architecture:
    """What the network is: layer sizes (n_x, n_1, …, n_L) and the choices applied to them.

    `keep_prob` is one probability for every hidden layer or a tuple with one per hidden layer.
    """

    layer_dims: tuple[int, ...]
    activation: str = "relu"
    loss: str = "softmax_cross_entropy"
    init: str = "he"
    batch_norm: bool = False
    keep_prob: float | tuple[float, ...] = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_dims", tuple(self.layer_dims))
        if not isinstance(self.keep_prob, int | float):
            object.__setattr__(self, "keep_prob", tuple(self.keep_prob))
        if len(self.layer_dims) < 2 or min(self.layer_dims) < 1:
            raise ValueError(f"layer_dims needs input and output sizes ≥ 1: {self.layer_dims=}")
        if self.activation not in activations.HIDDEN:
            choices = sorted(activations.HIDDEN)
            raise ValueError(f"unknown {self.activation=}; choose one of {choices}")
        if isinstance(self.keep_prob, tuple) and len(self.keep_prob) != self.L - 1:
            raise ValueError(
                f"keep_prob needs one value per hidden layer ({self.L - 1}): {self.keep_prob=}"
            )
        given = self.keep_prob if isinstance(self.keep_prob, tuple) else (self.keep_prob,)
        if not all(0.0 < p <= 1.0 for p in given):
            raise ValueError(f"keep_prob must be in (0, 1]: {self.keep_prob=}")
        get_loss(self.loss)

    @property
    def L(self) -> int:
        return len(self.layer_dims) - 1

    @property
    def keep_probs(self) -> tuple[float, ...]:
        """keep_prob of hidden layers 1..L−1."""
        if isinstance(self.keep_prob, tuple):
            return self.keep_prob
        return (self.keep_prob,) * (self.L - 1)

    def uses_batch_norm(self, l: int) -> bool:
        """Batch norm on hidden layers; the output layer keeps its bias."""
        return self.batch_norm and l < self.L

    def uses_dropout(self, l: int) -> bool:
        return l < self.L and self.keep_probs[l - 1] < 1.0


@dataclass(frozen=True)
class NetworkState:
    """Everything a trained network's predictions depend on: θ and the batch-norm running μ, σ²."""

    theta: Any
    running_mean: list[Any]
    running_var: list[Any]


class _Workspace:
    """Buffers for one mini-batch size m, one per quantity of the notes (index l = layer):

    forward   Z = W·A_prev + b;  batch norm: Z_norm, Z̃ = γ·Z_norm + β (and 1/σ);  G = g(Z or Z̃);
              D the dropout mask and A = G·D (without dropout A is G itself);  A^[L] = Ŷ
    backward  dA = Wᵀ·dZ^[l+1];  dG = dA·D (without dropout dG is dA);  dZ̃ = dG·g′(G);  dZ
    and 1, a column of m ones: a sum over the examples is a product with it (`model.layers`)
    """

    def __init__(
        self, arch: Architecture, backend: Backend, m: int, training: bool, members: tuple = ()
    ):
        xp, dtype, dims, L = backend.xp, backend.dtype, arch.layer_dims, arch.L

        def per_layer(wanted: Callable[[int], bool], columns: int = m) -> list[Any]:
            """[None, buffer of layer 1, …, layer L], None where layer l does not use it."""
            return [None] + [
                xp.empty((*members, dims[l], columns), dtype=dtype) if wanted(l) else None
                for l in range(1, L + 1)
            ]

        hidden, bn = (lambda l: l < L), arch.uses_batch_norm
        trained_bn = lambda l: training and bn(l)  # noqa: E731
        self.Z = per_layer(lambda l: True)
        self.Z_norm = per_layer(trained_bn)
        self.inv_std = per_layer(trained_bn, columns=1)
        self.Z_tilde = per_layer(bn)
        self.G = per_layer(hidden)
        self.D = per_layer(lambda l: training and arch.uses_dropout(l))
        self.A = per_layer(lambda l: l == L or self.D[l] is not None)
        self.A = [G if A is None else A for A, G in zip(self.A, self.G, strict=True)]
        self.dA = per_layer(lambda l: training and hidden(l))
        self.dG = per_layer(lambda l: self.D[l] is not None)
        self.dG = [dA if dG is None else dG for dG, dA in zip(self.dG, self.dA, strict=True)]
        self.dZ_tilde = per_layer(lambda l: training and bn(l))
        self.dZ = per_layer(lambda l: training)
        self.ones = xp.ones((m, 1), dtype=dtype)


class Network:
    """Parameters, running statistics and forward/backward passes of one architecture."""

    members: tuple[int, ...] = ()  # leading model axis of every array: () here, (K,) stacked

    def __init__(self, arch: Architecture, backend: Backend | None = None, seed: int | None = 0):
        backend = backend or get_backend()
        self.rng = backend.rng(seed)
        self._build(arch, backend, [self.rng])

    def _build(self, arch: Architecture, backend: Backend, rngs: list[Any]) -> None:
        """θ, dθ, their views and the running statistics; W^[l] of member k drawn from rngs[k]."""
        self.arch, self.backend, members = arch, backend, self.members
        self.loss = get_loss(arch.loss)
        self.hidden_g, self.hidden_g_backward = activations.HIDDEN[arch.activation]
        xp, dtype, dims, L = backend.xp, backend.dtype, arch.layer_dims, arch.L

        shapes: list[tuple[str, int, tuple[int, int]]] = []
        for l in range(1, L + 1):
            shapes.append(("W", l, (dims[l], dims[l - 1])))
            if arch.uses_batch_norm(l):
                shapes += [("gamma", l, (dims[l], 1)), ("beta", l, (dims[l], 1))]
            else:
                shapes.append(("b", l, (dims[l], 1)))
        size = sum(r * c for _, _, (r, c) in shapes)
        self.theta = xp.zeros((*members, size), dtype=dtype)
        self.dtheta = xp.zeros((*members, size), dtype=dtype)
        params: dict[str, list[Any]] = {k: [None] * (L + 1) for k in ("W", "b", "gamma", "beta")}
        grads: dict[str, list[Any]] = {k: [None] * (L + 1) for k in ("W", "b", "gamma", "beta")}
        offset = 0
        self._blocks: dict[str, slice] = {}
        for kind, l, (r, c) in shapes:
            self._blocks[f"{kind}{l}"] = slice(offset, offset + r * c)
            params[kind][l] = self.theta[..., offset : offset + r * c].reshape(*members, r, c)
            grads[kind][l] = self.dtheta[..., offset : offset + r * c].reshape(*members, r, c)
            offset += r * c
        self.W, self.b, self.gamma, self.beta = (params[k] for k in ("W", "b", "gamma", "beta"))
        self.dW, self.db, self.dgamma, self.dbeta = (grads[k] for k in ("W", "b", "gamma", "beta"))

        for l in range(1, L + 1):
            W_of_member = [self.W[l]] if not members else list(self.W[l])
            for W, rng in zip(W_of_member, rngs, strict=True):
                init_weights(arch.init, W, rng)
            if arch.uses_batch_norm(l):
                self.gamma[l][...] = 1.0
        self.running_mean = [
            xp.zeros((*members, dims[l], 1), dtype=dtype) if arch.uses_batch_norm(l) else None
            for l in range(L + 1)
        ]
        self.running_var = [
            xp.ones((*members, dims[l], 1), dtype=dtype) if arch.uses_batch_norm(l) else None
            for l in range(L + 1)
        ]
        self._workspaces: dict[tuple[int, bool], _Workspace] = {}
        self._ws: _Workspace | None = None
        self._X: Any = None

    def state(self) -> NetworkState:
        """A copy of θ and the running statistics (early stopping keeps the best epoch's)."""
        copy = lambda stats: [None if s is None else s.copy() for s in stats]  # noqa: E731
        return NetworkState(self.theta.copy(), copy(self.running_mean), copy(self.running_var))

    def restore(self, state: NetworkState) -> None:
        """Put back a `state()`: the network predicts exactly as it did when it was taken."""
        self.theta[...] = state.theta
        for mine, saved in (
            (self.running_mean, state.running_mean),
            (self.running_var, state.running_var),
        ):
            for l, stat in enumerate(saved):
                if stat is not None:
                    mine[l][...] = stat

    def blocks(self) -> dict[str, slice]:
        """Where each parameter block (W1, b1, gamma1, beta1, W2, …) lies in θ."""
        return dict(self._blocks)

    def _workspace(self, m: int, training: bool) -> _Workspace:
        key = (m, training)
        if key not in self._workspaces:
            self._workspaces[key] = _Workspace(self.arch, self.backend, m, training, self.members)
        return self._workspaces[key]

    def forward(self, X: Any, training: bool, dropout_masks: list[Any] | None = None) -> Any:
        """Ŷ = A^[L] for X (n_x, m); caches what `backward` needs. The result is a reused buffer.

        `dropout_masks` (D^[l] per hidden layer, index 0 unused) replaces fresh draws: gradient
        checking and the PyTorch comparison hold the mask fixed.
        """
        xp, arch, L = self.backend.xp, self.arch, self.arch.L
        ws = self._workspace(X.shape[-1], training)
        A_prev = X
        for l in range(1, L + 1):
            if l == L:
                layers.dense_forward(xp, self.W[l], self.b[l], A_prev, ws.Z[l])  # logits
                self.loss.output(xp, ws.Z[l], ws.A[l])  # Ŷ
                break
            if arch.uses_batch_norm(l):
                Z = layers.dense_forward(xp, self.W[l], None, A_prev, ws.Z[l])
                if training:
                    mu, var = layers.batchnorm_forward(
                        xp,
                        Z,
                        self.gamma[l],
                        self.beta[l],
                        ws.Z_norm[l],
                        ws.Z_tilde[l],
                        ws.inv_std[l],
                        ws.ones,
                    )
                    layers.update_running_stats(self.running_mean[l], self.running_var[l], mu, var)
                else:
                    layers.batchnorm_inference(
                        xp,
                        Z,
                        self.gamma[l],
                        self.beta[l],
                        self.running_mean[l],
                        self.running_var[l],
                        ws.Z_tilde[l],
                    )
                self.hidden_g(xp, ws.Z_tilde[l], ws.G[l])  # G = g(Z̃)
            else:
                layers.dense_forward(xp, self.W[l], self.b[l], A_prev, ws.Z[l])
                self.hidden_g(xp, ws.Z[l], ws.G[l])  # G = g(Z)
            D = ws.D[l]
            if D is not None:
                if dropout_masks is None:
                    self._draw_dropout_mask(l, D)
                else:
                    D[...] = dropout_masks[l]
                layers.dropout_forward(xp, ws.G[l], D, ws.A[l])  # A = G·D
            A_prev = ws.A[l]
        self._ws, self._X = ws, X
        return ws.A[L]

    def _draw_dropout_mask(self, l: int, D: Any) -> None:
        """D^[l] = 1[u < keep_prob] / keep_prob from this network's generator."""
        layers.draw_dropout_mask(self.backend.xp, self.rng, self.arch.keep_probs[l - 1], D)

    def cost(self, Y: Any, l2: float = 0.0) -> float:
        """J = (1/m) Σ L(ŷ, y) + (λ/2m) Σ_l ‖W^[l]‖²_F for the batch of the last forward pass."""
        return float(self._cost(Y, l2))

    def _cost(self, Y: Any, l2: Any) -> Any:
        """J of each member: a 0-d array here, (K,) for K stacked networks."""
        J = self.loss.cost(self.backend.xp, self._ws.Z[self.arch.L], Y)
        if _nonzero(l2):
            m = Y.shape[-1]
            penalty = sum(_squared_norm(W) for W in self.W[1:])
            coefficient = self.backend.coefficient(l2 / (2 * m))  # λ: a number or (K, 1, 1)
            J = J + (coefficient * penalty).reshape(J.shape)
        return J

    def backward(self, Y: Any, l2: float = 0.0) -> Any:
        """dθ for the last forward pass (training mode) and labels Y; returns dθ.

        Every g′ is taken from G = g(Z), the activation before dropout: the mask enters only
        through dG = dA·D.
        """
        xp, arch, L, ws = self.backend.xp, self.arch, self.arch.L, self._ws
        m = Y.shape[-1]
        xp.subtract(ws.A[L], Y, out=ws.dZ[L])
        ws.dZ[L] *= 1.0 / m  # dZ^[L] = (Ŷ − Y)/m: the notes' 1/m of dW and db, applied once here
        for l in range(L, 0, -1):
            if l < L:
                if ws.D[l] is not None:
                    layers.dropout_backward(xp, ws.dA[l], ws.D[l], ws.dG[l])  # dG = dA·D
                if arch.uses_batch_norm(l):
                    self.hidden_g_backward(xp, ws.dG[l], ws.G[l], ws.dZ_tilde[l])  # dZ̃ = dG·g′
                    layers.batchnorm_backward(
                        xp,
                        ws.dZ_tilde[l],
                        ws.Z_norm[l],
                        self.gamma[l],
                        ws.inv_std[l],
                        self.dgamma[l],
                        self.dbeta[l],
                        ws.dZ[l],
                        ws.ones,
                    )
                else:
                    self.hidden_g_backward(xp, ws.dG[l], ws.G[l], ws.dZ[l])  # dZ = dG·g′
            A_prev = ws.A[l - 1] if l > 1 else self._X
            dA_prev = ws.dA[l - 1] if l > 1 else None
            layers.dense_backward(
                xp, ws.dZ[l], A_prev, self.W[l], self.dW[l], self.db[l], dA_prev, ws.ones
            )
        if _nonzero(l2):
            decay = self.backend.coefficient(l2 / m)  # λ/m: a number, or (K, 1, 1) per network
            for W, dW in zip(self.W[1:], self.dW[1:], strict=True):
                dW += decay * W  # weight decay: the gradient of (λ/2m)‖W‖²
        return self.dtheta

    def predict(self, X: Any) -> Any:
        """Inference-mode Ŷ (no dropout, running batch-norm statistics), as a fresh array."""
        return self.forward(X, training=False).copy()


def _squared_norm(W: Any) -> Any:
    """‖W‖²_F of each network as a (…, 1, 1) array: the dot product of W's entries with
    themselves (for a pack's stacked W a quarter of the time of (W * W).sum)."""
    w = W.reshape(*W.shape[:-2], 1, -1)  # each network's W as one row
    return w @ w.swapaxes(-1, -2)


def _nonzero(l2: Any) -> bool:
    """λ ≠ 0: a number, or any member's entry of a per-member array of λ."""
    return bool(l2.any()) if hasattr(l2, "any") else bool(l2)

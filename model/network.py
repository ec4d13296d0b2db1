"""An L-layer fully connected network with its parameters in one flat vector θ.

Layers l = 1..L compute Z^[l] = W^[l]·A^[l−1] + b^[l] (or batch norm instead of b), then
A^[l] = g(Z^[l]) with dropout on hidden layers; the output layer applies the loss's activation.
All of W, b, γ, β are views into θ and all of dW, db, dγ, dβ into dθ, so an optimizer updates
everything with one fused step and gradient checking can perturb θ_i directly.

Forward and backward write into buffers that are allocated once per mini-batch size and reused,
so a training epoch allocates almost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from model import activations, layers
from model.backend import Backend, get_backend
from model.initializers import init_weights
from model.losses import get_loss


@dataclass(frozen=True)
class Architecture:
    """What the network is: layer sizes (n_x, n_1, …, n_L) and the choices applied to them."""

    layer_dims: tuple[int, ...]
    activation: str = "relu"
    loss: str = "softmax_cross_entropy"
    init: str = "he"
    batch_norm: bool = False
    keep_prob: float = 1.0

    def __post_init__(self) -> None:
        if len(self.layer_dims) < 2 or min(self.layer_dims) < 1:
            raise ValueError(f"layer_dims needs input and output sizes ≥ 1: {self.layer_dims=}")
        if self.activation not in activations.HIDDEN:
            choices = sorted(activations.HIDDEN)
            raise ValueError(f"unknown {self.activation=}; choose one of {choices}")
        if not 0.0 < self.keep_prob <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1]: {self.keep_prob=}")
        get_loss(self.loss)

    @property
    def L(self) -> int:
        return len(self.layer_dims) - 1

    def uses_batch_norm(self, l: int) -> bool:
        """Batch norm on hidden layers; the output layer keeps its bias."""
        return self.batch_norm and l < self.L


class _Workspace:
    """Buffers for one mini-batch size m: what forward caches and what backward writes."""

    def __init__(self, arch: Architecture, backend: Backend, m: int, training: bool):
        xp, dtype, dims, L = backend.xp, backend.dtype, arch.layer_dims, arch.L
        empty = lambda n: xp.empty((n, m), dtype=dtype)  # noqa: E731
        self.A = [None] + [empty(dims[l]) for l in range(1, L + 1)]  # A[L] = Ŷ
        self.Z = [None] + [
            empty(dims[l]) if (l == L or arch.uses_batch_norm(l)) else None for l in range(1, L + 1)
        ]  # Z^[L] (logits for the cost) and Z_norm of batch-norm layers; else Z lives in A
        self.inv_std = [None] + [
            xp.empty((dims[l], 1), dtype=dtype) if arch.uses_batch_norm(l) else None
            for l in range(1, L + 1)
        ]
        dropout = training and arch.keep_prob < 1.0
        self.D = [None] + [empty(dims[l]) if dropout and l < L else None for l in range(1, L + 1)]
        self.dZ = [None] + [empty(dims[l]) for l in range(1, L + 1)] if training else None
        self.dA = [None] + [empty(dims[l]) for l in range(1, L + 1)] if training else None


class Network:
    """Parameters, running statistics and forward/backward passes of one architecture."""

    def __init__(self, arch: Architecture, backend: Backend | None = None, seed: int | None = 0):
        self.arch = arch
        self.backend = backend or get_backend()
        self.loss = get_loss(arch.loss)
        self.hidden_g, self.hidden_g_backward = activations.HIDDEN[arch.activation]
        self.rng = self.backend.rng(seed)
        xp, dtype, dims, L = self.backend.xp, self.backend.dtype, arch.layer_dims, arch.L

        shapes: list[tuple[str, int, tuple[int, int]]] = []
        for l in range(1, L + 1):
            shapes.append(("W", l, (dims[l], dims[l - 1])))
            if arch.uses_batch_norm(l):
                shapes += [("gamma", l, (dims[l], 1)), ("beta", l, (dims[l], 1))]
            else:
                shapes.append(("b", l, (dims[l], 1)))
        size = sum(r * c for _, _, (r, c) in shapes)
        self.theta = xp.zeros(size, dtype=dtype)
        self.dtheta = xp.zeros(size, dtype=dtype)
        params: dict[str, list[Any]] = {k: [None] * (L + 1) for k in ("W", "b", "gamma", "beta")}
        grads: dict[str, list[Any]] = {k: [None] * (L + 1) for k in ("W", "b", "gamma", "beta")}
        offset = 0
        for kind, l, (r, c) in shapes:
            params[kind][l] = self.theta[offset : offset + r * c].reshape(r, c)
            grads[kind][l] = self.dtheta[offset : offset + r * c].reshape(r, c)
            offset += r * c
        self.W, self.b, self.gamma, self.beta = (params[k] for k in ("W", "b", "gamma", "beta"))
        self.dW, self.db, self.dgamma, self.dbeta = (grads[k] for k in ("W", "b", "gamma", "beta"))

        for l in range(1, L + 1):
            init_weights(arch.init, self.W[l], self.rng)
            if arch.uses_batch_norm(l):
                self.gamma[l][...] = 1.0
        self.running_mean = [
            xp.zeros((dims[l], 1), dtype=dtype) if arch.uses_batch_norm(l) else None
            for l in range(L + 1)
        ]
        self.running_var = [
            xp.ones((dims[l], 1), dtype=dtype) if arch.uses_batch_norm(l) else None
            for l in range(L + 1)
        ]
        self._workspaces: dict[tuple[int, bool], _Workspace] = {}
        self._ws: _Workspace | None = None
        self._X: Any = None

    def _workspace(self, m: int, training: bool) -> _Workspace:
        key = (m, training)
        if key not in self._workspaces:
            self._workspaces[key] = _Workspace(self.arch, self.backend, m, training)
        return self._workspaces[key]

    def forward(self, X: Any, training: bool) -> Any:
        """Ŷ = A^[L] for X (n_x, m); caches what `backward` needs. The result is a reused buffer."""
        xp, arch, L = self.backend.xp, self.arch, self.arch.L
        ws = self._workspace(X.shape[1], training)
        A_prev = X
        for l in range(1, L + 1):
            A = ws.A[l]
            if l == L:
                layers.dense_forward(xp, self.W[l], self.b[l], A_prev, ws.Z[l])  # logits
                self.loss.output(xp, ws.Z[l], A)  # Ŷ
            elif arch.uses_batch_norm(l):
                Z = layers.dense_forward(xp, self.W[l], None, A_prev, ws.Z[l])
                if training:
                    mu, var = layers.batchnorm_forward(
                        xp, Z, self.gamma[l], self.beta[l], A, ws.inv_std[l]
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
                        A,
                    )
                self.hidden_g(xp, A, A)
            else:
                layers.dense_forward(xp, self.W[l], self.b[l], A_prev, A)
                self.hidden_g(xp, A, A)  # g(Z) in place: backward needs only A
            if ws.D[l] is not None:
                layers.dropout_forward(xp, A, arch.keep_prob, self.rng, ws.D[l])
            A_prev = A
        self._ws, self._X = ws, X
        return ws.A[L]

    def cost(self, Y: Any, l2: float = 0.0) -> float:
        """J = (1/m) Σ L(ŷ, y) + (λ/2m) Σ_l ‖W^[l]‖²_F for the batch of the last forward pass."""
        xp = self.backend.xp
        J = self.loss.cost(xp, self._ws.Z[self.arch.L], Y)
        if l2:
            m = Y.shape[1]
            J += l2 / (2 * m) * sum(float(xp.vdot(W, W)) for W in self.W[1:])
        return J

    def backward(self, Y: Any, l2: float = 0.0) -> Any:
        """dθ for the last forward pass (training mode) and labels Y; returns dθ."""
        xp, arch, L, ws = self.backend.xp, self.arch, self.arch.L, self._ws
        m = Y.shape[1]
        dZ = ws.dZ[L]
        xp.subtract(ws.A[L], Y, out=dZ)
        dZ *= 1.0 / m  # dZ^[L] = (Ŷ − Y)/m: the notes' 1/m of dW and db, applied once here
        for l in range(L, 0, -1):
            if l < L:
                dA = ws.dA[l]
                if ws.D[l] is not None:
                    layers.dropout_backward(dA, ws.D[l])
                dZ = self.hidden_g_backward(xp, dA, ws.A[l], ws.dZ[l])
                if arch.uses_batch_norm(l):
                    layers.batchnorm_backward(
                        xp, dZ, ws.Z[l], self.gamma[l], ws.inv_std[l], self.dgamma[l], self.dbeta[l]
                    )
            A_prev = ws.A[l - 1] if l > 1 else self._X
            dA_prev = ws.dA[l - 1] if l > 1 else None
            layers.dense_backward(xp, dZ, A_prev, self.W[l], self.dW[l], self.db[l], dA_prev)
        if l2:
            for W, dW in zip(self.W[1:], self.dW[1:], strict=True):
                dW += (l2 / m) * W  # weight decay: the gradient of (λ/2m)‖W‖²
        return self.dtheta

    def predict(self, X: Any) -> Any:
        """Inference-mode Ŷ (no dropout, running batch-norm statistics), as a fresh array."""
        return self.forward(X, training=False).copy()

"""The building blocks of one layer, forward beside backward.

    dense:       Z = W·A_prev + b                 dW = dZ·A_prevᵀ, db = Σ_i dZ, dA_prev = Wᵀ·dZ
    batch norm:  Z̃ = γ·(Z − μ)/√(σ² + ε) + β     (running μ, σ² are used at inference)
    dropout:     A = G·D, D = Bernoulli(keep_prob) / keep_prob   (inverted dropout of G = g(Z))

Shapes follow the notes: A_prev (n_{l−1}, m), W (n_l, n_{l−1}), b (n_l, 1), Z (n_l, m).
The 1/m of dW and db is already inside dZ (see `model.network`), so these are exact gradients.
A sum over the examples is written as a product with a column of m ones, Σ_i dZ = dZ·1: NumPy's
reduction along the last axis takes 3–8× as long as the matrix-vector product on these shapes.
Every function also takes a leading model axis, (K, n_l, m) etc., for K networks trained
together (`model.stacked`): the examples are always the last axis, the units the one before.
"""

from __future__ import annotations

from typing import Any

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # running statistics are exponentially weighted averages over mini-batches


def dense_forward(xp: Any, W: Any, b: Any | None, A_prev: Any, Z: Any) -> Any:
    """Z = W·A_prev + b, written into Z."""
    xp.matmul(W, A_prev, out=Z)  # (n_l, m)
    if b is not None:
        Z += b
    return Z


def dense_backward(
    xp: Any,
    dZ: Any,
    A_prev: Any,
    W: Any,
    dW: Any,
    db: Any | None,
    dA_prev: Any | None,
    ones: Any,
) -> None:
    """dA_prev = Wᵀ·dZ (skipped for the input layer), dW = dZ·A_prevᵀ, db = dZ·1 = Σ dZ over the
    examples (`ones`: a column of m ones)."""
    if dA_prev is not None:
        xp.matmul(W.swapaxes(-1, -2), dZ, out=dA_prev)  # (n_{l−1}, m)
    xp.matmul(dZ, A_prev.swapaxes(-1, -2), out=dW)  # (n_l, n_{l−1})
    if db is not None:
        xp.matmul(dZ, ones, out=db)  # (n_l, 1)


def batchnorm_forward(
    xp: Any, Z: Any, gamma: Any, beta: Any, Z_norm: Any, Z_tilde: Any, inv_std: Any, ones: Any
) -> Any:
    """Training mode: Z_norm = (Z − μ)/√(σ² + ε) over the mini-batch, Z̃ = γ·Z_norm + β.

    Returns the batch mean and variance (n_l, 1) for the running averages; `inv_std` receives
    1/√(σ² + ε), which the backward pass needs with Z_norm. Z itself is left as it was. `ones`:
    a column of m ones (μ = Z·1/m).
    """
    m = Z.shape[-1]
    mu = (Z @ ones) / m  # (n_l, 1)
    xp.subtract(Z, mu, out=Z_norm)  # Z − μ, normalized two lines down
    var = ((Z_norm * Z_norm) @ ones) / m  # (n_l, 1)
    xp.sqrt(var + BN_EPSILON, out=inv_std)
    xp.reciprocal(inv_std, out=inv_std)
    Z_norm *= inv_std
    xp.multiply(Z_norm, gamma, out=Z_tilde)
    Z_tilde += beta
    return mu, var


def batchnorm_inference(
    xp: Any, Z: Any, gamma: Any, beta: Any, running_mean: Any, running_var: Any, Z_tilde: Any
) -> Any:
    """Inference mode: normalize with the running statistics instead of the batch's."""
    scale = gamma / xp.sqrt(running_var + BN_EPSILON)  # (n_l, 1)
    xp.subtract(Z, running_mean, out=Z_tilde)
    Z_tilde *= scale
    Z_tilde += beta
    return Z_tilde


def update_running_stats(running_mean: Any, running_var: Any, mu: Any, var: Any) -> None:
    """μ̄ ← 0.9·μ̄ + 0.1·μ (likewise σ̄²): the notes' exponentially weighted estimate for test time."""
    running_mean *= BN_MOMENTUM
    running_mean += (1.0 - BN_MOMENTUM) * mu
    running_var *= BN_MOMENTUM
    running_var += (1.0 - BN_MOMENTUM) * var


def batchnorm_backward(
    xp: Any,
    dZ_tilde: Any,
    Z_norm: Any,
    gamma: Any,
    inv_std: Any,
    dgamma: Any,
    dbeta: Any,
    dZ: Any,
    ones: Any,
) -> Any:
    """dγ = Σ dZ̃·Z_norm, dβ = Σ dZ̃ (sums over the examples: products with `ones`, a column of m
    ones), dZ = γ/(m·σ)·(m·dZ̃ − dβ − Z_norm·dγ), written into dZ."""
    m = dZ_tilde.shape[-1]
    xp.matmul(dZ_tilde, ones, out=dbeta)  # (n_l, 1)
    xp.matmul(dZ_tilde * Z_norm, ones, out=dgamma)  # (n_l, 1)
    xp.multiply(dZ_tilde, m, out=dZ)
    dZ -= dbeta
    dZ -= Z_norm * dgamma
    dZ *= gamma * inv_std / m
    return dZ


def draw_dropout_mask(xp: Any, rng: Any, keep_prob: float, D: Any) -> Any:
    """D = 1[u < keep_prob] / keep_prob, u ~ U(0, 1), written into D: the inverted-dropout mask."""
    rng.random(D.shape, dtype=D.dtype, out=D)
    return dropout_mask(xp, keep_prob, 1.0 / keep_prob, D)


def dropout_mask(xp: Any, keep_prob: Any, scale: Any, U: Any) -> Any:
    """U becomes D = 1[U < keep_prob]·scale in place (scale = 1/keep_prob), U ~ U(0, 1) drawn by
    the caller. Both are numbers, or (K, 1, 1) rows for a pack of K networks, each network's U
    from its own generator (U = 0 for a network that keeps every unit: D = 1)."""
    xp.less(U, keep_prob, out=U)
    U *= scale
    return U


def dropout_forward(xp: Any, G: Any, D: Any, A: Any) -> Any:
    """A = G·D: the activation G = g(Z) with dropped units zeroed, kept ones scaled so E[A] = G."""
    return xp.multiply(G, D, out=A)


def dropout_backward(xp: Any, dA: Any, D: Any, dG: Any) -> Any:
    """dG = dA·D: the units dropped in the forward pass get no gradient."""
    return xp.multiply(dA, D, out=dG)

"""Batch norm, dropout, initialization and the forward/backward pass against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from model import get_backend, layers
from model.network import Architecture, Network


def test_batchnorm_training_normalizes_and_inference_uses_running_stats(backend64, rng):
    xp = np
    Z = rng.normal(3.0, 2.0, (4, 256))
    gamma, beta = np.full((4, 1), 2.0), np.full((4, 1), -1.0)
    out, Z_norm, inv_std = np.empty_like(Z), np.empty_like(Z), np.empty((4, 1))
    ones = np.ones((256, 1))
    mu, var = layers.batchnorm_forward(xp, Z, gamma, beta, Z_norm, out, inv_std, ones)
    np.testing.assert_allclose(Z_norm.std(axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(out.mean(axis=1), -1.0, atol=1e-12)  # β
    np.testing.assert_allclose(out.std(axis=1), 2.0, rtol=1e-4)  # γ (ε makes it slightly less)

    running_mean, running_var = np.zeros((4, 1)), np.ones((4, 1))
    for _ in range(200):
        layers.update_running_stats(running_mean, running_var, mu, var)
    np.testing.assert_allclose(running_mean, mu, rtol=1e-6)
    inference = layers.batchnorm_inference(
        xp, Z, gamma, beta, running_mean, running_var, np.empty_like(Z)
    )
    np.testing.assert_allclose(inference, out, rtol=1e-5, atol=1e-6)
    # one example alone: training mode would normalize it to β, inference must not
    single = layers.batchnorm_inference(
        xp, Z[:, :1], gamma, beta, running_mean, running_var, np.empty((4, 1))
    )
    np.testing.assert_allclose(single, out[:, :1], rtol=1e-5, atol=1e-6)


def test_network_batchnorm_inference_is_deterministic_per_example(rng):
    net = Network(Architecture((3, 8, 2), batch_norm=True), seed=0)
    X = rng.standard_normal((3, 64)).astype(np.float32)
    for _ in range(5):
        net.forward(X, training=True)
    full = net.predict(X)
    one = net.predict(X[:, :1])
    np.testing.assert_allclose(one[:, 0], full[:, 0], rtol=1e-5)


def test_inverted_dropout_keeps_expected_activation(rng):
    G = np.ones((200, 500))
    D = layers.draw_dropout_mask(np, rng, 0.8, np.empty_like(G))
    out = layers.dropout_forward(np, G, D, np.empty_like(G))
    assert abs(out.mean() - 1.0) < 0.01  # E[A·D/keep_prob] = A
    assert abs((D == 0).mean() - 0.2) < 0.01
    assert set(np.unique(out)) == {0.0, 1.0 / 0.8}


def test_dropout_is_off_at_inference(rng):
    net = Network(Architecture((3, 16, 2), keep_prob=0.5), seed=0)
    X = rng.standard_normal((3, 10)).astype(np.float32)
    np.testing.assert_array_equal(net.predict(X), net.predict(X))


def test_zero_initialization_keeps_units_identical(backend64, rng):
    """The symmetry problem: with W = 0 every hidden unit of a layer stays the same function."""
    from model import TrainConfig, train

    config = TrainConfig(
        init="zeros", num_layers=1, hidden_units=6, epochs=5, activation="tanh", learning_rate=0.1
    )
    X = rng.standard_normal((4, 64))
    y = rng.integers(0, 3, 64)
    net = train(config, X, y, n_classes=3, backend=backend64).network
    W1 = net.W[1]
    np.testing.assert_allclose(W1, np.broadcast_to(W1[:1], W1.shape))  # all rows equal


@pytest.mark.parametrize(
    "name,scale",
    [
        ("small", 0.01),
        ("he", np.sqrt(2 / 400)),
        ("xavier", np.sqrt(1 / 400)),
        ("glorot", np.sqrt(2 / 600)),
    ],
)
def test_initializer_scales(name, scale, rng):
    from model.initializers import init_weights

    W = np.empty((200, 400))
    init_weights(name, W, rng)
    assert W.std() == pytest.approx(scale, rel=0.02)


def test_forward_backward_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    backend = get_backend("numpy", dtype="float64")
    net = Network(Architecture((5, 7, 6, 3), activation="tanh"), backend, seed=3)
    X = rng.standard_normal((5, 11))
    labels = rng.integers(0, 3, 11)
    Y = np.eye(3)[:, labels]

    Ws = [torch.tensor(net.W[l].copy(), requires_grad=True) for l in (1, 2, 3)]
    bs = [torch.tensor(net.b[l].copy(), requires_grad=True) for l in (1, 2, 3)]
    A = torch.tensor(X)
    for l in range(3):
        Z = Ws[l] @ A + bs[l]
        A = torch.tanh(Z) if l < 2 else Z
    cost = torch.nn.functional.cross_entropy(A.T, torch.tensor(labels))
    cost.backward()

    Yhat = net.forward(X, training=True)
    assert net.cost(Y) == pytest.approx(cost.item(), rel=1e-12)
    np.testing.assert_allclose(Yhat, torch.softmax(A, 0).detach().numpy(), rtol=1e-12)
    net.backward(Y)
    for l in (1, 2, 3):
        np.testing.assert_allclose(net.dW[l], Ws[l - 1].grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(net.db[l], bs[l - 1].grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_forward_backward_with_dropout_match_pytorch(activation, rng):
    """Dropout with the same mask on both sides; batch norm on layer 1 for good measure."""
    torch = pytest.importorskip("torch")
    backend = get_backend("numpy", dtype="float64")
    arch = Architecture(
        (5, 7, 6, 3), activation=activation, batch_norm=True, keep_prob=(0.6, 0.8), init="xavier"
    )
    net = Network(arch, backend, seed=3)
    X, labels = rng.standard_normal((5, 11)), rng.integers(0, 3, 11)
    Y = np.eye(3)[:, labels]
    masks = [None] + [
        layers.draw_dropout_mask(np, rng, p, np.empty((n, 11)))
        for n, p in zip((7, 6), arch.keep_probs, strict=True)
    ]
    g = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[activation]
    leaves = {
        n: torch.tensor(net.theta[span].copy(), requires_grad=True)
        for n, span in net.blocks().items()
    }
    P = {n: leaf.reshape(getattr(net, n[:-1])[int(n[-1])].shape) for n, leaf in leaves.items()}
    A = torch.tensor(X)
    for l in (1, 2):  # batch norm on every hidden layer, then g, then the mask
        Z = P[f"W{l}"] @ A
        mu, var = Z.mean(1, keepdim=True), Z.var(1, unbiased=False, keepdim=True)
        Z_tilde = P[f"gamma{l}"] * (Z - mu) / torch.sqrt(var + layers.BN_EPSILON) + P[f"beta{l}"]
        A = g(Z_tilde) * torch.tensor(masks[l])
    logits = P["W3"] @ A + P["b3"]
    l2 = 0.4
    penalty = l2 / (2 * 11) * sum((P[f"W{l}"] ** 2).sum() for l in (1, 2, 3))
    cost = torch.nn.functional.cross_entropy(logits.T, torch.tensor(labels)) + penalty
    cost.backward()

    net.forward(X, training=True, dropout_masks=masks)
    assert net.cost(Y, l2) == pytest.approx(cost.item(), rel=1e-12)
    grad = net.backward(Y, l2)
    for name, span in net.blocks().items():
        np.testing.assert_allclose(grad[span], leaves[name].grad.numpy(), rtol=1e-9, atol=1e-13)


def test_architecture_validates_its_inputs():
    with pytest.raises(ValueError, match="keep_prob"):
        Architecture((3, 2), keep_prob=0.0)
    with pytest.raises(ValueError, match="one value per hidden layer"):
        Architecture((3, 4, 4, 2), keep_prob=(0.5,))
    with pytest.raises(ValueError, match="activation"):
        Architecture((3, 2), activation="swish")
    with pytest.raises(ValueError, match="loss"):
        Architecture((3, 2), loss="hinge")

"""Each update rule against values computed by hand, and Adam against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from model.optimizers import Adam, GradientDescent, Momentum, RMSprop, make_optimizer
from model.schedules import learning_rate

THETA = np.array([1.0, -2.0, 0.5])
GRAD = np.array([0.5, -1.0, 2.0])


def _steps(optimizer, grads, alpha):
    theta = THETA.copy()
    for g in grads:
        optimizer.step(theta, np.asarray(g, dtype=np.float64), alpha)
    return theta


def test_gradient_descent(backend64):
    theta = _steps(GradientDescent(3, backend64), [GRAD], alpha=0.1)
    np.testing.assert_allclose(theta, [0.95, -1.9, 0.3])


def test_momentum_two_steps(backend64):
    # v1 = 0.1·g1; v2 = 0.9·v1 + 0.1·g2 with g2 = 2·g1 → v2 = 0.29·g1
    theta = _steps(Momentum(3, backend64, beta=0.9), [GRAD, 2 * GRAD], alpha=0.1)
    np.testing.assert_allclose(theta, THETA - 0.1 * (0.1 * GRAD + 0.29 * GRAD))


def test_rmsprop_one_step(backend64):
    # s = 0.1·g²; θ ← θ − α·g/√(s + ε) = θ − α·sign(g)/√0.1 (up to ε)
    eps = 1e-8
    theta = _steps(RMSprop(3, backend64, beta=0.9, epsilon=eps), [GRAD], alpha=0.01)
    expected = THETA - 0.01 * GRAD / np.sqrt(0.1 * GRAD**2 + eps)
    np.testing.assert_allclose(theta, expected, rtol=1e-12)


def test_rmsprop_puts_epsilon_inside_the_root_as_the_notes_do(backend64):
    """Week II: w := w − α·dw/√(s_dw + ε). With |g| = 1e-6 the step is 0.01·α where ε added
    outside the root (PyTorch's RMSprop) gives 3.1·α, 300 times as large."""
    g = np.full(3, 1e-6)
    theta = _steps(RMSprop(3, backend64, beta=0.9, epsilon=1e-8), [g], alpha=1.0)
    step = THETA - theta
    np.testing.assert_allclose(step, g / np.sqrt(0.1 * g**2 + 1e-8), rtol=1e-12)
    assert step[0] == pytest.approx(0.01, rel=1e-2)


def test_adam_two_steps_by_hand(backend64):
    b1, b2, eps, alpha = 0.9, 0.999, 1e-8, 0.01
    g1, g2 = GRAD, np.array([-0.25, 0.5, 1.0])
    v = (1 - b1) * g1
    s = (1 - b2) * g1**2
    v = b1 * v + (1 - b1) * g2
    s = b2 * s + (1 - b2) * g2**2
    v_hat, s_hat = v / (1 - b1**2), s / (1 - b2**2)
    first = THETA - alpha * ((1 - b1) * g1 / (1 - b1)) / (
        np.sqrt((1 - b2) * g1**2 / (1 - b2)) + eps
    )
    expected = first - alpha * v_hat / (np.sqrt(s_hat) + eps)
    theta = _steps(Adam(3, backend64, b1, b2, eps), [g1, g2], alpha)
    np.testing.assert_allclose(theta, expected, rtol=1e-12)


def test_adam_matches_pytorch(backend64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    theta0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(5)]
    p = torch.nn.Parameter(torch.tensor(theta0))
    opt = torch.optim.Adam([p], lr=0.003, betas=(0.8, 0.99), eps=1e-6)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    theta = theta0.copy()
    ours = Adam(50, backend64, beta1=0.8, beta2=0.99, epsilon=1e-6)
    for g in grads:
        ours.step(theta, g, 0.003)
    np.testing.assert_allclose(theta, p.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["gd", "momentum", "rmsprop", "adam"])
def test_every_optimizer_minimizes_a_quadratic(name, backend64):
    opt = make_optimizer(name, 3, backend64, beta=0.9)
    theta = THETA.copy()
    for epoch in range(1, 2001):
        opt.step(theta, 2 * theta, learning_rate(0.05, epoch, 0.05))  # J = ‖θ‖², dJ/dθ = 2θ
    assert np.linalg.norm(theta) < 1e-2


def test_bad_hyperparameters_name_themselves(backend64):
    with pytest.raises(ValueError, match="beta1"):
        Adam(3, backend64, beta1=1.0)
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("sgd-nesterov", 3, backend64)


def test_learning_rate_decay_table_of_the_notes():
    """Course notes, week II: α0 = 0.2, decay_rate = 1 → epochs 1–4: 0.1, 0.067, 0.05, 0.04."""
    alphas = [learning_rate(0.2, epoch, decay_rate=1.0) for epoch in (1, 2, 3, 4)]
    assert alphas == pytest.approx([0.1, 0.2 / 3, 0.05, 0.04])
    assert round(alphas[1], 3) == 0.067
    assert learning_rate(0.2, 7) == 0.2  # decay_rate 0: constant


def test_other_schedules_of_the_notes():
    assert learning_rate(0.2, 2, schedule="exponential", base=0.95) == pytest.approx(0.2 * 0.95**2)
    assert learning_rate(0.2, 25, schedule="step", interval=10, base=0.5) == pytest.approx(0.05)
    staircase = [learning_rate(0.2, e, 1.0, "staircase", interval=10) for e in (1, 9, 10, 25)]
    assert staircase == pytest.approx([0.2, 0.2, 0.1, 0.2 / 3])  # α0/(1 + rate·⌊epoch/10⌋)
    assert learning_rate(0.2, 4, schedule="inverse_sqrt") == pytest.approx(0.1)  # α0/√epoch
    assert learning_rate(0.2, 1000, schedule="exponential") > 0  # default base 0.95, never 0


def test_schedule_arguments_are_validated():
    with pytest.raises(ValueError, match="schedule"):
        learning_rate(0.1, 1, 0.1, "cosine")
    with pytest.raises(ValueError, match="base"):
        learning_rate(0.1, 2, schedule="exponential", base=0.0)
    with pytest.raises(ValueError, match="from 1"):
        learning_rate(0.1, 0)


def test_adam_hands_over_the_notes_v_and_s_and_takes_them_with_new_betas(backend64):
    """A continued run may change β1, β2: the state goes over as v and s, not as Adam's
    internal u = v/(1−β1), r = s/(1−β2)."""
    g1, g2 = GRAD, np.array([-0.25, 0.5, 1.0])
    first = Adam(3, backend64, beta1=0.9, beta2=0.999)
    _steps(first, [g1], alpha=0.01)
    moments = first.moments()
    np.testing.assert_allclose(moments["v"], 0.1 * g1, rtol=1e-12)
    np.testing.assert_allclose(moments["s"], 0.001 * g1**2, rtol=1e-12)
    second = Adam(3, backend64, beta1=0.8, beta2=0.99)
    second.resume(moments, first.t)
    theta = _steps(second, [g2], alpha=0.01)
    v, s = 0.8 * 0.1 * g1 + 0.2 * g2, 0.99 * 0.001 * g1**2 + 0.01 * g2**2
    v_hat, s_hat = v / (1 - 0.8**2), s / (1 - 0.99**2)
    np.testing.assert_allclose(theta, THETA - 0.01 * v_hat / (np.sqrt(s_hat) + 1e-8), rtol=1e-12)
    assert second.t == 2 and Momentum(3, backend64).moments()["v"].tolist() == [0, 0, 0]

"""The optimization assignment's own code, replayed in NumPy: the outside reference for train().

Course 2 week 2, "Optimization methods" (Optimization_methods.ipynb with opt_utils_v1a.py), as
published, e.g. github.com/nguyenlinhvn512/Optimization-Methods (opt_utils_v1a.py, model.py,
random_mini_batches.py, update_parameters_with_*.py). What fixes its numbers:

- load_dataset: np.random.seed(3), then make_moons(n_samples=300, noise=.2) drawing from the
  global RandomState (the same stream as random_state=3);
- initialize_parameters: np.random.seed(3), W^[l] = randn(n_l, n_{l−1})·√(2/n_{l−1}), b^[l] = 0;
- model: seed = 10, and each epoch seed += 1 before random_mini_batches(X, Y, 64, seed), which
  calls np.random.seed(seed) and np.random.permutation(m), then cuts batches of 64 (the last
  one 300 − 4·64 = 44 examples);
- forward LINEAR→RELU→LINEAR→RELU→LINEAR→SIGMOID, backward with dz3 = (a3 − Y)/m, the gd,
  momentum and Adam updates of the notes, predict: a3 > 0.5 on train_X.

`initial_parameters` and `assignment_shuffle` hand those streams to train(); `replay` runs the
assignment's loop itself, so the test can compare parameters, not only accuracies.
"""

from __future__ import annotations

import numpy as np

LAYER_DIMS = (2, 5, 2, 1)
MINI_BATCH_SIZE = 64
FIRST_SEED = 10  # model(): seed = 10, incremented before every epoch's random_mini_batches


def load_dataset() -> tuple[np.ndarray, np.ndarray]:
    """train_X (2, 300), train_Y (1, 300) as opt_utils_v1a.load_dataset draws them."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=300, noise=0.2, random_state=3)  # = np.random.seed(3); make_moons
    return X.T, y.reshape(1, -1)


def initial_parameters() -> dict[str, np.ndarray]:
    """opt_utils_v1a.initialize_parameters(layers_dims): He with np.random.seed(3)."""
    rs = np.random.RandomState(3)
    parameters = {}
    for l in range(1, len(LAYER_DIMS)):
        n_l, n_prev = LAYER_DIMS[l], LAYER_DIMS[l - 1]
        parameters[f"W{l}"] = rs.randn(n_l, n_prev) * np.sqrt(2 / n_prev)
        parameters[f"b{l}"] = np.zeros((n_l, 1))
    return parameters


def assignment_shuffle(epoch: int, m: int) -> np.ndarray:
    """random_mini_batches' permutation in epoch 1, 2, …: np.random.seed(10 + epoch)."""
    return np.random.RandomState(FIRST_SEED + epoch).permutation(m)


def _forward(X: np.ndarray, p: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    a1 = np.maximum(0, p["W1"] @ X + p["b1"])
    a2 = np.maximum(0, p["W2"] @ a1 + p["b2"])
    a3 = 1 / (1 + np.exp(-(p["W3"] @ a2 + p["b3"])))
    return a1, a2, a3


def _gradients(X, Y, p, a1, a2, a3) -> dict[str, np.ndarray]:
    """backward_propagation: dz3 = (a3 − Y)/m; ReLU′ from a > 0."""
    dz3 = (a3 - Y) / X.shape[1]
    dz2 = (p["W3"].T @ dz3) * (a2 > 0)
    dz1 = (p["W2"].T @ dz2) * (a1 > 0)
    grads = {}
    for l, (dz, a_prev) in enumerate(((dz1, X), (dz2, a1), (dz3, a2)), start=1):
        grads[f"W{l}"], grads[f"b{l}"] = dz @ a_prev.T, dz.sum(axis=1, keepdims=True)
    return grads


def replay(
    optimizer: str,
    epochs: int,
    learning_rate: float = 0.0007,
    beta: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> dict[str, np.ndarray]:
    """model(train_X, train_Y, layers_dims, optimizer, …): the trained parameters."""
    X, Y = load_dataset()
    m = X.shape[1]
    p = initial_parameters()
    v = {k: np.zeros_like(w) for k, w in p.items()}
    s = {k: np.zeros_like(w) for k, w in p.items()}
    t = 0
    for epoch in range(1, epochs + 1):
        order = assignment_shuffle(epoch, m)
        for start in range(0, m, MINI_BATCH_SIZE):
            batch = order[start : start + MINI_BATCH_SIZE]
            X_t, Y_t = X[:, batch], Y[:, batch]
            grads = _gradients(X_t, Y_t, p, *_forward(X_t, p))
            t += 1
            for k, g in grads.items():
                if optimizer == "gd":
                    p[k] = p[k] - learning_rate * g
                elif optimizer == "momentum":
                    v[k] = beta * v[k] + (1 - beta) * g
                    p[k] = p[k] - learning_rate * v[k]
                else:  # adam
                    v[k] = beta * v[k] + (1 - beta) * g
                    s[k] = beta2 * s[k] + (1 - beta2) * g**2
                    v_hat, s_hat = v[k] / (1 - beta**t), s[k] / (1 - beta2**t)
                    p[k] = p[k] - learning_rate * v_hat / (np.sqrt(s_hat) + epsilon)
    return p


def accuracy(p: dict[str, np.ndarray]) -> float:
    """predict(train_X, train_Y, parameters): the mean of (a3 > 0.5) == Y."""
    X, Y = load_dataset()
    return float(np.mean((_forward(X, p)[2] > 0.5) == Y))

"""Built-in datasets, made in code or shipped by scikit-learn: nothing is downloaded.

Each returns (X (m, n_x) float64, y (m,) int labels); the sweeper's data module splits,
standardizes and transposes them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def flower(m: int = 400, seed: int = 1, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """The course's planar "flower": two classes in interleaved petals r = 4·sin(4t).

    Not linearly separable: logistic regression gets ~47%, a small network ~90%.
    """
    rng = np.random.default_rng(seed)
    per_class = m // 2
    X = np.zeros((2 * per_class, 2))
    y = np.zeros(2 * per_class, dtype=np.int64)
    for j in range(2):
        rows = slice(per_class * j, per_class * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, per_class)
        t += rng.standard_normal(per_class) * noise
        r = 4 * np.sin(4 * t) + rng.standard_normal(per_class) * noise
        X[rows] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[rows] = j
    return X, y


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 handwritten digits: 1797 examples, 64 features, 10 classes."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data.astype(np.float64), data.target.astype(np.int64)


def moons(seed: int = 0, m: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles with noise (scikit-learn's make_moons)."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=m, noise=0.2, random_state=seed)
    return X, y.astype(np.int64)


def circles(seed: int = 0, m: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A circle inside a circle with noise (scikit-learn's make_circles)."""
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=m, noise=0.1, factor=0.5, random_state=seed)
    return X, y.astype(np.int64)


BUILTINS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "digits": digits,
    "moons": moons,
    "circles": circles,
    "flower": flower,
}

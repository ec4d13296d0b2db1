"""The course's programming assignments, reproduced through `train()`.

Each assignment publishes the accuracies its notebook prints. We generate the data as the
assignment's loader does (same generator, same seeds), build its architecture with its
initialization, α, optimizer, mini-batch size and epoch count, and require the published
accuracy within ±3 points: with our own random streams (TrainConfig(seed=1): θ initialization
and mini-batch shuffles) the figures cannot match digit for digit.

The optimization assignment is also replayed exactly: tests/model/optimization_assignment.py is
its published code in NumPy, and train() started from its θ (np.random.seed(3)) with its
mini-batch order (np.random.seed(10 + epoch)) takes the same steps and prints its figures to the
last digit. That settles why plain gd and momentum at α = 0.0007 reach 0.7967 in the notebook
and 0.847–0.88 with our seeds 0–5 (0.86, 0.8667, 0.8667, 0.8467, 0.8467, 0.88; momentum the
same): it is the initial θ alone. From the assignment's θ with our orders of seeds 0–5, gd and
momentum both end at 0.7967 six times out of six; from our θ with the assignment's order, at our
figures again. That θ starts (and ends) with the second unit of layer 2 dead on all 300 points.
Published figures (deeplearning.ai on Coursera):

- Course 1 week 3, "Planar data classification with one hidden layer"
  (Planar_data_classification_with_onehidden_layer_v6c.ipynb, section "Tuning hidden layer
  size"): training accuracy 67.5 % (n_h = 1), 90.75 % (3), 91.25 % (5), 90.0 % (20).
- Course 2 week 1, "Initialization" (Initialization.ipynb): circles, [2, 10, 5, 1] ReLU,
  α = 0.01, 15 000 iterations; zeros: train 0.5, test 0.5; He: train 0.9933, test 0.96.
- Course 2 week 2, "Optimization methods" (Optimization_methods.ipynb): moons, [2, 5, 2, 1]
  ReLU, He, mini-batches of 64, α = 0.0007, 10 000 epochs: gd 0.7967, momentum (β = 0.9) 0.7967,
  Adam 0.94; its learning-rate-decay section (5000 epochs, schedule_lr_decay with decay_rate 1
  and time_interval 1000, α0 = 0.1 for gd and momentum, 0.01 for Adam): gd 0.9467,
  momentum 0.9567, Adam 0.94. These come from the newer notebook's summary (">94.6%",
  ">95.6%", "94%"); replaying that notebook's loop (α set after epoch i to decay(α0, i), so its
  first decay falls two epochs after the notes' numbering) gives 0.9433, 0.9533 and 0.94, so
  those decay runs stay ±3-point tests.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model import NetworkState, TrainConfig, TrainResult, evaluate, get_backend, train
from model.train import build_network
from tests.model import optimization_assignment as assignment

TOLERANCE = 0.03
SEED = 1
BACKEND = get_backend("numpy", dtype="float64")  # the notebooks compute in float64


def planar_dataset() -> tuple[np.ndarray, np.ndarray]:
    """planar_utils.load_planar_dataset: np.random.seed(1), 400 points, petals r = 4·sin(4t)."""
    rs = np.random.RandomState(1)
    m, N, a = 400, 200, 4
    X, y = np.zeros((m, 2)), np.zeros(m, dtype=np.int64)
    for j in range(2):
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rs.randn(N) * 0.2
        r = a * np.sin(4 * t) + rs.randn(N) * 0.2
        X[N * j : N * (j + 1)] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[N * j : N * (j + 1)] = j
    return X.T, y


def _accuracy(config: TrainConfig, X, y, X_test=None, y_test=None) -> tuple[float, float | None]:
    result = train(replace(config, seed=SEED), X, y, n_classes=2, backend=BACKEND)
    test = None if X_test is None else evaluate(result.network, X_test, y_test)["accuracy"]
    return evaluate(result.network, X, y)["accuracy"], test


@pytest.mark.parametrize("n_h,published", [(1, 0.675), (3, 0.9075), (5, 0.9125), (20, 0.90)])
def test_planar_flower_one_hidden_tanh_layer(n_h, published):
    """nn_model(X, Y, n_h, num_iterations=5000): tanh, randn·0.01, full-batch GD, α = 1.2."""
    X, y = planar_dataset()
    config = TrainConfig(
        hidden_units=[n_h],
        activation="tanh",
        init="small",
        optimizer="gd",
        learning_rate=1.2,
        batch_size=400,
        epochs=5000,
    )
    accuracy, _ = _accuracy(config, X, y)
    assert accuracy == pytest.approx(published, abs=TOLERANCE)


@pytest.mark.parametrize(
    "init,published_train,published_test", [("zeros", 0.5, 0.5), ("he", 0.9933, 0.96)]
)
def test_initialization_circles(init, published_train, published_test):
    """init_utils.load_dataset: np.random.seed(1) make_circles(300, noise=.05) to train,
    np.random.seed(2) make_circles(100, noise=.05) to test; full-batch GD, 15 000 iterations."""
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=300, noise=0.05, random_state=1)
    X_test, y_test = make_circles(n_samples=100, noise=0.05, random_state=2)
    config = TrainConfig(
        hidden_units=[10, 5],
        init=init,
        optimizer="gd",
        learning_rate=0.01,
        batch_size=300,
        epochs=15000,
    )
    train_accuracy, test_accuracy = _accuracy(config, X.T, y, X_test.T, y_test)
    assert train_accuracy == pytest.approx(published_train, abs=TOLERANCE)
    assert test_accuracy == pytest.approx(published_test, abs=TOLERANCE)


def _assignment_start(config: TrainConfig) -> NetworkState:
    """Our network holding opt_utils_v1a.initialize_parameters' W^[l], b^[l] (np.random.seed(3))."""
    net = build_network(config, 2, 2, BACKEND)
    for name, value in assignment.initial_parameters().items():
        getattr(net, name[0])[int(name[1:])][...] = value  # "W1" → net.W[1]
    return net.state()


def _moons_config(optimizer: str, alpha: float, epochs: int, **schedule) -> TrainConfig:
    """The assignment's model(): [2, 5, 2, 1], ReLU, ReLU, sigmoid, He, mini-batches of 64."""
    return TrainConfig(
        hidden_units=[5, 2],
        init="he",
        optimizer=optimizer,
        learning_rate=alpha,
        beta=0.9,
        batch_size=assignment.MINI_BATCH_SIZE,
        epochs=epochs,
        seed=SEED,
        **schedule,
    )


def _train_with_the_assignment_streams(config: TrainConfig) -> TrainResult:
    X, Y = assignment.load_dataset()
    return train(
        config,
        X,
        Y[0],
        n_classes=2,
        backend=BACKEND,
        initial=_assignment_start(config),
        shuffle=assignment.assignment_shuffle,
    )


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "adam"])
def test_train_replays_the_assignment_step_for_step(optimizer):
    """From the same θ and mini-batch order, train() and the assignment's code take the same
    steps: every W^[l], b^[l] agrees to float rounding after 300 epochs (1500 updates)."""
    epochs = 300
    result = _train_with_the_assignment_streams(_moons_config(optimizer, 0.0007, epochs))
    expected = assignment.replay(optimizer, epochs)
    for name, value in expected.items():
        ours = getattr(result.network, name[0])[int(name[1:])]
        np.testing.assert_allclose(ours, value, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    "optimizer,published",
    [("gd", 0.7966666666666666), ("momentum", 0.7966666666666666), ("adam", 0.94)],
)
def test_optimization_methods_moons_published_digits(optimizer, published):
    """α = 0.0007, 10 000 epochs with the assignment's θ and mini-batch streams: the notebook's
    printed "Accuracy: 0.7966666666666666" (gd, momentum) and "Accuracy: 0.94" (Adam), exactly.

    With our own streams gd reaches 0.847–0.88 over seeds 0–5, momentum alike (module
    docstring): 0.7967 is where this particular initialization and order leave the network
    after 10 000 slow epochs, not a property of the method, so only the exact replay tests it.
    """
    result = _train_with_the_assignment_streams(_moons_config(optimizer, 0.0007, 10000))
    X, Y = assignment.load_dataset()
    assert evaluate(result.network, X, Y[0])["accuracy"] == published


@pytest.mark.parametrize(
    "optimizer,alpha,epochs,decay,published",
    [
        ("adam", 0.0007, 10000, False, 0.94),
        ("gd", 0.1, 5000, True, 0.9467),
        ("momentum", 0.1, 5000, True, 0.9567),
        ("adam", 0.01, 5000, True, 0.94),
    ],
)
def test_optimization_methods_moons(optimizer, alpha, epochs, decay, published):
    """Our own streams (seed 1): within ±3 points of the published figure."""
    X, Y = assignment.load_dataset()
    schedule = {"lr_schedule": "staircase", "lr_decay": 1.0, "lr_step": 1000} if decay else {}
    accuracy, _ = _accuracy(_moons_config(optimizer, alpha, epochs, **schedule), X, Y[0])
    assert accuracy == pytest.approx(published, abs=TOLERANCE)

"""The trial's training function on real data: what it reports, with and without a test set."""

from __future__ import annotations

import pytest

from model import evaluate
from sweeper.data.datasets import load_dataset
from sweeper.records import Outcome
from sweeper.run.trial import fit, kept_network
from sweeper.spec.schema import DataSpec, Objective, Split

OPTIONS = {"epochs": 40, "hidden_units": [16, 8], "learning_rate": 0.05, "early_stopping": 2}


@pytest.fixture(scope="module")
def no_test_set():
    return load_dataset(DataSpec(source="builtin:flower", split=Split(dev=0.3, test=0)))


def test_split_test_0_trains_and_reports_no_test_metrics(no_test_set):
    assert no_test_set.X_test.shape[1] == 0
    result = fit(OPTIONS, no_test_set, None, "numpy")
    assert result.outcome is Outcome.EARLY_STOPPED
    final = result.metrics
    assert sorted(final) == ["dev_accuracy", "dev_loss", "train_accuracy", "train_loss"]
    assert final["dev_accuracy"] > 0.7


def test_final_metrics_describe_the_returned_network(no_test_set):
    """After early stopping the final train_* are those of the restored epoch, not the last."""
    result = fit(OPTIONS, no_test_set, None, "numpy")
    history, final = result.history, result.metrics
    kept = min(history, key=lambda h: h["dev_loss"])
    assert final["dev_loss"] == pytest.approx(kept["dev_loss"], rel=1e-6)
    assert final["train_loss"] == kept["train_loss"] != history[-1]["train_loss"]


@pytest.fixture(scope="module")
def flower():
    return load_dataset(DataSpec(source="builtin:flower", split=Split(dev=0.3, test=0.2)))


# α = 0.2 makes a learning curve whose best dev epoch (9 of 12) is not its last
NOISY = {"epochs": 12, "hidden_units": [16, 8], "learning_rate": 0.2, "batch_size": 32}


@pytest.mark.parametrize(
    "metric,direction", [("dev_accuracy", "maximize"), ("dev_loss", "minimize")]
)
def test_objective_at_best_keeps_the_best_epochs_model_and_at_last_the_last(
    flower, metric, direction
):
    best = fit(
        NOISY, flower, None, "numpy", kept_network(Objective(metric=metric, direction=direction))
    )
    last = fit(NOISY, flower, None, "numpy", kept_network(Objective(metric=metric, at="last")))
    curve = [h[metric] for h in last.history]
    assert [h[metric] for h in best.history] == curve  # the same run: only what is kept differs
    pick = max if direction == "maximize" else min
    best_epoch = curve.index(pick(curve))
    assert best_epoch < len(curve) - 1  # the curve makes the two differ (the test can fail)
    assert best.metrics[metric] == pytest.approx(curve[best_epoch], rel=1e-6)
    assert last.metrics[metric] == pytest.approx(curve[-1], rel=1e-6)
    # the test metrics are those of the model kept: evaluate the restored network again
    kept = evaluate(best.checkpoint.network(), flower.X_test, flower.y_test)
    assert best.metrics["test_loss"] == pytest.approx(kept["loss"])
    assert best.metrics["test_loss"] != last.metrics["test_loss"]


def test_objective_at_best_is_the_default_and_the_pruner_still_sees_every_epoch(flower):
    seen = []
    result = fit(
        NOISY,
        flower,
        lambda e, m: seen.append(m["dev_accuracy"]) or False,
        "numpy",
        kept_network(Objective()),
    )
    assert Objective().at == "best"
    assert seen == [h["dev_accuracy"] for h in result.history]
    assert result.metrics["dev_accuracy"] == pytest.approx(max(seen))

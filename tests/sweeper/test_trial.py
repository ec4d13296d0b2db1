"""The trial's training function on real data: what it reports, with and without a test set."""

from __future__ import annotations

import pytest

from sweeper.data.datasets import load_dataset
from sweeper.records import Outcome
from sweeper.run.trial import fit
from sweeper.spec.schema import DataSpec, Split

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

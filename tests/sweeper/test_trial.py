"""The trial's training function on real data: what it reports, with and without a test set."""

from __future__ import annotations

import pytest

from model import evaluate
from sweeper.data.datasets import load_dataset
from sweeper.records import Outcome, decide
from sweeper.run.fit import fit, fit_pack, kept_network
from sweeper.spec.schema import OBJECTIVE_METRICS, DataSpec, Objective, Split

OPTIONS = {"epochs": 40, "hidden_units": [16, 8], "learning_rate": 0.05, "early_stopping": 2}


@pytest.fixture(scope="module")
def no_test_set():
    return load_dataset(DataSpec(source="builtin:flower", split=Split(dev=0.3, test=0)))


def test_split_test_0_trains_and_reports_no_test_metrics(no_test_set):
    assert no_test_set.X_test.shape[1] == 0
    result = fit(OPTIONS, no_test_set, None, "numpy")
    assert result.outcome is Outcome.EARLY_STOPPED
    final = result.metrics
    assert sorted(final) == [
        "dev_accuracy",
        "dev_loss",
        "minibatch_cost",
        "train_accuracy",
        "train_loss",
    ]
    assert final["dev_accuracy"] > 0.7


def test_final_metrics_describe_the_returned_network(no_test_set):
    """After early stopping the final train_* are those of the restored epoch, not the last."""
    result = fit(OPTIONS, no_test_set, None, "numpy")
    history, final = result.history, result.metrics
    kept = min(history, key=lambda h: h["dev_loss"])
    assert final["dev_loss"] == pytest.approx(kept["dev_loss"], rel=1e-6)
    assert final["train_loss"] == kept["train_loss"] != history[-1]["train_loss"]


def test_a_pack_yields_each_trial_as_fit_would_return_it(no_test_set):
    """Members of two structures and one refused option: each trains (or fails) on its own,
    is named by its place in the list, and is stopped alone by the pack callback."""
    wide = {"epochs": 6, "hidden_units": [16, 8], "learning_rate": 0.05, "seed": 1}
    options = [
        wide,
        {**wide, "learning_rate": -1.0},  # refused by the trainer
        {**wide, "hidden_units": [4], "seed": 2},  # another structure: a pack of its own
        {**wide, "learning_rate": 0.01, "seed": 3},
    ]
    asked: list[tuple[int, list[int]]] = []

    def stop_last_at_2(epoch, training):
        asked.append((epoch, sorted(training)))
        return [3] if epoch == 2 and 3 in training else []

    ended = list(fit_pack(options, no_test_set, stop_last_at_2, "numpy"))
    assert sorted(k for k, _ in ended) == [0, 1, 2, 3]
    results = dict(ended)
    assert results[1].outcome is Outcome.ERROR and "learning_rate" in results[1].error
    assert results[3].outcome is Outcome.STOPPED and len(results[3].history) == 2
    assert [k for k, _ in ended].index(3) < [k for k, _ in ended].index(0)  # told as it ended
    assert (1, [0, 3]) in asked and (1, [2]) in asked  # one pack per structure, in turn
    for k in (0, 2):
        alone = fit(options[k], no_test_set, None, "numpy")
        assert results[k].outcome is alone.outcome is Outcome.COMPLETED
        assert results[k].checkpoint is not None
        # float32: packed and alone round differently (tests/model/test_stacked.py)
        assert results[k].metrics == pytest.approx(alone.metrics, rel=1e-2)


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
    # packed members keep their best epoch too (model.stacked's keep_best)
    objective = Objective(metric=metric, direction=direction)
    pack = [NOISY, {**NOISY, "seed": 2}]
    for _, member in fit_pack(pack, flower, lambda e, t: [], "numpy", kept_network(objective)):
        own = [h[metric] for h in member.history]
        assert member.metrics[metric] == pytest.approx(pick(own), rel=1e-6)


@pytest.mark.parametrize("metric", OBJECTIVE_METRICS)
def test_every_objective_a_spec_may_name_is_a_final_metric_of_the_kept_epoch(flower, metric):
    """`minibatch_cost` passed the spec's check but was no final metric: every trial of a sweep
    minimizing it FAILed (no finite minibatch_cost) and the sweep stopped after 4 of 4."""
    direction = "maximize" if metric.endswith("_accuracy") else "minimize"
    objective = Objective(metric=metric, direction=direction)
    result = fit({**NOISY, "epochs": 4}, flower, None, "numpy", kept_network(objective))
    pick = max if direction == "maximize" else min
    assert result.metrics[metric] == pytest.approx(pick(h[metric] for h in result.history))
    assert decide(result, metric, None).value == result.metrics[metric]


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

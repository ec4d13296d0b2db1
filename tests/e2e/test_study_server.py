"""The StudyServer actor as a sweep starts it: a slow ask does not hold up the epoch reports."""

from __future__ import annotations

import optuna
import pytest
import ray
from optuna.trial import TrialState

from sweeper.records import Outcome, TrialResult
from sweeper.run.server import as_actor
from sweeper.search.study import read_storage, study_name
from sweeper.spec.schema import SweepSpec

pytest.importorskip("torch")  # the Gaussian process

SPEC = SweepSpec.model_validate(
    {
        "name": "asks",
        "data": {"source": "builtin:flower"},
        "train": {"epochs": 3},
        "space": {
            "learning_rate": {"scale": "log", "low": 1e-4, "high": 1.0},
            "beta": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
        },
        "stages": [{"name": "gp", "trials": 12, "sampler": "gp"}],
    }
)


def done(accuracy: float) -> TrialResult:
    return TrialResult(Outcome.COMPLETED, [{"dev_accuracy": accuracy}], {"dev_accuracy": accuracy})


def test_reports_are_answered_while_a_gaussian_process_fits_and_ctrl_c_waits_for_the_ask(
    ray_local, tmp_path
):
    server = as_actor().remote(SPEC.model_dump_json(), str(tmp_path))
    ray.get(server.open_stage.remote(0))
    for accuracy in (0.5, 0.7, 0.6, 0.8, 0.4, 0.75):  # past the GP's 5 random start-up trials
        number, _ = ray.get(server.ask.remote(0))
        ray.get(server.tell.remote(0, number, done(accuracy)))
    running, _ = ray.get(server.ask.remote(0))  # the first fit: PyTorch is imported by now

    asked = server.ask.remote(0)  # the process fits itself again: a tenth of a second or more
    reported = server.report_pack.remote(0, [(running, 1, {"dev_accuracy": 0.7})])
    ready, _ = ray.wait([asked, reported], num_returns=1, timeout=60)
    assert ready == [reported]  # one at a time, the report would have waited for the ask
    assert ray.get(reported) == [False]
    second, params = ray.get(asked)
    assert 1e-4 <= params["learning_rate"] <= 1.0

    assert ray.get(server.interrupt.remote()) == 2  # both running trials
    late, _ = ray.get(server.ask.remote(0))  # an ask Ctrl-C overtook: recorded as interrupted
    ray.get(server.flush.remote())
    ray.kill(server)

    storage = read_storage(None, tmp_path)
    study = optuna.load_study(study_name=study_name("asks", "gp"), storage=storage)
    by_number = {t.number: t for t in study.trials}
    for number in (running, second, late):
        assert by_number[number].state == TrialState.FAIL
        assert by_number[number].user_attrs["reason"] == "interrupted"
    assert by_number[late].user_attrs["retry_of"] == running  # it took the first one re-queued
    waiting = [t for t in study.trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in waiting) == [second, late]  # run on resume

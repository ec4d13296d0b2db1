"""The StudyServer's protocol without Ray: the class behind the actor, an in-memory Optuna
storage, and a temporary MLflow SQLite store in the sweep folder."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from model import Network, TrainConfig, train
from model.checkpoint import Checkpoint
from sweeper.data.datasets import Preprocessing
from sweeper.records import Outcome, TrialResult
from sweeper.run import locks
from sweeper.run.control import request_prune
from sweeper.run.server import StudyServer, orphans
from sweeper.search.study import study_name
from sweeper.spec.schema import SweepSpec
from sweeper.spec.stages import Pruner
from sweeper.tracking.store import kept_models

SPEC = SweepSpec.model_validate(
    {
        "name": "proto",
        "data": {"source": "builtin:flower"},
        "train": {"epochs": 3},
        "space": {
            "learning_rate": {"scale": "log", "low": 1e-4, "high": 1.0},
            "beta": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
        },
        "stages": [
            {"name": "coarse", "trials": 6, "pruner": {"type": "median"}},
            {"name": "fine", "trials": 2, "sampler": "tpe", "zoom": {"top": 0.5, "margin": 0.1}},
        ],
    }
)


def done(accuracy: float) -> TrialResult:
    history = [{"dev_accuracy": accuracy - 0.1}, {"dev_accuracy": accuracy}]
    return TrialResult(Outcome.COMPLETED, history, {"dev_accuracy": accuracy}, "node-a")


@pytest.fixture
def storage():
    return optuna.storages.InMemoryStorage()


@pytest.fixture
def server(tmp_path, storage):
    server = StudyServer(SPEC.model_dump_json(), str(tmp_path), storage=storage)
    yield server
    locks.release(server.writer_lock)


def trials(storage, stage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study_name("proto", stage), storage=storage).trials


def test_ask_report_tell_record_each_outcome_in_optuna_and_mlflow(server, storage, tmp_path):
    opened = server.open_stage(0)
    assert opened.counts == {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
    asked = [server.ask(0) for _ in range(6)]
    assert [n for n, _ in asked] == list(range(6))
    for _, params in asked:
        assert 1e-4 <= params["learning_rate"] <= 1.0 and 0.9 <= params["beta"] <= 0.999
    assert server.report(0, 0, 1, {"dev_accuracy": 0.5}) is False  # too early for the median pruner
    request_prune(tmp_path, "coarse", 4)
    assert server.report(0, 4, 1, {"dev_accuracy": 0.5}) is True  # asked to stop by `sweeper prune`

    told = [
        server.tell(0, 0, done(0.9)),
        server.tell(0, 1, done(0.6)),
        server.tell(0, 2, TrialResult(Outcome.DIVERGED, node_id="node-a")),
        server.tell(0, 3, TrialResult(Outcome.ERROR, node_id="node-a", error="Traceback: boom")),
        server.tell(0, 4, TrialResult(Outcome.STOPPED, [{"dev_accuracy": 0.5}], {}, "node-a")),
        server.tell(0, 5, TrialResult(Outcome.LOST)),
    ]
    assert told == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL", "PRUNED", "FAIL"]
    coarse = trials(storage, "coarse")
    assert [t.user_attrs.get("reason") for t in coarse] == [
        None, None, "diverged", "error", "manual", "lost"
    ]  # fmt: skip
    assert coarse[0].value == 0.9 and coarse[0].user_attrs["final"] == {"dev_accuracy": 0.9}
    assert coarse[3].user_attrs["error"] == "Traceback: boom"
    assert server.close_stage(0) == {"complete": 2, "pruned": 2, "failed": 2, "running": 0}

    assert server.flush() == []
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("proto").experiment_id], "tags.`sweeper.kind` = 'trial'"
    )
    status = {int(r.data.tags["sweeper.trial"]): r.info.status for r in runs}
    assert status == {
        0: "FINISHED", 1: "FINISHED", 2: "KILLED", 3: "FAILED", 4: "KILLED", 5: "FAILED"
    }  # fmt: skip
    run0 = next(r for r in runs if r.data.tags["sweeper.trial"] == "0")
    assert run0.data.metrics["dev_accuracy"] == 0.9 and run0.data.params["epochs"] == "3"


def test_the_next_stage_opens_zoomed_and_warm_started_and_ctrl_c_requeues(server, storage):
    server.open_stage(0)
    for accuracy in (0.9, 0.8, 0.2, 0.1):
        number, _ = server.ask(0)
        server.tell(0, number, done(accuracy))
    server.close_stage(0)
    coarse = trials(storage, "coarse")

    opened = server.open_stage(1)
    box = server.spaces[1]["learning_rate"].model_dump()
    top = sorted(coarse, key=lambda t: -t.value)[:2]  # top: 0.5 of 4 finished trials
    rates = [server._record(0, t).params["learning_rate"] for t in top]
    others = [server._record(0, t).params["learning_rate"] for t in coarse if t not in top]
    assert box["low"] < min(rates) and max(rates) < box["high"]
    assert not any(box["low"] <= r <= box["high"] for r in others)
    copies = [t for t in trials(storage, "fine") if "warm_start_from" in t.user_attrs]
    assert sorted(t.user_attrs["warm_start_from"] for t in copies) == sorted(
        f"coarse:{t.number}" for t in top
    )
    assert opened.counts["complete"] == 0  # copies do not count toward the fine target

    number, params = server.ask(1)
    assert box["low"] <= params["learning_rate"] <= box["high"]
    assert server.interrupt() == 1
    fine = {t.number: t for t in trials(storage, "fine")}
    assert fine[number].state == TrialState.FAIL
    assert fine[number].user_attrs["reason"] == "interrupted"
    # it ran until Ctrl-C: the export's duration_s was empty, while its MLflow run had an end
    assert server._record(1, fine[number]).duration_s is not None
    waiting = [t for t in fine.values() if t.state == TrialState.WAITING]
    assert [t.user_attrs["retry_of"] for t in waiting] == [number]
    assert server.report(1, number, 1, {"dev_accuracy": 0.5}) is True  # its task is told to stop

    server.open_stage(1)  # opened again on resume: no second set of warm-start copies
    again = [t for t in trials(storage, "fine") if "warm_start_from" in t.user_attrs]
    assert len(again) == len(copies)


def test_a_new_server_fails_and_requeues_the_trials_a_dead_one_left_running(
    server, storage, tmp_path
):
    server.open_stage(0)
    left, _ = server.ask(0)
    finished, _ = server.ask(0)
    server.tell(0, finished, done(0.7))
    server.flush()
    locks.release(server.writer_lock)  # the old server died

    successor = StudyServer(SPEC.model_dump_json(), str(tmp_path), storage=storage)
    try:
        assert successor.open_stage(0).best == 0.7  # the resumed stage's progress starts there
        coarse = {t.number: t for t in trials(storage, "coarse")}
        assert coarse[left].state == TrialState.FAIL
        assert coarse[left].user_attrs["reason"] == "lost"
        assert coarse[finished].state == TrialState.COMPLETE
        retry, _ = successor.ask(0)  # the same configuration runs once more
        assert successor.studies[0].trials[retry].user_attrs["retry_of"] == left
        assert successor.studies[0].trials[retry].params == coarse[left].params
        fresh, _ = successor.ask(0)  # a new draw: the reseeded sampler replayed trial 0's once
        seen = [coarse[left].params, coarse[finished].params]
        assert successor.studies[0].trials[fresh].params not in seen
        assert successor.flush() == []
    finally:
        locks.release(successor.writer_lock)
        server.writer_lock = open(tmp_path / "unused.lock", "w")  # the fixture releases it


def test_a_lost_trial_counts_as_run_again_only_when_it_is(server, storage, tmp_path):
    """A trial lost with its retries spent (`max_retries`) never runs again; status and the
    progress table said "failed 2 (2 run again)" all the same."""
    server.open_stage(0)
    (retried, _), (spent, _) = server.ask(0), server.ask(0)
    for number in (retried, spent):
        server.tell(0, number, TrialResult(Outcome.LOST, error="WorkerCrashedError"))
    server.retry(0, retried)  # as the driver does while the lost trial has retries left
    server.flush()
    locks.release(server.writer_lock)

    successor = StudyServer(SPEC.model_dump_json(), str(tmp_path), storage=storage)
    try:
        opened = successor.open_stage(0)
        assert (opened.counts["failed"], opened.run_again) == (2, 1)
    finally:
        locks.release(successor.writer_lock)
        server.writer_lock = open(tmp_path / "unused.lock", "w")  # the fixture releases it


def test_orphans_are_running_trials_no_live_task_runs():
    def trial(number: int, state: TrialState) -> optuna.trial.FrozenTrial:
        value = 1.0 if state == TrialState.COMPLETE else None
        frozen = optuna.trial.create_trial(state=state, value=value)
        frozen.number = number
        return frozen

    found = orphans(
        [trial(0, TrialState.RUNNING), trial(1, TrialState.RUNNING), trial(2, TrialState.COMPLETE)],
        live={1},
    )
    assert [t.number for t in found] == [0]


def tiny_network() -> tuple[np.ndarray, Network]:
    """Inputs (2 features × 40 examples) and a network trained one epoch on them."""
    X = np.random.default_rng(0).normal(size=(2, 40)).astype(np.float32)
    return X, train(TrainConfig(epochs=1, hidden_units=3), X, (X[0] > 0) * 1, n_classes=2).network


def model_keeping_server(spec: SweepSpec, tmp_path, storage) -> StudyServer:
    """A StudyServer that can write kept models (it knows the columns and class names)."""
    preprocessing = Preprocessing(["x0", "x1"], ["no", "yes"])
    return StudyServer(
        spec.model_dump_json(), str(tmp_path), storage=storage, preprocessing=preprocessing
    )


def test_kept_models_are_the_stage_top_ones_written_as_mlflow_models(tmp_path, storage):
    X, network = tiny_network()
    spec = SPEC.model_copy(update={"models": SPEC.models.model_copy(update={"keep": 2})})
    server = model_keeping_server(spec, tmp_path, storage)
    try:
        server.open_stage(0)
        for accuracy in (0.5, 0.7, 0.4, 0.9):
            number, _ = server.ask(0)
            result = dataclasses.replace(done(accuracy), checkpoint=Checkpoint.of(network))
            server.tell(0, number, result)
        assert server.flush() == []
    finally:
        locks.release(server.writer_lock)
    kept = kept_models(f"sqlite:///{tmp_path / 'mlflow.db'}", "proto")
    assert sorted(kept) == [("coarse", 1), ("coarse", 3)]  # 0.7 and 0.9; 0.5 was dropped
    assert not list((tmp_path / "models-pending").rglob("*.npz"))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(kept[("coarse", 3)])
    finally:
        mlflow.set_tracking_uri(None)
    frame = pd.DataFrame(X.T, columns=["x0", "x1"])
    expected = np.where(network.predict(X)[0] > 0.5, "yes", "no")
    assert model.predict(frame).tolist() == expected.tolist()


def test_a_stage_with_patience_ends_a_stalled_trial_complete_with_its_model_kept(tmp_path, storage):
    """`patience: 2`: two epochs without a better dev accuracy stop the trial, which is then
    COMPLETE at its kept (best) epoch's value, its network kept as a model, not PRUNED."""
    _, network = tiny_network()
    coarse = SPEC.stages[0].model_copy(update={"patience": 2, "pruner": Pruner(type="none")})
    spec = SPEC.model_copy(update={"stages": [coarse, SPEC.stages[1]]})
    server = model_keeping_server(spec, tmp_path, storage)
    try:
        server.open_stage(0)
        number, _ = server.ask(0)
        curve = [0.5, 0.7, 0.7, 0.6]
        stops = [server.report(0, number, e, {"dev_accuracy": v}) for e, v in enumerate(curve, 1)]
        assert stops == [False, False, False, True]
        history = [{"dev_accuracy": v} for v in curve]
        stopped = TrialResult(Outcome.STOPPED, history, {"dev_accuracy": 0.7}, "node-a")
        assert (
            server.tell(0, number, dataclasses.replace(stopped, checkpoint=Checkpoint.of(network)))
            == "COMPLETE"
        )
        assert server.flush() == []
    finally:
        locks.release(server.writer_lock)
    trial = trials(storage, "coarse")[0]
    assert (trial.value, trial.user_attrs["reason"]) == (0.7, "stalled")
    assert list(kept_models(f"sqlite:///{tmp_path / 'mlflow.db'}", "proto")) == [("coarse", 0)]


def test_ask_like_shares_the_leaders_structure_and_samples_the_rest(storage, tmp_path):
    space = {
        "learning_rate": {"scale": "log", "low": 1e-4, "high": 1.0},
        "hidden_units": {"scale": "pow2", "low": 4, "high": 64},
        "batch_size": {"scale": "pow2", "low": 16, "high": 256},
    }
    spec = SweepSpec.model_validate(SPEC.model_dump() | {"space": space})
    server = StudyServer(spec.model_dump_json(), str(tmp_path), storage=storage)
    server.open_stage(0)
    leader, params = server.ask(0)
    followers = server.ask_like(0, leader, 3)
    assert [n for n, _ in followers] == [leader + 1, leader + 2, leader + 3]
    for _, theirs in followers:
        assert (theirs["hidden_units"], theirs["batch_size"]) == (
            params["hidden_units"],
            params["batch_size"],
        )
    rates = {params["learning_rate"], *(theirs["learning_rate"] for _, theirs in followers)}
    assert len(rates) == 4  # the rest is sampled per trial
    # a retry waiting in Optuna's queue goes first, alone: no followers meanwhile
    server.retry(0, leader)
    assert server.ask_like(0, leader, 3) == []
    again, retried = server.ask(0)
    assert retried == params and len(server.ask_like(0, again, 1)) == 1
    locks.release(server.writer_lock)


def test_a_packs_members_are_median_pruned_against_those_asked_before_them(server, storage):
    """The coarse stage's median pruner (3 start-up trials, no warmup) judges a pack's epoch:
    members 0-2 have too few earlier trials; 3 (0.55) is below the median of 0-2 (0.6), 4 (0.7)
    is not, 5 (0.5) is below that of 0-4 (0.6)."""
    server.open_stage(0)
    leader, _ = server.ask(0)
    pack = [leader] + [number for number, _ in server.ask_like(0, leader, 5)]
    accuracy = [0.4, 0.6, 0.8, 0.55, 0.7, 0.5]
    reports = [(n, 1, {"dev_accuracy": a}) for n, a in zip(pack, accuracy, strict=True)]
    assert server.report_pack(0, reports) == [False, False, False, True, False, True]


def test_ask_like_in_a_grid_stage_hands_out_grid_points(storage, tmp_path):
    """A grid stage packs (`pack: auto`, nothing structural searched): each follower is a grid
    point of its own. Followers were enqueued with the leader's structure (here none), and
    Optuna's GridSampler gives an enqueued trial no grid point ('All parameters must be
    specified when using GridSampler with enqueue_trial'): the StudyServer failed at the first
    pack, and again at every resume."""
    space = {
        "learning_rate": {"scale": "categorical", "choices": [0.001, 0.01, 0.1]},
        "l2": {"scale": "categorical", "choices": [0.0, 0.001]},
    }
    grid = {"name": "g", "trials": 6, "sampler": "grid"}
    spec = SweepSpec.model_validate(SPEC.model_dump() | {"space": space, "stages": [grid]})
    server = StudyServer(spec.model_dump_json(), str(tmp_path), storage=storage)
    try:
        server.open_stage(0)
        leader, params = server.ask(0)
        followers = server.ask_like(0, leader, 5)
    finally:
        locks.release(server.writer_lock)
    points = {(p["learning_rate"], p["l2"]) for p in [params] + [p for _, p in followers]}
    assert len(points) == 6  # the whole grid, each point once
    # with a structural param searched a follower would have to be the leader's structure and
    # a grid point of its own: none is added, the leader trains alone
    space["batch_size"] = {"scale": "categorical", "choices": [16, 32]}
    spec = SweepSpec.model_validate(spec.model_dump() | {"space": space})
    server = StudyServer(
        spec.model_dump_json(), str(tmp_path), storage=optuna.storages.InMemoryStorage()
    )
    try:
        server.open_stage(0)
        leader, _ = server.ask(0)
        assert server.ask_like(0, leader, 3) == []
    finally:
        locks.release(server.writer_lock)


def test_a_stage_runs_best_value_is_its_own_not_a_warm_start_copys(server, storage, tmp_path):
    """The fine stage's run said best_value 0.9, a copy of the coarse stage's best, where its
    own best trial was 0.5 (the progress table said 0.5)."""
    server.open_stage(0)
    for accuracy in (0.9, 0.8, 0.2, 0.1):
        number, _ = server.ask(0)
        server.tell(0, number, done(accuracy))
    server.close_stage(0)
    server.open_stage(1)
    for accuracy in (0.5, 0.4):
        number, _ = server.ask(1)
        server.tell(1, number, done(accuracy))
    server.close_stage(1)
    assert server.flush() == []
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("proto").experiment_id], "tags.`sweeper.kind` = 'stage'"
    )
    best = {r.info.run_name: r.data.metrics["best_value"] for r in runs}
    assert best == {"coarse": 0.9, "fine": 0.5}

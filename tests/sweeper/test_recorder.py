"""The Recorder's batching: finished trials wait a little for company and are written together,
behind any job queued before them; against a temporary MLflow SQLite store."""

from __future__ import annotations

from collections import deque

from mlflow.tracking import MlflowClient

from sweeper.records import TrialRecord
from sweeper.tracking.events import Finished
from sweeper.tracking.recorder import BATCH, LINGER_S, Recorder, is_due, pop_batch


def record(number: int, state: str = "COMPLETE") -> TrialRecord:
    return TrialRecord(
        stage="coarse",
        number=number,
        state=state,
        value=0.5,
        params={"learning_rate": 0.01},
        metrics={"dev_accuracy": 0.5},
        history=[{"dev_accuracy": 0.4}, {"dev_accuracy": 0.5}],
        start_ms=1_700_000_000_000,
        end_ms=1_700_000_001_000,
    )


def job(tracker) -> None:
    pass


def test_finished_trials_linger_unless_a_job_waits_behind_them_or_someone_flushes():
    at = 100.0
    lone = deque([Finished(record(0), at)])
    assert not is_due(lone, flushing=False, now=at)
    assert is_due(lone, flushing=False, now=at + LINGER_S)
    assert is_due(lone, flushing=True, now=at)
    assert is_due(deque([Finished(record(0), at), ("close stage", job)]), False, at)
    assert is_due(deque([("open stage", job)]), False, at)
    assert is_due(deque(Finished(record(i), at) for i in range(BATCH)), False, at)
    assert not is_due(deque(), flushing=True, now=at)


def test_a_batch_is_the_finished_trials_at_the_head_up_to_the_limit():
    jobs = deque(
        [*(Finished(record(i)) for i in range(3)), ("close stage", job), Finished(record(3))]
    )
    assert [e.record.number for e in pop_batch(jobs)] == [0, 1, 2]
    assert jobs[0] == ("close stage", job) and len(jobs) == 2
    assert pop_batch(jobs) == []  # a job heads the queue: it goes first, alone
    many = deque(Finished(record(i)) for i in range(BATCH + 5))
    assert len(pop_batch(many)) == BATCH and len(many) == 5


def test_the_recorder_writes_every_trial_queued_while_mlflow_starts(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recorder = Recorder(uri, "batched", tmp_path / "artifacts")
    recorder.open_stage("coarse", {"trials": 40}, [record(0), record(1, "PRUNED")])
    for number in range(2, 40):  # queued while the thread still imports mlflow
        recorder.log_trial(record(number, "FAIL" if number % 10 == 0 else "COMPLETE"))
    recorder.close_stage("coarse", {"trials_complete": 35.0}, None)
    recorder.flush()
    assert recorder.errors == []

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("batched").experiment_id
    runs = client.search_runs([experiment], max_results=100)
    stage = [r for r in runs if r.data.tags["sweeper.kind"] == "stage"]
    trials = {int(r.data.tags["sweeper.trial"]): r for r in runs if r not in stage}
    assert len(stage) == 1 and stage[0].info.status == "FINISHED"
    assert sorted(trials) == list(range(40))
    assert all(r.data.tags["mlflow.parentRunId"] == stage[0].info.run_id for r in trials.values())
    assert trials[1].info.status == "KILLED" and trials[10].info.status == "FAILED"
    assert trials[39].data.metrics == {"dev_accuracy": 0.5}


def test_a_kept_model_pushed_out_before_its_turn_is_never_written(tmp_path):
    import threading

    import numpy as np

    from model import TrainConfig, train
    from model.checkpoint import Checkpoint
    from sweeper.data.datasets import Preprocessing
    from sweeper.tracking.store import kept_models

    X = np.random.default_rng(0).normal(size=(2, 40)).astype(np.float32)
    network = train(TrainConfig(epochs=1, hidden_units=3), X, (X[0] > 0) * 1, n_classes=2).network
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    preprocessing = Preprocessing(["x0", "x1"], ["no", "yes"])
    recorder = Recorder(uri, "kept", tmp_path / "artifacts", preprocessing)
    recorder.open_stage("coarse", {}, [record(n) for n in range(3)])
    recorder.open_stage("busy", {}, [])
    recorder.flush()
    staged = {n: tmp_path / "staged" / str(n) for n in range(3)}
    for folder in staged.values():
        Checkpoint.of(network).save(folder)
    writer_free = threading.Event()
    recorder.close_stage("busy", {}, lambda: writer_free.wait(60) and {})  # holds the writer
    recorder.save_model("coarse", 0, staged[0])
    recorder.save_model("coarse", 1, staged[1])
    recorder.drop_model("coarse", 0)  # pushed out while its save still waits
    assert not staged[0].exists() and staged[1].exists()  # removed now, never written
    writer_free.set()
    recorder.flush()
    recorder.save_model("coarse", 2, staged[2])
    recorder.flush()
    recorder.drop_model("coarse", 2)  # already written: deleted from MLflow, as before
    recorder.flush()
    assert recorder.errors == []
    assert sorted(kept_models(uri, "kept")) == [("coarse", 1)]
    assert not any(folder.exists() for folder in staged.values())

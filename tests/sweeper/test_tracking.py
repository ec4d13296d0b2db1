"""Trial runs written in bulk into MLflow's tables read back as the client's own runs do, and
runs written live (RUNNING at the start, epochs while training) end as runs written in one go."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from sweeper.records import TrialRecord
from sweeper.tracking.events import Epoch, Finished, Started
from sweeper.tracking.live import LiveRuns
from sweeper.tracking.store import check_store, create_sqlite_store
from sweeper.tracking.tracker import Tracker

START = 1_700_000_000_000
EPOCHS = 3


def record(
    number: int, state: str, history: list[dict[str, float]], **metrics: float
) -> TrialRecord:
    return TrialRecord(
        stage="coarse",
        number=number,
        state=state,
        value=metrics.get("dev_accuracy"),
        params={"learning_rate": 10.0**-number, "optimizer": "adam", "num_layers": 2},
        metrics=metrics,
        history=history,
        start_ms=START + 1000 * number,
        # trial 0 ends the millisecond of its last epoch: its final dev_accuracy is then the
        # same point as that epoch's, which MLflow keeps once
        end_ms=START + 1000 * number + (EPOCHS if number == 0 else 500),
        node_id="abc",
        reason="diverged" if state == "PRUNED" else None,
    )


RECORDS = [
    record(
        0,
        "COMPLETE",
        [{"dev_accuracy": 0.5 + e / 10, "cost": 1.0 / (e + 1)} for e in range(3)],
        dev_accuracy=0.7,
        test_accuracy=0.68,
    ),
    record(
        1,
        "PRUNED",
        [{"dev_accuracy": 0.4, "cost": math.inf}, {"dev_accuracy": 0.1, "cost": math.nan}],
    ),
    record(
        2,
        "FAIL",
        [],
    ),
    record(3, "COMPLETE", [{"dev_accuracy": 0.9, "cost": -0.0}] * EPOCHS, dev_accuracy=0.9),
]


def written(uri: str, artifacts: Path, bulk: bool, live: bool = False) -> dict[str, Any]:
    """RECORDS as runs of a new experiment (`live`: as a sweep writes them while they train),
    read back through MlflowClient."""
    tracker = Tracker(uri, artifacts.name, artifacts)
    if bulk:
        assert tracker.database is not None  # a database store takes the bulk path
    else:
        tracker.database = None  # the reference: MlflowClient's create/log_batch/terminate
    parent = tracker.stage_run("coarse", {"trials": 4}, int(time.time() * 1000))
    trial_ids = write_live(tracker, parent) if live else tracker.log_trials(parent, RECORDS)
    run_ids = [*trial_ids, tracker.log_trial(None, RECORDS[0], "panda")]
    client = MlflowClient(uri)
    runs = {}
    for run_id in run_ids:
        run = client.get_run(run_id)
        tags = dict(run.data.tags)
        assert tags.pop("mlflow.parentRunId", parent) == parent
        runs[(tags["sweeper.kind"], run.info.run_name)] = {
            "info": (
                run.info.status,
                run.info.start_time,
                run.info.end_time,
                run.info.lifecycle_stage,
                run.info.user_id,
            ),
            "artifacts": run.info.artifact_uri.removesuffix(f"/{run_id}/artifacts"),
            "tags": tags,
            "params": run.data.params,
            "latest": {k: _nan_safe(v) for k, v in run.data.metrics.items()},
            "history": {
                key: sorted(
                    (m.step, m.timestamp, _nan_safe(m.value))
                    for m in client.get_metric_history(run_id, key)
                )
                for key in run.data.metrics
            },
        }
    found = client.search_runs(
        [tracker.experiment_id], "tags.`sweeper.kind` = 'trial' and attributes.status = 'KILLED'"
    )
    assert [r.info.run_name for r in found] == ["coarse-1"]
    return runs


def write_live(tracker: Tracker, parent: str) -> list[str]:
    """RECORDS as the StudyServer sends them while the trials run, in three batches (trial 3
    starts and ends within the last one); a running run is checked between batches."""
    live, created = LiveRuns(), {}

    def batch(events: list) -> None:
        writes = live.plan(events, lambda stage: parent)
        created.update(tracker.write_trials(writes))
        live.written(writes, created)

    def epoch(record: TrialRecord, e: int) -> Epoch:  # reported at the time RunContent stamps
        return Epoch(record.stage, record.number, e, record.history[e - 1], record.start_ms + e)

    def started(record: TrialRecord) -> Started:  # as `ask` knows it
        return Started(
            TrialRecord(
                record.stage, record.number, "RUNNING", None, record.params, {}, [], record.start_ms
            )
        )

    first, last = RECORDS[:3], RECORDS[3]
    batch([*(started(r) for r in first), *(epoch(r, 1) for r in first if r.history)])
    run = tracker.client.get_run(created[("coarse", 0)])
    assert (run.info.status, run.info.end_time) == ("RUNNING", None)
    assert run.data.metrics == RECORDS[0].history[0]
    assert "sweeper.epochs" not in run.data.tags
    batch([epoch(RECORDS[0], 2)])
    history = tracker.client.get_metric_history(created[("coarse", 0)], "dev_accuracy")
    assert [m.value for m in history] == [r["dev_accuracy"] for r in RECORDS[0].history[:2]]
    # trial 1 never reports its second epoch (it diverged there): its history fills it in
    ending = [epoch(RECORDS[0], 3), *(Finished(r) for r in first)]
    batch([*ending, started(last), *(epoch(last, e) for e in (1, 2, 3)), Finished(last)])
    assert live.open == {}
    return [created[("coarse", r.number)] for r in RECORDS]


def _nan_safe(value: float) -> float | str:
    return "nan" if math.isnan(value) else value


def test_bulk_runs_read_back_as_client_runs(tmp_path: Path) -> None:
    assert_bulk_reads_as_client(lambda name: f"sqlite:///{tmp_path / name}.db", tmp_path)


def assert_bulk_reads_as_client(uri: Callable[[str], str], tmp_path: Path) -> None:
    """Runs written by RunTables and by the client, in one go or live (each into its own
    experiment), read alike."""

    def read(name: str, bulk: bool, live: bool) -> dict[str, Any]:
        runs = written(uri(name), tmp_path / name, bulk, live)
        for run in runs.values():
            run["artifacts"] = Path(run["artifacts"].removeprefix("file://")).parent.name
        return runs

    reference = read("client", bulk=False, live=False)
    assert read("bulk", bulk=True, live=False) == reference
    assert read("client-live", bulk=False, live=True) == reference
    assert read("bulk-live", bulk=True, live=True) == reference
    zero = reference[("trial", "coarse-0")]
    assert zero["info"][0] == "FINISHED"
    assert len(zero["history"]["dev_accuracy"]) == EPOCHS  # the duplicate point kept once
    assert reference[("trial", "coarse-1")]["history"]["cost"] == [
        (1, START + 1001, pytest.approx(1.7976931348623157e308)),
        (2, START + 1002, "nan"),
    ]
    assert reference[("trial", "coarse-2")]["info"][0] == "FAILED"


def test_a_new_store_is_a_copy_of_the_cached_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("one", "two"):
        create_sqlite_store(f"sqlite:///{tmp_path / name}.db")
        check_store(f"sqlite:///{tmp_path / name}.db")
    (empty,) = (tmp_path / "cache" / "sweeper").iterdir()
    assert empty.name == f"mlflow-{mlflow.__version__}-empty.db"
    assert not list(tmp_path.glob("*.creating"))
    assert MlflowClient(f"sqlite:///{tmp_path / 'two'}.db").search_runs(["0"]) == []


def test_without_a_writable_cache_the_store_is_built_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))
    create_sqlite_store(f"sqlite:///{tmp_path / 'store'}.db")
    check_store(f"sqlite:///{tmp_path / 'store'}.db")


def test_sqlite_pragmas_apply_to_the_sweeps_store_only(tmp_path: Path) -> None:
    import sqlalchemy

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "pragmas", tmp_path / "artifacts")
    assert tracker.database is not None
    with tracker.database.store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'someone-elses.db'}")
    with other.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # SQLite's FULL


def test_the_data_is_told_apart_by_its_values_and_logged_as_run_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the data's relative paths are from here
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from sweeper.data.datasets import load_dataset
    from sweeper.spec.schema import DataSpec

    table = pa.table({"a": [0.5, 1.5, 2.5, 3.5] * 5, "label": ["x", "y", "y", "x"] * 5})
    pq.write_table(table, tmp_path / "same.parquet")
    pcsv.write_csv(table, tmp_path / "same.csv")
    changed = table.set_column(0, "a", pa.array([0.5, 1.5, 2.5, 3.25] * 5))
    pq.write_table(changed, tmp_path / "changed.parquet")

    def read(source: str, test: str | None = None):
        return load_dataset(DataSpec(source=source, target="label", test=test)).inputs

    (parquet,), (csv,), (other,) = read("same.parquet"), read("same.csv"), read("changed.parquet")
    assert parquet.digest == csv.digest  # the same values, whatever the file format
    assert other.digest != parquet.digest
    assert parquet.columns == {"a": "double", "label": "string"} and parquet.rows == 20
    (flower,), (moons,) = read("builtin:flower"), read("builtin:moons")
    assert flower.digest != moons.digest and flower.source_type == "code"
    assert [i.context for i in read("same.parquet", test="changed.parquet")] == [
        "training",
        "test",
    ]

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "inputs", tmp_path / "artifacts")
    runs = [tracker.stage_run(name, {}, START) for name in ("first", "second")]
    tracker.log_inputs(runs[0], [parquet])
    tracker.log_inputs(runs[0], [parquet])  # a resumed stage logs it again: still one input
    tracker.log_inputs(runs[1], [other, flower])
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = [
        [(i.dataset.name, i.dataset.digest) for i in client.get_run(r).inputs.dataset_inputs]
        for r in runs
    ]
    assert logged[0] == [("same.parquet", parquet.digest)]
    assert sorted(logged[1]) == sorted(
        [("changed.parquet", other.digest), ("flower", flower.digest)]
    )


def test_a_running_run_ends_when_its_end_brings_no_new_metric(tmp_path: Path) -> None:
    """Ctrl-C FAILs a running trial with no final metrics, every epoch already written live:
    the batch that ends its run adds no metric point and must still go in (it once failed on an
    empty delete of latest metrics, so the run stayed RUNNING and the batch's other runs too)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "interrupted", tmp_path / "artifacts")
    parent = tracker.stage_run("coarse", {"trials": 1}, START)
    live, created = LiveRuns(), {}

    def batch(events: list) -> None:
        writes = live.plan(events, lambda stage: parent)
        created.update(tracker.write_trials(writes))
        live.written(writes, created)

    history = [{"dev_accuracy": 0.5, "cost": 1.0}]
    running = TrialRecord("coarse", 0, "RUNNING", None, RECORDS[0].params, {}, [], START)
    batch([Started(running), Epoch("coarse", 0, 1, history[0], START + 1)])
    interrupted = TrialRecord(
        "coarse", 0, "FAIL", None, RECORDS[0].params, {}, history, START, START + 2
    )
    batch([Finished(interrupted), Started(RECORDS[3]), Finished(RECORDS[3])])
    run = tracker.client.get_run(created[("coarse", 0)])
    assert (run.info.status, run.info.end_time) == ("FAILED", START + 2)
    assert run.data.metrics == history[0]
    assert tracker.client.get_run(created[("coarse", 3)]).info.status == "FINISHED"
    assert live.open == {}


def test_a_continued_runs_final_metrics_are_its_latest(tmp_path: Path) -> None:
    """`sweeper train --from RUN@3000 --set early_stopping=1` (flower) early-stopped at epoch
    3002, kept epoch 3001's network (dev_loss 0.3064) and ended 62 ms after it started; its
    epochs were stamped start + 3001, 3002 ms, after that end, so MLflow showed the run's
    dev_loss as epoch 3002's 0.3065, not the final 0.3064 logged at the same step."""
    from sweeper.tracking.run_tables import RunContent

    history = [{"dev_loss": 0.3064}, {"dev_loss": 0.3065}]
    start, end = START, START + 62
    record = TrialRecord(
        "panda", 0, "COMPLETE", None, {}, {"dev_loss": 0.3064}, history, start, end
    )
    run = RunContent.of(None, record, "panda", {}, first_epoch=3001)
    assert [m.step for m in run.epochs] == [3001, 3002]
    assert max(m.timestamp for m in run.epochs) < min(m.timestamp for m in run.final) == end
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "e", tmp_path / "artifacts")
    run_id = tracker.log_trial(None, record, kind="panda", first_epoch=3001)
    assert tracker.client.get_run(run_id).data.metrics["dev_loss"] == 0.3064

"""Trial runs written straight into an MLflow database store, many in one transaction.

MLflow's client writes a run through three store calls (create, log_batch, terminate), each with
its own session, queries and commit: ~20 ms a run on SQLite, far more than an empty trial costs.
Here a batch of new runs (RUNNING or already ended) and of updates to running ones (epochs
appended, tags changed, status set) becomes rows of MLflow's own ORM models (the schema its
migrations keep) in one session. tests/sweeper/test_tracking.py checks that runs written this way
read back through MlflowClient exactly as ones written by the client do, so a schema change in
MLflow fails there.
"""

from __future__ import annotations

import collections
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlparse

import sqlalchemy
from mlflow.entities import LifecycleStage, Metric, SourceType
from mlflow.store.db.db_types import DATABASE_ENGINES
from mlflow.store.tracking.dbmodels.models import (
    SqlLatestMetric,
    SqlMetric,
    SqlParam,
    SqlRun,
    SqlTag,
)
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.uri import append_to_uri_path

from sweeper.records import TrialRecord, mlflow_status


@dataclass
class RunContent:
    """What a trial's run holds, whichever way it is written: `epochs`, its per-epoch metrics
    at steps 1…n; `final`, the metrics of the model it kept, at step n."""

    name: str
    status: str
    start_ms: int
    end_ms: int | None  # None while RUNNING
    tags: dict[str, str]
    params: dict[str, str]
    epochs: list[Metric]
    final: list[Metric]

    @property
    def metrics(self) -> list[Metric]:
        return self.epochs + self.final

    @classmethod
    def of(
        cls,
        parent_run_id: str | None,
        record: TrialRecord,
        kind: str,
        tags: dict[str, str],
        first_epoch: int = 1,
    ) -> RunContent:
        """The run of `record` (a RUNNING one has no end yet): per-epoch metrics at steps
        first_epoch… (a continued panda run numbers its epochs on), the final ones at the last
        step. Its history's i-th epoch is stamped start + i ms: when each epoch ended is not kept
        in Optuna (a live run has the real times, see live.py). Not start + the epoch's number: a
        run continued at epoch 3001 stamped its epochs after its own end, so MLflow took the
        last epoch's value for the run's, not the final one."""
        history = record.history
        now = int(time.time() * 1000)
        running = record.state == "RUNNING"
        start_ms, end_ms = record.start_ms or now, None if running else record.end_ms or now
        last = first_epoch + len(history) - 1
        return cls(
            name=f"{record.stage}-{record.number}",
            status=mlflow_status(record.state),
            start_ms=start_ms,
            end_ms=end_ms,
            tags={
                **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}),
                "sweeper.kind": kind,
                "sweeper.stage": record.stage,
                "sweeper.trial": str(record.number),
                "sweeper.state": record.state,
                **({} if running else {"sweeper.epochs": str(len(history))}),
                **{f"sweeper.{k}": v for k, v in (record.tags | tags).items()},
            },
            params={k: str(v) for k, v in record.params.items()},
            epochs=[
                Metric(name, float(value), start_ms + epoch - first_epoch + 1, epoch)
                for epoch, epoch_metrics in enumerate(history, start=first_epoch)
                for name, value in epoch_metrics.items()
            ],
            final=[Metric(k, float(v), end_ms or now, last) for k, v in record.metrics.items()],
        )


class Point(NamedTuple):
    """One metric value as MLflow stores it (NaN as 0 with is_nan; ±inf as ±float max)."""

    key: str
    timestamp: int
    step: int
    value: float
    is_nan: bool

    def recency(self) -> tuple[int, int, float]:
        """MLflow's order for a metric's latest value."""
        return (self.step, self.timestamp, self.value)


def fast_sqlite_commits(connection: Any, _: Any) -> None:
    """WAL journal and synchronous=NORMAL on the connections of a sweep's SQLite MLflow store: a
    commit no longer waits for an fsync, which halves the cost of writing a trial's run. A power
    cut may lose the last runs but cannot corrupt the file, and Optuna (the source of truth)
    rebuilds lost runs on resume. Listens on the store's engine only: other SQLAlchemy engines
    in the process keep their own settings. (A store the sweeper creates is in WAL mode from
    the start; a store given by URL is switched on its first connection here.)"""
    if isinstance(connection, sqlite3.Connection):
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")


def is_database(tracking_uri: str) -> bool:
    """sqlite:///…, postgresql://… and the like (not a tracking server)."""
    return urlparse(tracking_uri).scheme.split("+")[0] in DATABASE_ENGINES


@dataclass
class RunUpdate:
    """What a batch adds to a run created by an earlier one: metrics appended, tags set (new
    or changed), and its end, when the trial ended."""

    run_id: str
    metrics: list[Metric] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    status: str | None = None
    end_ms: int | None = None


class RunTables:
    """One experiment's runs in a database store."""

    def __init__(self, tracking_uri: str, experiment_id: str, artifact_location: str):
        self.store = SqlAlchemyStore(tracking_uri, artifact_location)
        engine = self.store.engine  # MLflow's one engine for this store, shared with its client
        if engine.dialect.name == "sqlite" and not sqlalchemy.event.contains(
            engine, "connect", fast_sqlite_commits
        ):
            sqlalchemy.event.listen(engine, "connect", fast_sqlite_commits)
            engine.dispose()  # pooled connections opened before the listener: reopened with it
        self.experiment_id = int(experiment_id)
        self.artifact_location = artifact_location
        self.latest: dict[str, dict[str, Point]] = {}  # a running run's latest metric points

    def write(self, new: list[RunContent], updates: list[RunUpdate]) -> list[str]:
        """Create the `new` runs and apply `updates` to running ones, in one transaction; the
        new runs' ids. A killed writer leaves all of a batch or none of it."""
        rows: dict[type, list[dict[str, Any]]] = collections.defaultdict(list)
        replaced: dict[type, list[dict[str, Any]]] = collections.defaultdict(list)  # (run, key)
        ended: list[dict[str, Any]] = []
        latest: dict[str, dict[str, Point]] = {}  # of the runs still running after the batch
        run_ids = []
        for run in new:
            run_ids.append(uuid.uuid4().hex)
            rows[SqlRun].append(self._run_row(run_ids[-1], run))
            for key, value in {MLFLOW_RUN_NAME: run.name, **run.tags}.items():
                rows[SqlTag].append({"key": key, "value": value, "run_uuid": run_ids[-1]})
            for key, value in run.params.items():
                rows[SqlParam].append({"key": key, "value": value, "run_uuid": run_ids[-1]})
            points = self._metric_rows(run_ids[-1], run.metrics, {}, rows)
            if run.end_ms is None:
                latest[run_ids[-1]] = points
        for update in updates:
            run_id = update.run_id
            for key, value in update.tags.items():
                replaced[SqlTag].append({"run": run_id, "key": key})
                rows[SqlTag].append({"key": key, "value": value, "run_uuid": run_id})
            before = self.latest.get(run_id, {})
            points = self._metric_rows(run_id, update.metrics, before, rows)
            for key in points:  # (never an empty list: a delete needs its `run` and `key`)
                replaced[SqlLatestMetric].append({"run": run_id, "key": key})
            if update.status is None:
                latest[run_id] = before | points
            else:
                ended.append(
                    {"run_uuid": run_id, "status": update.status, "end_time": update.end_ms}
                )
        with self.store.ManagedSessionMaker(read_only=False) as session:
            if rows[SqlRun]:  # keys first
                session.execute(sqlalchemy.insert(SqlRun), rows.pop(SqlRun))
            if ended:
                session.execute(sqlalchemy.update(SqlRun), ended)  # by primary key
            for model, keys in replaced.items():
                table = model.__table__
                session.execute(
                    table.delete().where(
                        table.c.run_uuid == sqlalchemy.bindparam("run"),
                        table.c.key == sqlalchemy.bindparam("key"),
                    ),
                    keys,
                )
            for model in (SqlTag, SqlParam, SqlMetric, SqlLatestMetric):
                if rows[model]:
                    session.execute(sqlalchemy.insert(model), rows[model])
        for update in updates:
            self.latest.pop(update.run_id, None)
        self.latest.update(latest)
        return run_ids

    def _run_row(self, run_id: str, run: RunContent) -> dict[str, Any]:
        """The runs row `create_run` (+ `set_terminated`, when it has ended) would leave."""
        return {
            "run_uuid": run_id,
            "name": run.name,
            "artifact_uri": append_to_uri_path(
                self.artifact_location, run_id, SqlAlchemyStore.ARTIFACTS_FOLDER_NAME
            ),
            "experiment_id": self.experiment_id,
            "source_type": SourceType.to_string(SourceType.UNKNOWN),
            "source_name": "",
            "entry_point_name": "",
            "user_id": "unknown",
            "status": run.status,
            "start_time": run.start_ms,
            "end_time": run.end_ms,
            "deleted_time": None,
            "source_version": "",
            "lifecycle_stage": LifecycleStage.ACTIVE,
        }

    def _metric_rows(
        self,
        run_id: str,
        metrics: list[Metric],
        latest: dict[str, Point],
        rows: dict[type, list[dict[str, Any]]],
    ) -> dict[str, Point]:
        """Add the metrics rows of `metrics` (as `log_batch` would: a repeated point once) and
        the latest_metrics rows of the keys whose latest value they change; those points."""
        changed: dict[str, Point] = {}
        for point in dict.fromkeys(self._point(m) for m in metrics):
            rows[SqlMetric].append({**point._asdict(), "run_uuid": run_id})
            current = changed.get(point.key, latest.get(point.key))
            if current is None or point.recency() > current.recency():
                changed[point.key] = point
        rows[SqlLatestMetric] += [{**p._asdict(), "run_uuid": run_id} for p in changed.values()]
        return changed

    def _point(self, metric: Metric) -> Point:
        is_nan, value = self.store.sanitize_metric_value(metric.value)
        return Point(metric.key, metric.timestamp, metric.step, value, is_nan)

"""Finished runs written straight into an MLflow database store, many in one transaction.

MLflow's client writes a run through three store calls (create, log_batch, terminate), each with
its own session, queries and commit: ~20 ms a run on SQLite, far more than an empty trial costs.
Here a batch of runs becomes rows of MLflow's own ORM models (the schema its migrations keep) in
one session. tests/sweeper/test_tracking.py checks that a run written this way reads back through
MlflowClient exactly as one written by the client does, so a schema change in MLflow fails there.
"""

from __future__ import annotations

import collections
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
    """What a finished trial's run holds, whichever way it is written."""

    name: str
    status: str
    start_ms: int
    end_ms: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: list[Metric]

    @classmethod
    def of(
        cls,
        parent_run_id: str | None,
        record: TrialRecord,
        kind: str,
        tags: dict[str, str],
        first_epoch: int = 1,
    ) -> RunContent:
        """The run of `record`: per-epoch metrics at steps 1…n (first_epoch…: a continued panda
        run numbers its epochs on), the final ones at the last step."""
        history = record.history
        now = int(time.time() * 1000)
        start_ms, end_ms = record.start_ms or now, record.end_ms or now
        metrics = [
            Metric(name, float(value), start_ms + epoch, epoch)
            for epoch, epoch_metrics in enumerate(history, start=first_epoch)
            for name, value in epoch_metrics.items()
        ]
        last = first_epoch + len(history) - 1
        metrics += [Metric(k, float(v), end_ms, last) for k, v in record.metrics.items()]
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
                "sweeper.epochs": str(len(history)),
                **{f"sweeper.{k}": v for k, v in (record.tags | tags).items()},
            },
            params={k: str(v) for k, v in record.params.items()},
            metrics=metrics,
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

    def insert(self, runs: list[RunContent]) -> list[str]:
        """Write `runs` (each already terminated) in one transaction; their run ids."""
        rows: dict[type, list[dict[str, Any]]] = collections.defaultdict(list)
        run_ids = []
        for run in runs:
            run_ids.append(uuid.uuid4().hex)
            for model, row in self._rows(run_ids[-1], run):
                rows[model].append(row)
        with self.store.ManagedSessionMaker(read_only=False) as session:
            for model in (SqlRun, SqlTag, SqlParam, SqlMetric, SqlLatestMetric):  # keys first
                if rows[model]:
                    session.execute(sqlalchemy.insert(model), rows[model])
        return run_ids

    def _rows(self, run_id: str, run: RunContent) -> Iterator[tuple[type, dict[str, Any]]]:
        """A run's rows as `create_run` + `log_batch` + `set_terminated` would leave them."""
        yield (
            SqlRun,
            {
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
            },
        )
        for key, value in {MLFLOW_RUN_NAME: run.name, **run.tags}.items():
            yield SqlTag, {"key": key, "value": value, "run_uuid": run_id}
        for key, value in run.params.items():
            yield SqlParam, {"key": key, "value": value, "run_uuid": run_id}
        points = list(dict.fromkeys(self._point(m) for m in run.metrics))  # as log_batch
        latest: dict[str, Point] = {}
        for point in points:
            yield SqlMetric, {**point._asdict(), "run_uuid": run_id}
            if point.key not in latest or point.recency() > latest[point.key].recency():
                latest[point.key] = point
        for point in latest.values():
            yield SqlLatestMetric, {**point._asdict(), "run_uuid": run_id}

    def _point(self, metric: Metric) -> Point:
        is_nan, value = self.store.sanitize_metric_value(metric.value)
        return Point(metric.key, metric.timestamp, metric.step, value, is_nan)

"""Finished runs written straight into an MLflow database store, many in one transaction.

MLflow's client writes a run through three store calls (create, log_batch, terminate), each with
its own session, queries and commit: ~20 ms a run on SQLite, far more than an empty trial costs.
Here a batch of runs becomes rows of MLflow's own ORM models (the schema its migrations keep) in
one session. tests/sweeper/test_tracking.py checks that a run written this way reads back through
MlflowClient exactly as one written by the client does, so a schema change in MLflow fails there.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple
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

if TYPE_CHECKING:
    from sweeper.tracking import RunContent


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


def is_database(tracking_uri: str) -> bool:
    """sqlite:///…, postgresql://… and the like (not a tracking server)."""
    return urlparse(tracking_uri).scheme.split("+")[0] in DATABASE_ENGINES


class RunTables:
    """One experiment's runs in a database store."""

    def __init__(self, tracking_uri: str, experiment_id: str, artifact_location: str):
        self.store = SqlAlchemyStore(tracking_uri, artifact_location)
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

"""MLflow records of a sweep: one experiment, a parent run per stage, a child run per trial.

Only the StudyServer writes here, through an explicit MlflowClient (never the fluent API's global
run stack). A trial's child run is created RUNNING when the trial starts, gets its epochs while
it trains and its end when it ends (see live.py), in batches. A run a crash left RUNNING is
deleted when its stage opens again and rebuilt from Optuna (the source of truth).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_RUN_NAME

from model.checkpoint import Checkpoint
from sweeper import secrets
from sweeper.data.datasets import DataInput, Preprocessing
from sweeper.records import MODEL_ARTIFACT, TrialRecord
from sweeper.tracking import models
from sweeper.tracking.live import Key, Writes
from sweeper.tracking.run_tables import RunContent, RunTables, is_database
from sweeper.tracking.store import MODEL_TAG, SWEEP_ID_TAG, create_sqlite_store

BATCH_LIMIT = 1000  # MLflow's maximum metrics per log_batch call
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
BEST_TAG = "sweeper.best"  # on the trial run of the sweep's best trial


def _schema(columns: dict[str, str]) -> list[dict[str, Any]]:
    return Schema([ColSpec(kind, name) for name, kind in columns.items()]).to_dict()


BEST_SUFFIX = " (best)"  # the best trial's run name, to find it at a glance in the UI


def _run_name(run: Any) -> str:
    """A trial run's own name, without the best mark."""
    return run.info.run_name.removesuffix(BEST_SUFFIX)


class Tracker:
    """Writes a sweep's runs; all methods are called from the StudyServer only."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_dir: Path | None,
        sweep_id: str | None = None,
    ):
        """`sweep_id`: the sweep folder's, tagged on an experiment this makes (see
        `store.foreign_experiment`)."""
        # MLflow prints a tracking server's URL at every run's end, credentials and all: into
        # the StudyServer's Ray log (world-readable, and served by `ray logs`)
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        tracking_uri = secrets.expand(tracking_uri)  # `${VAR}` in the spec: the secret, here only
        create_sqlite_store(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            # a tracking server keeps artifacts where it is configured to; a local store, here
            local = artifact_dir is not None and not tracking_uri.startswith(("http:", "https:"))
            location = artifact_dir.resolve().as_uri() if local else None
            tags = {SWEEP_ID_TAG: sweep_id} if sweep_id else None
            found = self.client.get_experiment(
                self.client.create_experiment(experiment, location, tags=tags)
            )
        self.experiment_id = found.experiment_id
        # MLflow 3's UI opens an experiment of this kind on its training runs, not on GenAI
        self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        self.database = (
            RunTables(tracking_uri, found.experiment_id, found.artifact_location)
            if is_database(tracking_uri)
            else None
        )

    def stage_run(self, stage: str, params: dict[str, Any], start_ms: int) -> str:
        """The stage's parent run, created once (a resumed sweep finds it again)."""
        tags = {"sweeper.stage": stage, "sweeper.kind": "stage"}
        return self._run_once(stage, tags, params, start_ms)

    def sweep_run(self, start_ms: int) -> str:
        """The run holding the figures across stages and the report, created once."""
        return self._run_once("sweep", {"sweeper.kind": "sweep"}, {}, start_ms)

    def _run_once(
        self, name: str, tags: dict[str, str], params: dict[str, Any], start_ms: int
    ) -> str:
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], query)
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(
            self.experiment_id, start_time=start_ms, run_name=name, tags=tags
        )
        self.client.log_batch(
            run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()]
        )
        return run.info.run_id

    def log_inputs(self, run_id: str, inputs: list[DataInput]) -> None:
        """The data a stage trains (and tests) on, as its run's MLflow input datasets (MLflow
        keeps one dataset per name and digest in an experiment, and one link per run)."""
        self.client.log_inputs(
            run_id,
            [
                DatasetInput(
                    Dataset(
                        name=data.name,
                        digest=data.digest,
                        source_type=data.source_type,
                        source=json.dumps(data.source),
                        schema=json.dumps({"mlflow_colspec": _schema(data.columns)}),
                        profile=json.dumps({"num_rows": data.rows}),
                    ),
                    [InputTag(MLFLOW_DATASET_CONTEXT, data.context)],
                )
                for data in inputs
            ],
        )

    def log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Files (figures, the report) as artifacts of a run."""
        with tempfile.TemporaryDirectory() as folder:
            for name, content in files.items():
                (Path(folder) / name).write_bytes(content)
            self.client.log_artifacts(run_id, folder)

    def finish_run(
        self,
        run_id: str,
        metrics: dict[str, float],
        status: str = "FINISHED",
        end_ms: int | None = None,
    ) -> None:
        """Close a stage's or the sweep's run: FINISHED when done, KILLED when interrupted;
        `end_ms`: when it ended (the figures drawn after do not count)."""
        end_ms = end_ms or int(time.time() * 1000)
        metrics_at_end = [Metric(k, v, end_ms, 0) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=metrics_at_end)
        self.client.set_terminated(run_id, status, end_time=end_ms)

    def discard_unfinished_trial_runs(self, stage: str) -> int:
        """Delete trial runs a killed writer left RUNNING; Optuna holds what rebuilds them."""
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`sweeper.stage` = '{stage}' and tags.`sweeper.kind` = 'trial' "
            "and attributes.status = 'RUNNING'",
            max_results=10_000,
        )
        for run in runs:
            self.client.delete_run(run.info.run_id)
        return len(runs)

    def count_runs(self, kind: str) -> int:
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`sweeper.kind` = '{kind}'", max_results=50_000
        )
        return len(runs)

    def logged_trials(self, stage: str) -> set[int]:
        """Numbers of the stage's trials that have a run."""
        return set(self.trial_run_ids(stage))

    def trial_run_ids(self, stage: str) -> dict[int, str]:
        """The stage's trial numbers → their run ids."""
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`sweeper.stage` = '{stage}' and tags.`sweeper.kind` = 'trial'",
            max_results=50_000,
        )
        return {int(run.data.tags["sweeper.trial"]): run.info.run_id for run in runs}

    def save_model(self, run_id: str, checkpoint: Checkpoint, preprocessing: Preprocessing) -> None:
        """The trial's network as an MLflow Model in its run (`runs:/<run_id>/model`)."""
        with tempfile.TemporaryDirectory() as folder:
            model_folder = Path(folder) / MODEL_ARTIFACT
            models.save(model_folder, checkpoint, preprocessing)
            self.client.log_artifacts(run_id, str(model_folder), MODEL_ARTIFACT)
        self.client.set_tag(run_id, MODEL_TAG, MODEL_ARTIFACT)

    def drop_model(self, run_id: str) -> None:
        """Delete a run's model files (it was pushed out of the kept ones)."""
        artifact_uri = self.client.get_run(run_id).info.artifact_uri
        repository = get_artifact_repository(artifact_uri, self.client.tracking_uri)
        repository.delete_artifacts(MODEL_ARTIFACT)
        self.client.delete_tag(run_id, MODEL_TAG)

    def trials_with_models(self, stage: str) -> set[int]:
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`sweeper.stage` = '{stage}' and tags.`{MODEL_TAG}` = '{MODEL_ARTIFACT}'",
            max_results=50_000,
        )
        return {int(run.data.tags["sweeper.trial"]) for run in runs}

    def register_model(self, run_id: str, record: TrialRecord) -> str:
        """A new version of the registered model named as the experiment (the sweep), from the
        best trial's model, tagged with its stage, trial and value; its version number."""
        for previous in self.client.search_runs(
            [self.experiment_id], f"tags.`{BEST_TAG}` = 'true'", max_results=100
        ):
            self.client.delete_tag(previous.info.run_id, BEST_TAG)
            self.client.set_tag(previous.info.run_id, MLFLOW_RUN_NAME, _run_name(previous))
        best_run = self.client.get_run(run_id)
        self.client.set_tag(run_id, BEST_TAG, "true")
        self.client.set_tag(run_id, MLFLOW_RUN_NAME, f"{_run_name(best_run)}{BEST_SUFFIX}")
        name = self.client.get_experiment(self.experiment_id).name
        if not self.client.search_registered_models(f"name = '{name}'"):
            self.client.create_registered_model(name)
        artifact_uri = self.client.get_run(run_id).info.artifact_uri
        version = self.client.create_model_version(
            name,
            source=f"{artifact_uri}/{MODEL_ARTIFACT}",
            run_id=run_id,
            tags={"stage": record.stage, "trial": str(record.number), "value": str(record.value)},
        )
        return version.version

    def log_trial(
        self,
        parent_run_id: str | None,
        record: TrialRecord,
        kind: str = "trial",
        tags: dict[str, str] | None = None,
        first_epoch: int = 1,
    ) -> str:
        """One finished trial (or a `sweeper train` run, with its own `tags` and the number of
        its first epoch) as a run written in one go."""
        return self.log_trials(parent_run_id, [record], kind, tags, first_epoch)[0]

    def log_trials(
        self,
        parent_run_id: str | None,
        records: list[TrialRecord],
        kind: str = "trial",
        tags: dict[str, str] | None = None,
        first_epoch: int = 1,
    ) -> list[str]:
        """Finished trials as runs, each already terminated when it appears (in one
        transaction on a database store, as `write_trials`)."""
        runs = [
            RunContent.of(parent_run_id, record, kind, tags or {}, first_epoch)
            for record in records
        ]
        if self.database is not None:
            return self.database.write(runs, [])
        return [self._log_run(run) for run in runs]

    def write_trials(self, writes: Writes) -> dict[Key, str]:
        """One batch of trial runs (see live.py); the ids of the runs it created, by trial.

        On a database store the batch goes in through MLflow's own tables in one transaction:
        ~1 ms a run instead of ~20 ms of separate store calls, and a killed writer leaves all of
        a batch or none of it. A tracking server gets the client's calls, run by run."""
        if self.database is not None:
            new_ids = self.database.write(list(writes.new.values()), list(writes.updates.values()))
            created = dict(zip(writes.new, new_ids, strict=True))
        else:
            created = {key: self._log_run(run) for key, run in writes.new.items()}
            for update in writes.updates.values():
                self._log_batch(update.run_id, update.metrics, [], update.tags)
                if update.status is not None:
                    self.client.set_terminated(update.run_id, update.status, update.end_ms)
        return created

    def _log_run(self, run: RunContent) -> str:
        run_id = self.client.create_run(
            self.experiment_id, start_time=run.start_ms, run_name=run.name, tags=run.tags
        ).info.run_id
        self._log_batch(run_id, run.metrics, [Param(k, v) for k, v in run.params.items()], {})
        if run.end_ms is not None:
            self.client.set_terminated(run_id, run.status, end_time=run.end_ms)
        return run_id

    def _log_batch(
        self, run_id: str, metrics: list[Metric], params: list[Param], tags: dict[str, str]
    ) -> None:
        """`log_batch` in calls of at most MLflow's limit of metrics (params, tags: the first)."""
        for i in range(0, max(len(metrics), 1), BATCH_LIMIT):
            self.client.log_batch(
                run_id,
                metrics=metrics[i : i + BATCH_LIMIT],
                params=params if i == 0 else [],
                tags=[RunTag(k, v) for k, v in tags.items()] if i == 0 else [],
            )

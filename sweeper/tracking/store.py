"""A sweep's MLflow store as a whole: made (a new SQLite store whole or not at all), checked
before a sweep relies on it, its experiment deleted, and its kept models listed for the
read-only commands. The runs themselves are written by `sweeper.tracking.tracker`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from sweeper import secrets
from sweeper.errors import UserError
from sweeper.records import MODEL_ARTIFACT
from sweeper.run.locks import user_cache

CREATING = ".creating"  # suffix of an SQLite store while MLflow builds its schema
MODEL_TAG = "sweeper.model"  # on a trial run that holds a kept model: its artifact path
SWEEP_ID_TAG = "sweeper.sweep_id"  # on a sweep's experiment: its folder's id


def create_sqlite_store(tracking_uri: str) -> None:
    """Create a new SQLite store whole or not at all, as a copy of an empty one.

    MLflow builds a new database through its chain of schema migrations (2–4 s); a driver
    killed meanwhile would leave a file MLflow can never open again. So a store is copied from an
    empty one built once per machine and MLflow version, under a temporary name renamed into
    place when complete.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if path.exists():
        return
    partial = path.with_name(path.name + CREATING)
    try:
        shutil.copyfile(_empty_store(), partial)
    except (OSError, RuntimeError):  # no (writable) cache folder: build this one from scratch
        _build_store(partial)
    with contextlib.closing(sqlite3.connect(partial)) as connection:
        # WAL (see run_tables.fast_sqlite_commits) is a property of the file: set it while no one
        # else has it open; closing the connection leaves no -wal file beside it to rename
        connection.execute("PRAGMA journal_mode=WAL")
    os.replace(partial, path)


def _empty_store() -> Path:
    cache = user_cache()
    empty = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if not empty.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = empty.with_name(f"{empty.name}.{os.getpid()}{CREATING}")
        _build_store(partial)
        os.replace(partial, empty)  # two builders at once: either result is whole
    return empty


def _build_store(partial: Path) -> None:
    partial.unlink(missing_ok=True)  # what a kill during an earlier creation left
    MlflowClient(f"sqlite:///{partial}").search_experiments(max_results=1)


def check_store(tracking_uri: str) -> None:
    """Fail with one clear message when an existing MLflow store cannot be read."""
    try:
        url = secrets.expand(tracking_uri)
        if url.startswith("sqlite:///"):  # at once: MLflow retries a broken file ~100 s
            path = url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if url.startswith(("http://", "https://")):  # at once: MLflow retried a refused
            _reachable(url)  # connection for 251 s before it said so
        MlflowClient(url).search_experiments(max_results=1)
    except UserError:
        raise
    except Exception as error:
        raise UserError(
            f"{tracking_uri}: the MLflow store cannot be read ({type(error).__name__}: "
            f"{secrets.mask(str(error).splitlines()[0])})"
        ) from None


def _reachable(url: str, timeout_s: float = 10.0) -> None:
    """An HTTP tracking server answers within `timeout_s` (any HTTP status will do; a refused
    or silent connection raises URLError). Asked without the URL's credentials, if any."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    probe = urllib.parse.urlunsplit(
        (parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", "")
    )
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(probe, timeout=timeout_s).close()


def foreign_experiment(
    tracking_uri: str, experiment: str, folder_made: bool, sweep_id: str | None
) -> bool:
    """Whether the store holds an experiment of this name that another sweep folder made, by
    the rule of `search.study.foreign_studies`."""
    if folder_made and sweep_id is None:
        return False
    found = MlflowClient(secrets.expand(tracking_uri)).get_experiment_by_name(experiment)
    return found is not None and (not folder_made or found.tags.get(SWEEP_ID_TAG) != sweep_id)


def moved_from(tracking_uri: str, experiment: str, artifacts: Path) -> Path | None:
    """Where the store's experiment keeps its runs' files, when a local store keeps them
    elsewhere than `artifacts`: MLflow fixes that place when it makes the experiment, so a
    moved or renamed sweep folder's new runs would be written in the folder's old place."""
    url = secrets.expand(tracking_uri)
    if url.startswith(("http://", "https://")):
        return None  # a tracking server keeps artifacts where it is configured to
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    found = MlflowClient(url).get_experiment_by_name(experiment)
    if found is None or not found.artifact_location.startswith("file:"):
        return None
    there = Path(urllib.request.url2pathname(urllib.parse.urlparse(found.artifact_location).path))
    return None if there == artifacts.resolve() else there


def delete_experiment(tracking_uri: str, experiment: str) -> bool:
    """Delete a sweep's experiment, renamed first so that its name can be used again, and the
    versions of its registered model (left, they pointed at deleted artifacts for good)."""
    client = MlflowClient(secrets.expand(tracking_uri))
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return False
    runs = {
        run.info.run_id for run in client.search_runs([found.experiment_id], max_results=50_000)
    }
    for version in client.search_model_versions(f"name = '{experiment}'"):
        if version.run_id in runs:
            client.delete_model_version(experiment, version.version)
    if client.search_registered_models(f"name = '{experiment}'") and not (
        client.search_model_versions(f"name = '{experiment}'")
    ):
        client.delete_registered_model(experiment)
    client.rename_experiment(found.experiment_id, f"{experiment}.deleted-{int(time.time())}")
    client.delete_experiment(found.experiment_id)
    return True


def kept_models(tracking_uri: str, experiment: str) -> dict[tuple[str, int], str]:
    """(stage, trial) → the `runs:/…/model` URI of every kept model of a sweep; {} when its
    store does not exist yet (a read does not create one)."""
    url = secrets.expand(tracking_uri)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    client = MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs = client.search_runs(
        [found.experiment_id],
        f"tags.`sweeper.kind` = 'trial' and tags.`{MODEL_TAG}` = '{MODEL_ARTIFACT}'",
        max_results=50_000,
    )
    return {
        (run.data.tags["sweeper.stage"], int(run.data.tags["sweeper.trial"])): (
            f"runs:/{run.info.run_id}/{MODEL_ARTIFACT}"
        )
        for run in runs
    }

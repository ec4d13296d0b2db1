"""Shared storage, as on a cluster: studies in a real PostgreSQL server and runs on a real
`mlflow server` (itself on PostgreSQL), both started here on 127.0.0.1. A sweep whose driver is
killed mid-stage is resumed against them with exact counts."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.ui import free_port
from tests.e2e.helpers import (
    assert_exact,
    cli,
    finished,
    kill_driver,
    start_cli,
    trials,
    wait_for,
    write_spec,
)
from tests.sweeper.test_tracking import assert_bulk_reads_as_client

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
STAGES = (
    "  - {name: coarse, trials: 6, sampler: random}\n"
    "  - {name: fine, trials: 2, sampler: tpe, zoom: {top: 0.5, margin: 0.1}}"
)


def _run(*command: object) -> None:
    subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL server on 127.0.0.1 (trust auth), databases `optuna` and `mlflow`."""
    if not PG_BIN:
        pytest.skip("PostgreSQL is installed by .ci/run")
    binaries = Path(PG_BIN[-1])
    root = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port("127.0.0.1")
    _run(*as_owner, binaries / "initdb", "-D", root / "data", "--auth=trust", "-U", "sweeper")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    _run(
        *as_owner,
        binaries / "pg_ctl",
        "-D",
        root / "data",
        "-o",
        options,
        "-l",
        root / "log",
        "-w",
        "start",
    )
    for database in ("optuna", "mlflow"):
        _run(binaries / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "sweeper", database)
    url = f"postgresql://sweeper@127.0.0.1:{port}"
    # Optuna's tables, made once here: the test process polls the database while the sweep runs
    optuna.storages.RDBStorage(f"{url}/optuna")
    yield url
    _run(*as_owner, binaries / "pg_ctl", "-D", root / "data", "-m", "fast", "-w", "stop")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    port = free_port("127.0.0.1")
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "--backend-store-uri", f"{postgres}/mlflow"),
            *("--artifacts-destination", str(artifacts)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            return False

    wait_for(answers, 120, "the MLflow server")
    yield url
    server.terminate()
    server.wait(timeout=30)


def test_killed_sweep_resumes_on_postgresql_and_an_mlflow_server(postgres, mlflow_server, tmp_path):
    optuna_url = f"{postgres}/optuna"
    spec = write_spec(tmp_path, "shared", STAGES, source="builtin:digits", epochs=150)
    spec.write_text(
        spec.read_text() + f"storage: {{optuna: '{optuna_url}', mlflow: '{mlflow_server}'}}\n"
    )
    folder = tmp_path / "sweeps" / "shared"

    driver = start_cli("launch", "shared.yaml", "--quiet", cwd=tmp_path)
    wait_for(
        lambda: (
            finished(folder, "shared", "coarse", optuna_url) >= 1
            and any(
                t.state == TrialState.RUNNING
                for t in trials(folder, "shared", "coarse", optuna_url)
            )
        ),
        240,
        "a finished trial and a running one",
    )
    kill_driver(driver)
    time.sleep(1)

    resumed = cli("resume", "shared", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(
        folder,
        "shared",
        {"coarse": 6, "fine": 2},
        optuna_url=optuna_url,
        tracking_uri=mlflow_server,
    )
    assert not (folder / "optuna.journal").exists() and not (folder / "mlflow.db").exists()


def test_bulk_runs_on_postgresql_read_back_as_client_runs(postgres, tmp_path):
    """A PostgreSQL tracking URI (no server between) takes the bulk path too."""
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as connection:
        connection.execute("CREATE DATABASE tracking")
    assert_bulk_reads_as_client(lambda name: f"{postgres}/tracking", tmp_path)

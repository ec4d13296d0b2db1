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

from sweeper.cli.ui import free_port, stop_group
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
        start_new_session=True,
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
    stop_group(server)  # the server and the uvicorn and job workers it started


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


def test_a_tracking_servers_url_is_not_printed_at_a_runs_end(mlflow_server, capfd):
    """MLflow prints "View run … at: URL" when a run ends on a server: with the URL's
    credentials, into the StudyServer's world-readable Ray log."""
    from sweeper.tracking.tracker import Tracker

    tracker = Tracker(mlflow_server, "quiet-urls", None)
    tracker.finish_run(tracker.stage_run("coarse", {}, 0), {"best": 0.5})
    assert "View run" not in capfd.readouterr().out


def test_ui_of_a_sweep_on_a_tracking_server_gives_the_servers_page(mlflow_server, tmp_path):
    """It started an `mlflow server` over the server's URL, which failed after 30 s."""
    from sweeper.run.ownership import Identity, claim

    folder = tmp_path / "sweeps" / "served"
    claim(folder, Identity("served", "0"))
    spec = write_spec(tmp_path, "served", STAGES).read_text()
    (folder / "spec.yaml").write_text(spec + f"storage: {{mlflow: '{mlflow_server}'}}\n")
    shown = cli("ui", str(folder), cwd=tmp_path, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"the sweep's runs are on its tracking server: {mlflow_server}/#/experiments" in (
        shown.stdout
    )


def test_bulk_runs_on_postgresql_read_back_as_client_runs(postgres, tmp_path):
    """A PostgreSQL tracking URI (no server between) takes the bulk path too."""
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as connection:
        connection.execute("CREATE DATABASE tracking")
    assert_bulk_reads_as_client(lambda name: f"{postgres}/tracking", tmp_path)


def test_a_database_password_is_in_no_output_file_or_command_line(postgres, tmp_path):
    """The password reaches the sweeper as `${VAR}` in space.yaml; it must show up nowhere:
    not in what any command prints, not in a file the sweep wrote (its folder, Ray's session
    logs), not on a command line while `sweeper ui` serves the runs."""
    import psycopg

    with psycopg.connect(f"{postgres}/postgres", autocommit=True) as connection:
        connection.execute("CREATE DATABASE secret_runs")
    ray_sessions = Path(tempfile.gettempdir(), "ray")
    sessions_before = set(ray_sessions.glob("session_2*"))
    secret = "Zebra-s3cr3t-4711"
    env = {"SWEEPER_TEST_DB_PASSWORD": secret}
    with_password = postgres.replace("sweeper@", "sweeper:${SWEEPER_TEST_DB_PASSWORD}@")
    spec = write_spec(tmp_path, "hush", "  - {name: only, trials: 2}", epochs=2)
    spec.write_text(
        spec.read_text()
        + f"storage: {{optuna: '{with_password}/optuna', mlflow: '{with_password}/secret_runs'}}\n"
    )
    folder = tmp_path / "sweeps" / "hush"
    outputs = []
    for command in (("launch", "hush.yaml", "--quiet"), ("status", "hush"), ("best", "hush")):
        done = cli(*command, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout + done.stderr)
    stored = (folder / "spec.yaml").read_text()
    assert "${SWEEPER_TEST_DB_PASSWORD}" in stored  # the placeholder, resumable with the variable

    # a password written out in the URL, and a server that refuses: neither is echoed
    spec.write_text(spec.read_text().replace("${SWEEPER_TEST_DB_PASSWORD}", secret, 1))
    refused = cli("launch", "hush.yaml", "--quiet", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "sweeper:***@" in refused.stderr, refused.stderr
    outputs.append(refused.stderr)
    spec.write_text(spec.read_text().replace(secret, "${SWEEPER_TEST_DB_PASSWORD}"))
    unreachable = cli("status", "hush", cwd=tmp_path, env={**env, "PGPORT": "1"})
    outputs.append(unreachable.stdout + unreachable.stderr)

    ui = start_cli("ui", "hush", cwd=tmp_path, env=env)
    try:
        line = ui.stdout.readline()
        assert "serving http://127.0.0.1:" in line, ui.stderr.read() if ui.poll() else line
        command_lines = subprocess.run(
            ["ps", "-eo", "args"], capture_output=True, text=True, check=True
        ).stdout
        assert "mlflow" in command_lines and secret not in command_lines
    finally:
        ui.terminate()
        outputs.append(ui.communicate(timeout=30)[1])

    assert not [text for text in outputs if secret in text]
    sessions = set(ray_sessions.glob("session_2*")) - sessions_before  # the sweep's own Rays
    assert sessions, "the launch started a Ray of its own, whose logs are checked too"
    written = [*tmp_path.rglob("*"), *(p for s in sessions for p in s.rglob("*"))]
    assert not [p for p in written if p.is_file() and secret.encode() in p.read_bytes()]

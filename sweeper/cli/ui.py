"""`sweeper ui`: the MLflow UI over a sweep's runs, or optuna-dashboard over its studies.

Both listen on 127.0.0.1 unless told otherwise, on a free port by default, and stop on Ctrl-C.
The MLflow UI runs as `mlflow server` in a child process that is stopped with this one; the
address announced opens the sweep's training runs (MLflow 3.17's UI opens an experiment by a
workflow type kept in the browser, GenAI by default, whatever the experiment's kind tag says:
`?workflowType=machine_learning` in the address picks its runs).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sweeper.errors import UserError
from sweeper.run.folder import SweepFolder, is_running
from sweeper.search.study import make_storage
from sweeper.secrets import expand, mask

STARTUP_TIMEOUT_S = 120
TRAINING_RUNS = "workflowType=machine_learning"  # the MLflow UI's "Model training" view


def exposure_warning(host: str) -> str | None:
    """What listening on `host` risks, unless it is a loopback address."""
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        raise UserError(f"--host {host!r} is not an address or a known host name") from None
    if loopback:
        return None
    return (
        f"listening on {host}: anyone who can reach this machine on that network can read every "
        "run, parameter and artifact of the sweep, with no login (the UI has no authentication); "
        "prefer the default 127.0.0.1 with an SSH tunnel"
    )


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve(
    folder: SweepFolder, host: str, port: int, dashboard: bool, announce: Callable[[str], None]
) -> None:
    """Serve until Ctrl-C; `announce` receives the line to show once it answers. A sweep that
    writes to a tracking server is already served: its page there is announced instead (an
    `mlflow server` over a server's URL failed after 30 s with MLflow's traceback)."""
    spec = folder.load_spec()
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    if dashboard:
        import optuna_dashboard

        announce(f"serving {url}")
        optuna_dashboard.run_server(make_storage(spec.storage.optuna, folder.path), host, port)
        return
    store = expand(folder.tracking_uri(spec))
    if store.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(store)
        netloc = parts.netloc.rpartition("@")[2]  # its page, without the URL's credentials
        server_url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        page = runs_page(server_url, spec.name)
        announce(f"the sweep's runs are on its tracking server: {page}")
        return
    if store.startswith("sqlite:///"):
        _wait_for_the_sweeps_store(Path(store.removeprefix("sqlite:///")), folder)
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would block the server
    # the store's URL (with its credentials) goes by environment: a command line is public (`ps`)
    environment = {**os.environ, "MLFLOW_BACKEND_STORE_URI": store}
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "server", "--workers", "1"),
            *("--host", host, "--port", str(port)),
        ],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: uvicorn and MLflow's job workers go with it
    )
    # SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed, SSH dropped) end this
    # process through `finally`, like Ctrl-C: the server's own session never gets the hangup
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        _wait_until_up(server, f"{url}/health", log)
        announce(f"serving {runs_page(url, spec.name)}")
        server.wait()
    finally:
        stop_group(server)


def _wait_for_the_sweeps_store(path: Path, folder: SweepFolder, wait_s: float = 60.0) -> None:
    """Serve a SQLite store only once the sweep has made it (whole, in one rename). Started
    first, `mlflow server` made and migrated one in place, the starting sweep migrated it a
    second time, and the store stayed unreadable to both for good."""
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if not is_running(folder):
            raise UserError(
                f"{folder.path}: no MLflow store yet, the sweep has written no run: launch or "
                "resume it first"
            )
        if time.monotonic() > deadline:
            raise UserError(
                f"{path}: the running sweep has not made its MLflow store in {wait_s:g} s"
            )
        time.sleep(0.2)


def runs_page(url: str, experiment: str) -> str:
    """The MLflow UI's page of the sweep's training runs (of its experiments, before the
    sweep has written any)."""
    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        with urllib.request.urlopen(
            f"{url}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=30
        ) as answer:
            experiment_id = json.load(answer)["experiment"]["experiment_id"]
    except (OSError, ValueError, KeyError):  # 404: no such experiment yet
        return f"{url}/#/experiments?{TRAINING_RUNS}"
    return f"{url}/#/experiments/{experiment_id}/runs?{TRAINING_RUNS}"


def stop_group(server: subprocess.Popen) -> None:
    """Stop a server started in its own session and every process it started (MLflow 3's
    `mlflow server` leaves uvicorn and its job consumers running when only it is stopped)."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until_up(server: subprocess.Popen, health: str, log: IO[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise UserError(f"the MLflow UI did not start: {mask(log.read()[-2000:])}")
        try:
            with urllib.request.urlopen(health, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise UserError(f"the MLflow UI did not answer at {health} within {STARTUP_TIMEOUT_S} s")

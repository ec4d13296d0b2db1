"""Looking at a finished sweep: export, figures in MLflow, the HTML report in a real browser,
and the MLflow UI over REST. One real two-stage sweep serves every test here."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import urllib.request
from pathlib import Path

import psutil
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.cli.commands import app
from sweeper.run import sweep
from tests.e2e.helpers import ROOT, kill_group, mlflow_runs, start_cli, trials, wait_for, write_spec

NAME = "looked-at"
STAGES = (
    "  - {name: coarse, trials: 8, sampler: random, pruner: {type: asha, min_epochs: 2}}\n"
    "  - {name: fine, trials: 4, sampler: tpe, zoom: {top: 0.5, margin: 0.1}}"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def folder(ray_local, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    previous = Path.cwd()
    os.chdir(root)
    try:
        sweep.run(sweep.prepare(write_spec(root, NAME, STAGES, epochs=6)))
    finally:
        os.chdir(previous)
    return root / "sweeps" / NAME


def _own_trials(folder: Path) -> dict[tuple[str, int], str]:
    return {
        (stage, t.number): t.state.name
        for stage in ("coarse", "fine")
        for t in trials(folder, NAME, stage)
    }


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trips_exactly_the_sweeps_trials(folder, tmp_path, suffix):
    path = tmp_path / f"trials{suffix}"
    result = CliRunner().invoke(app, ["export", str(folder), str(path)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(path) if suffix == ".parquet" else pcsv.read_csv(path)
    rows = table.to_pylist()
    assert {(r["stage"], r["number"]): r["state"] for r in rows} == _own_trials(folder)
    assert len(rows) == len(_own_trials(folder))
    for column in ("param.learning_rate", "param.beta", "metric.dev_accuracy", "duration_s"):
        assert column in table.column_names
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert all(r["value"] == pytest.approx(r["metric.dev_accuracy"]) for r in complete)
    assert all(0 < r["param.beta"] < 1 for r in rows)


def test_export_and_report_write_over_no_file_unless_forced_and_name_a_bad_path(folder, tmp_path):
    """`export` and `report --output` replaced whatever file they were given (the user's
    space.yaml as a report), and a folder or a missing one ended in an OSError, exit 1."""
    mine = tmp_path / "mine.csv"
    mine.write_text("precious data\n")
    spec = tmp_path / "space.html"
    spec.write_text("<p>my notes</p>")
    (tmp_path / "adir.csv").mkdir()
    refused = {
        ("export", str(mine)): f"{mine}: exists; --force writes over it",
        ("report", "--output", str(spec)): f"{spec}: exists; --force writes over it",
        ("report", "--output", str(tmp_path / "space.yaml")): "writes .html files",
        ("export", str(tmp_path / "adir.csv")): "is a folder",
        ("export", str(tmp_path / "nodir" / "x.csv")): f"no folder {tmp_path / 'nodir'}",
    }
    for (command, *args), says in refused.items():
        result = CliRunner().invoke(app, [command, str(folder), *args])
        assert result.exit_code == 2 and says in result.output, (args, result.output)
    assert mine.read_text() == "precious data\n" and spec.read_text() == "<p>my notes</p>"
    assert not (tmp_path / "nodir").exists()

    forced = CliRunner().invoke(app, ["export", str(folder), str(mine), "--force"])
    assert forced.exit_code == 0, forced.output
    assert pcsv.read_csv(mine).num_rows == len(_own_trials(folder))


def test_figures_are_logged_on_the_stage_runs_and_the_sweep_run(folder):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    _, runs = mlflow_runs(folder, NAME)

    def artifacts(run):
        return {a.path for a in client.list_artifacts(run.info.run_id)}

    for run in runs:
        kind, stage = run.data.tags["sweeper.kind"], run.data.tags.get("sweeper.stage")
        if kind == "stage":
            assert artifacts(run) == {
                f"{stage}_{figure}.png"
                for figure in ("parallel_coordinates", "importances", "learning_curves")
            }
        elif kind == "sweep":
            assert artifacts(run) == {
                "optimization_history.png",
                "lr_vs_one_minus_beta.png",
                "report.html",
            }
            page = Path(client.download_artifacts(run.info.run_id, "report.html")).read_text()
            assert page.count("<img") == 2 + 2 * 3  # the sweep's figures and every stage's
    assert sum(r.data.tags["sweeper.kind"] == "sweep" for r in runs) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is installed by .ci/run")
def test_report_renders_in_headless_chromium_without_console_errors(folder, tmp_path):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(folder), "--output", str(path)])
    assert result.exit_code == 0, result.output
    assert "http" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", path.read_text())

    screenshot = ROOT / "test-output" / "report.png"
    screenshot.parent.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(path.as_uri())
        images = page.locator("img").count()
        decoded = page.evaluate(
            "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
        )
        best = page.locator("h2").first.inner_text()
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    assert problems == []
    assert images == 2 + 2 * 3 and decoded
    assert best.startswith("Best configuration")
    assert screenshot.stat().st_size > 10_000


def test_ui_serves_the_runs_over_rest_on_loopback_only(folder):
    ui = start_cli("ui", str(folder), cwd=folder.parent)
    try:
        line = ui.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert url, line + ui.stderr.read()
        base, port = url.group(0), int(url.group(1))

        def api(path: str, body: dict | None = None) -> dict:
            request = urllib.request.Request(
                f"{base}/api/2.0/mlflow/{path}",
                data=json.dumps(body).encode() if body is not None else None,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)

        experiment = api(f"experiments/get-by-name?experiment_name={NAME}")["experiment"]
        found = api(
            "runs/search", {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000}
        )["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in found]
        logged = {
            (t["sweeper.stage"], int(t["sweeper.trial"])) for t in tags if "sweeper.trial" in t
        }
        assert logged == set(_own_trials(folder))

        listening = [
            c.laddr.ip
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        assert listening and set(listening) == {"127.0.0.1"}
        started = psutil.Process(ui.pid).children(recursive=True)  # mlflow, uvicorn, job workers
    finally:
        ui.terminate()  # SIGTERM to `sweeper ui` alone, as a service manager stops it
        ui.communicate(timeout=30)
    assert not [
        c
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.cmdline() for p in alive]  # no MLflow, uvicorn or job worker left over


def test_ui_stops_its_server_when_the_terminal_hangs_up(folder):
    """SIGHUP (a closed terminal, a dropped SSH session) ended `sweeper ui` alone: the MLflow
    server, uvicorn and its job workers, in a session of their own, kept the port."""
    ui = start_cli("ui", str(folder), cwd=folder.parent)
    try:
        line = ui.stdout.readline()
        assert "http://127.0.0.1:" in line, line + ui.stderr.read()
        started = psutil.Process(ui.pid).children(recursive=True)
        assert started
    finally:
        ui.send_signal(signal.SIGHUP)
        ui.communicate(timeout=30)
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.cmdline() for p in alive]


def test_ui_makes_no_store_of_its_own_in_a_sweep_that_has_none(folder, tmp_path):
    """Started before the sweep's MLflow store existed, `mlflow server` made and migrated one
    in place; the sweep starting then migrated it again and left it unreadable for good. With
    no sweep running to make it, `ui` now says so and makes nothing."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in (".sweeper-sweep.json", "spec.yaml"):
        shutil.copy(folder / name, bare / name)
    result = CliRunner().invoke(app, ["ui", str(bare)])
    assert result.exit_code == 2 and "no MLflow store yet" in result.output, result.output
    assert sorted(p.name for p in bare.iterdir()) == [".sweeper-sweep.json", "spec.yaml"]


def test_dashboard_serves_the_studies_on_loopback(folder):
    ui = start_cli("ui", str(folder), "--dashboard", cwd=folder.parent)
    try:
        line = ui.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line + ui.stderr.read()

        def studies():
            try:
                with urllib.request.urlopen(f"{url.group(0)}/api/studies", timeout=5) as response:
                    return json.load(response)["study_summaries"]
            except OSError:
                return None

        found = wait_for(studies, 60, "optuna-dashboard")
        assert {s["study_name"] for s in found} == {f"{NAME}:coarse", f"{NAME}:fine"}
    finally:
        kill_group(ui, signal.SIGINT)
        ui.communicate(timeout=30)


def _contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_read_only_commands_create_nothing_and_list_survives_a_broken_sweep(folder, tmp_path):
    from sweeper.run.ownership import Identity, claim

    before = _contents(folder)
    for args in (["status", str(folder)], ["best", str(folder), "--json"], ["list"]):
        assert CliRunner().invoke(app, args).exit_code == 0
    assert _contents(folder) == before

    shutil.copytree(folder, tmp_path / "sweeps" / NAME)
    broken = tmp_path / "sweeps" / "broken"
    claim(broken, Identity("broken", "0"))
    (broken / "spec.yaml").write_text("name: [unclosed\n")
    os.chdir(tmp_path)
    try:
        listed = CliRunner().invoke(app, ["list", "--json"])
    finally:
        os.chdir(ROOT)
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.output)}
    assert rows[NAME]["finished"] == rows[NAME]["target"] and "YAML" in rows["broken"]["error"]


def test_ui_warns_off_loopback_and_checks_its_port(folder):
    from sweeper.cli.ui import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    assert "no authentication" in exposure_warning("0.0.0.0")
    refused = CliRunner().invoke(app, ["ui", str(folder), "--port", "70000"])
    assert refused.exit_code == 2 and "65535" in refused.output


READ_ONLY = """
import sys
from sweeper import api
folder = sys.argv[1]
api.status(folder).to_json()
api.best(folder).to_json()
api.list_sweeps(sys.argv[2])
api.export(folder, sys.argv[3])
print(sorted({m.split(".")[0] for m in sys.modules} & {"ray", "matplotlib"}))
"""


def test_reading_a_sweep_imports_neither_ray_nor_matplotlib(folder, tmp_path):
    """status, best, list and export in a fresh interpreter: Ray and matplotlib cost seconds."""
    import subprocess
    import sys

    found = subprocess.run(
        [
            sys.executable,
            "-c",
            READ_ONLY,
            str(folder),
            str(folder.parent.parent),
            tmp_path / "t.csv",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "[]", found.stderr
    assert (tmp_path / "t.csv").stat().st_size > 0

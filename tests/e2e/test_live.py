"""A sweep watched while it runs: its trials' MLflow runs are RUNNING and their epochs appear as
they train, through MlflowClient and in the MLflow UI (`sweeper ui`) in headless Chromium; then
Ctrl-C leaves no run RUNNING and no epoch twice.

One CLI sweep (a real process, real Ray, Optuna and MLflow stores) serves the module: a stage
of more trials than the module waits for, two at a time, each long enough to be watched, so a
trial is always running; the last test stops it with Ctrl-C (the fixture kills what is left)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.helpers import kill_driver, kill_group, mlflow_runs, start_cli, wait_for, write_spec

NAME = "watched"
STAGES = "  - {name: coarse, trials: 200, sampler: random}"
EPOCHS = 3000  # ~10 s a trial on 2 shared cores
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Running:
    driver: subprocess.Popen
    folder: Path  # the sweep's
    client: MlflowClient

    def running_runs(self) -> list:
        experiment = self.client.get_experiment_by_name(NAME)
        if experiment is None:
            return []
        return self.client.search_runs(
            [experiment.experiment_id],
            "tags.`sweeper.kind` = 'trial' and attributes.status = 'RUNNING'",
        )

    def history(self, run_id: str) -> list:
        return self.client.get_metric_history(run_id, "dev_accuracy")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Iterator[Running]:
    cwd = tmp_path_factory.mktemp("live")
    write_spec(cwd, NAME, STAGES, source="builtin:digits", epochs=EPOCHS)
    driver = start_cli("launch", f"{NAME}.yaml", "--quiet", cwd=cwd)
    folder = cwd / "sweeps" / NAME
    try:
        wait_for(lambda: (folder / "mlflow.db").exists(), 180, "the sweep's MLflow store")
        yield Running(driver, folder, MlflowClient(f"sqlite:///{folder / 'mlflow.db'}"))
    finally:
        if driver.poll() is None:  # a test failed before stopping it
            kill_driver(driver)
        driver.communicate(timeout=60)


def test_a_running_trials_run_grows_its_dev_accuracy_history(sweep):
    first_seen: dict[str, int] = {}  # run id → epochs in its history when first seen

    def grown_while_running():
        for run in sweep.running_runs():
            epochs = len(sweep.history(run.info.run_id))
            if epochs > first_seen.setdefault(run.info.run_id, epochs) + 2:
                return run
        return None

    run = wait_for(grown_while_running, 240, "a RUNNING run's history to grow", lambda: first_seen)
    history = sweep.history(run.info.run_id)
    lag_s = time.time() - max(m.timestamp for m in history) / 1000
    print(f"{run.info.run_name}: {len(history)} epochs; the newest reported {lag_s:.2f} s ago")
    assert sorted(m.step for m in history) == list(range(1, len(history) + 1))  # each once
    assert all(0 <= m.value <= 1 for m in history)
    assert run.info.end_time is None and run.data.tags["sweeper.state"] == "RUNNING"
    assert {"learning_rate", "hidden_units", "epochs"} <= set(run.data.params)
    stage_run = sweep.client.get_run(run.data.tags["mlflow.parentRunId"])
    assert stage_run.data.tags["sweeper.kind"] == "stage"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is installed by .ci/run")
def test_the_mlflow_ui_opens_on_the_training_runs_and_shows_the_running_trials(sweep, tmp_path):
    from playwright.sync_api import sync_playwright

    wait_for(sweep.running_runs, 180, "a RUNNING trial run")
    ui = start_cli("ui", str(sweep.folder), cwd=sweep.folder.parent)
    started: list[psutil.Process] = []
    screenshot = tmp_path / "mlflow-ui-running-trials.png"
    try:
        line = ui.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/\S*", line)
        assert url, line + (ui.stderr.read() if ui.poll() is not None else "")
        started = psutil.Process(ui.pid).children(recursive=True)  # mlflow, uvicorn, job runner
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url.group(0))  # the address `sweeper ui` announces
            stage = page.get_by_role("link", name="coarse", exact=True)
            stage.wait_for(timeout=180_000)
            landed = page.url
            search = page.get_by_placeholder(re.compile(r"metrics\."))  # the runs' search box
            search.fill("attributes.status = 'RUNNING'")
            search.press("Enter")
            page.wait_for_url(re.compile("searchFilter=attributes.status"), timeout=60_000)
            expand = page.locator("[role=row]").filter(has=stage).locator("button").first
            expand.click()  # the stage run's child runs: its trials
            trial_links = page.get_by_role("link", name=re.compile(r"^coarse-\d+$"))
            trial_links.first.wait_for(timeout=60_000)
            shown = trial_links.all_inner_texts()
            page.screenshot(path=str(screenshot), full_page=True)
            browser.close()
    finally:
        kill_group(ui, signal.SIGINT)  # Ctrl-C, as a user stops it
        ui.communicate(timeout=60)
    print(f"screenshot of the MLflow UI during the sweep: {screenshot}")
    assert "/runs?" in landed and "workflowType=machine_learning" in landed, landed
    assert "overview" not in landed and "traces" not in landed
    experiment = sweep.client.get_experiment_by_name(NAME).experiment_id
    named = {
        r.info.run_name: r
        for r in sweep.client.search_runs([experiment], "tags.`sweeper.kind` = 'trial'")
    }
    assert shown and set(shown) <= set(named)  # the trials running when the UI searched
    assert screenshot.stat().st_size > 10_000
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.cmdline() for p in alive]  # no MLflow, uvicorn or job worker left over


def test_ctrl_c_ends_every_live_run_and_keeps_its_epochs_once(sweep):
    running = wait_for(sweep.running_runs, 180, "a RUNNING trial run")
    kill_group(sweep.driver, signal.SIGINT)
    out, err = sweep.driver.communicate(timeout=180)
    assert sweep.driver.returncode == 130, out + err
    assert "MLflow writes failed" not in err, err
    runs, all_runs = mlflow_runs(sweep.folder, NAME)
    still_running = [r.info.run_name for r in all_runs if r.info.status == "RUNNING"]
    assert not still_running, out + err
    assert len(runs) == len({r.data.tags["sweeper.trial"] for r in runs})  # one run a trial
    interrupted = [r for r in runs if r.data.tags.get("sweeper.reason") == "interrupted"]
    assert interrupted and all(r.info.status == "FAILED" for r in interrupted)
    for run in {r.info.run_id: r for r in running + interrupted}.values():
        steps = sorted(m.step for m in sweep.history(run.info.run_id))
        assert steps == list(range(1, len(steps) + 1))  # live epochs kept, none twice

"""Faults with real processes: a killed driver, Ctrl-C, a killed Ray worker, a manual prune.

Each ends with the same check (`assert_exact`): every stage has exactly its target of finished
trials, nothing is left RUNNING in Optuna or MLflow, and every trial has exactly one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import threading
import time

import optuna
import psutil
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeper.run import sweep
from sweeper.search.study import make_storage, study_name
from tests.e2e.helpers import (
    SWEEPER,
    assert_exact,
    cli,
    cli_env,
    finished,
    kill_driver,
    kill_group,
    mlflow_runs,
    start_cli,
    trials,
    wait_for,
    write_spec,
)

STAGES = (
    "  - {name: coarse, trials: 6, sampler: random}\n"
    "  - {name: fine, trials: 2, sampler: tpe, zoom: {top: 0.5, margin: 0.1}}"
)
TARGETS = {"coarse": 6, "fine": 2}


def _running(folder, name, stage="coarse"):
    return [t for t in trials(folder, name, stage) if t.state == TrialState.RUNNING]


def _launch_until_some_finished(tmp_path, name, epochs=150):
    """Start `sweeper launch` and wait until trials have finished and others are running."""
    write_spec(tmp_path, name, STAGES, source="builtin:digits", epochs=epochs)
    driver = start_cli("launch", f"{name}.yaml", "--quiet", cwd=tmp_path)
    folder = tmp_path / "sweeps" / name
    wait_for(
        lambda: finished(folder, name, "coarse") >= 1 and _running(folder, name),
        180,
        "a finished trial and a running one",
    )
    return driver, folder


def test_killed_driver_resumes_with_exact_counts(tmp_path):
    driver, folder = _launch_until_some_finished(tmp_path, "crash")
    kill_driver(driver)
    caught = {t.number: t.params for t in _running(folder, "crash")}
    assert caught, "the kill should catch trials mid-flight"
    shown = cli("status", "crash", cwd=tmp_path, timeout=60)  # its RUNNING trials: no driver
    assert "stopped: `sweeper resume crash` runs the rest" in shown.stdout, shown.stdout
    # a journal line cut short by the kill, as a write interrupted halfway leaves it
    with open(folder / "optuna.journal", "ab") as journal:
        journal.write(b'{"op_code": 5, "worker_id": "dead-')

    resumed = cli("resume", "crash", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    assert_exact(folder, "crash", TARGETS)
    coarse = trials(folder, "crash", "coarse")
    lost = {t.number for t in coarse if t.user_attrs.get("reason") == "lost"}
    assert lost == set(caught)
    retries = {t.user_attrs["retry_of"]: t.params for t in coarse if "retry_of" in t.user_attrs}
    assert retries == caught  # each lost configuration ran again, once


def test_ctrl_c_records_running_trials_and_prints_the_resume_command(tmp_path):
    driver, folder = _launch_until_some_finished(tmp_path, "ctrlc")
    kill_group(driver, signal.SIGINT)  # what a terminal sends on Ctrl-C
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "sweeper resume ctrlc" in err and "Traceback" not in err

    coarse = trials(folder, "ctrlc", "coarse")
    assert not [t for t in coarse if t.state == TrialState.RUNNING]
    interrupted = {t.number for t in coarse if t.user_attrs.get("reason") == "interrupted"}
    assert interrupted
    runs, all_runs = mlflow_runs(folder, "ctrlc")
    assert not [r for r in all_runs if r.info.status == "RUNNING"]
    assert {r.info.status for r in all_runs if r.data.tags["sweeper.kind"] == "stage"} == {"KILLED"}
    assert {
        int(r.data.tags["sweeper.trial"]) for r in runs if r.info.status == "FAILED"
    } == interrupted
    # status tells them from failures: they were "failed", as if their configurations were bad
    shown = json.loads(cli("status", "ctrlc", "--json", cwd=tmp_path).stdout)["stages"][0]
    assert shown["failed"] == shown["run_again"] == len(interrupted)
    table = cli("status", "ctrlc", cwd=tmp_path).stdout
    assert f"{len(interrupted)} ({len(interrupted)} run again)" in table

    resumed = cli("resume", "ctrlc", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(folder, "ctrlc", TARGETS)


def test_ctrl_c_on_a_terminal_prints_the_resume_command_below_the_last_table(tmp_path):
    """On a terminal the live table's last redraw (cursor up, erase line) came after Ctrl-C's
    message and wiped it: the screen showed the table and no resume command."""
    write_spec(tmp_path, "tty", STAGES, source="builtin:digits", epochs=150)
    terminal, side = pty.openpty()
    driver = subprocess.Popen(
        [SWEEPER, "launch", "tty.yaml"],
        cwd=tmp_path,
        env={**cli_env(), "TERM": "xterm", "COLUMNS": "80", "LINES": "30"},
        stdin=side,
        stdout=side,
        stderr=side,
        start_new_session=True,
    )
    os.close(side)
    shown = bytearray()

    def read() -> None:
        with contextlib.suppress(OSError):  # EIO: every process on the terminal has left
            while chunk := os.read(terminal, 65536):
                shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    folder = tmp_path / "sweeps" / "tty"
    try:
        wait_for(
            lambda: finished(folder, "tty", "coarse") >= 1 and _running(folder, "tty"),
            180,
            "a finished trial and a running one",
        )
        kill_group(driver, signal.SIGINT)
        assert driver.wait(timeout=60) == 130
        reader.join(timeout=10)
    finally:
        os.close(terminal)
    after_last_redraw = bytes(shown).rsplit(b"\x1b[1A", 1)[-1].decode()
    assert "resume with: sweeper resume tty" in after_last_redraw, bytes(shown)[-2000:]


def test_ctrl_c_while_ray_starts_says_to_launch_again_not_to_resume(tmp_path):
    write_spec(tmp_path, "early", "  - {name: coarse, trials: 2, sampler: random}")
    driver = start_cli("launch", "early.yaml", "--quiet", cwd=tmp_path)
    folder = tmp_path / "sweeps" / "early"

    def starting_ray() -> bool:  # its GCS runs; the sweep folder comes once Ray is up
        children = psutil.Process(driver.pid).children(recursive=True)
        return any("gcs_server" in p.name() for p in children) and not folder.exists()

    wait_for(starting_ray, 60, "Ray's GCS started before the sweep folder")
    kill_group(driver, signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "nothing to resume" in err and "sweeper launch early.yaml" in err, err
    assert "sweeper resume" not in err and "Traceback" not in err
    assert not folder.exists()


def test_a_second_launch_while_the_first_starts_ray_is_refused_before_its_own_ray(tmp_path):
    """The sweep's lock is taken once Ray is up: a second launch of a new sweep meanwhile
    started a Ray of its own (15-28 s) and only then was refused."""
    write_spec(tmp_path, "twice", "  - {name: coarse, trials: 2, sampler: random}")
    first = start_cli("launch", "twice.yaml", "--quiet", cwd=tmp_path)
    try:

        def starting_ray() -> bool:
            children = psutil.Process(first.pid).children(recursive=True)
            return any("gcs_server" in p.name() for p in children)

        wait_for(starting_ray, 60, "the first launch's Ray starting")
        second = cli("launch", "twice.yaml", "--quiet", cwd=tmp_path, timeout=120)
        assert second.returncode == 2 and "is already running" in second.stderr, second.stderr
        assert "Token authentication" not in second.stderr  # Ray's notice: it started none
    finally:
        kill_group(first, signal.SIGINT)
        first.communicate(timeout=120)


def test_second_ctrl_c_exits_at_once_and_the_sweep_still_resumes(tmp_path):
    driver, folder = _launch_until_some_finished(tmp_path, "twice")
    kill_group(driver, signal.SIGINT)
    time.sleep(0.05)
    kill_group(driver, signal.SIGINT)
    started = time.monotonic()
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert time.monotonic() - started < 30

    resumed = cli("resume", "twice", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(folder, "twice", TARGETS)


def _kill_one_training_worker(killed: list[int], after_s: float = 0.5) -> None:
    """SIGKILL the first Ray worker seen training a trial, once it has trained a moment: one of
    this test's own Ray (its descendants), never another Ray running on the machine."""
    while not killed:
        for process in psutil.Process().children(recursive=True):
            try:
                title = " ".join(process.cmdline())
            except psutil.NoSuchProcess:
                continue
            if title.startswith("ray::train_trials"):
                time.sleep(after_s)
                process.kill()
                killed.append(process.pid)
                return
        time.sleep(0.1)


def _sweep_killing_one_worker(tmp_path, name, stages, resources="{concurrency: 2}"):
    """Run a sweep in this process while a thread kills one training worker; its folder."""
    path = write_spec(
        tmp_path, name, stages, source="builtin:digits", epochs=150, resources=resources
    )
    killed: list[int] = []
    threading.Thread(target=_kill_one_training_worker, args=(killed,), daemon=True).start()
    sweep.run(sweep.prepare(path))
    assert killed
    return tmp_path / "sweeps" / name


def test_killed_worker_trial_is_retried_and_counts_stay_exact(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = _sweep_killing_one_worker(tmp_path, "worker", "  - {name: only, trials: 4}")
    assert_exact(folder, "worker", {"only": 4})
    own = trials(folder, "worker", "only")
    lost = [t for t in own if t.user_attrs.get("reason") == "lost"]
    assert len(lost) == 1
    retry = [t for t in own if t.user_attrs.get("retry_of") == lost[0].number]
    assert [t.params for t in retry] == [lost[0].params]


def test_prune_from_a_second_terminal_then_delete(tmp_path):
    # a trial that runs until it is stopped, however fast the machine: each stops only when
    # pruned by hand (3000 epochs once ended on digits before the test's third command)
    epochs = 1_000_000
    write_spec(
        tmp_path, "manual", "  - {name: only, trials: 2}", source="builtin:digits", epochs=epochs
    )
    driver = start_cli("launch", "manual.yaml", "--quiet", cwd=tmp_path)
    folder = tmp_path / "sweeps" / "manual"

    def two_running():
        running = _running(folder, "manual", "only")
        return (
            len(running) == 2 and all(len(t.intermediate_values) >= 3 for t in running) and running
        )

    def seen():
        return [
            (t.number, t.state.name, len(t.intermediate_values))
            for t in trials(folder, "manual", "only")
        ]

    first, second = wait_for(two_running, 180, "two trials several epochs in", seen)
    again = cli("launch", "manual.yaml", "--quiet", cwd=tmp_path, timeout=60)
    assert again.returncode == 2 and "already running" in again.stderr, again.stderr

    def prune(number: int):
        return cli("prune", "manual", "--trial", str(number), cwd=tmp_path, timeout=60)

    assert prune(first.number).returncode == 0
    refused = cli("delete", "manual", "--yes", cwd=tmp_path, timeout=60)
    assert refused.returncode == 2 and "is running" in refused.stderr
    unknown = prune(99)
    assert unknown.returncode == 2 and "not running (no such trial)" in unknown.stderr
    assert prune(second.number).returncode == 0
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err

    assert_exact(folder, "manual", {"only": 2})
    stopped = next(t for t in trials(folder, "manual", "only") if t.number == first.number)
    assert stopped.state == TrialState.PRUNED and stopped.user_attrs["reason"] == "manual"
    ran = len(stopped.intermediate_values)
    assert ran < epochs
    runs, _ = mlflow_runs(folder, "manual")
    run = next(r for r in runs if int(r.data.tags["sweeper.trial"]) == stopped.number)
    assert run.info.status == "KILLED" and run.data.tags["sweeper.reason"] == "manual"
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    curve = client.get_metric_history(run.info.run_id, "dev_accuracy")
    assert max(m.step for m in curve) == ran  # its metrics up to the last epoch it ran

    assert cli("delete", "manual", "--yes", cwd=tmp_path, timeout=60).returncode == 0
    assert not folder.exists()
    assert cli("status", "manual", cwd=tmp_path, timeout=60).returncode == 2


# Packs of 3 (see sweeper/run/packing.py): the members of a pack share hidden_units and
# batch_size, and each is its own trial
PACKED = "{concurrency: 2, pack: 3}"


def _structure(trial) -> tuple:
    return trial.params["log2_hidden_units"], trial.params["log2_batch_size"]


def test_killed_packed_worker_retries_each_member_once(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stages = "  - {name: only, trials: 6}"
    folder = _sweep_killing_one_worker(tmp_path, "packkill", stages, PACKED)
    assert_exact(folder, "packkill", {"only": 6})
    own = trials(folder, "packkill", "only")
    lost = [t for t in own if t.user_attrs.get("reason") == "lost"]
    assert len(lost) == 3 and len({_structure(t) for t in lost}) == 1  # one whole pack
    retries = {t.user_attrs["retry_of"]: t.params for t in own if "retry_of" in t.user_attrs}
    assert retries == {t.number: t.params for t in lost}  # each member ran again, once
    assert len(own) == 6 + 3


def test_a_pack_lost_once_its_time_is_spent_is_queued_to_run_again(
    ray_local, tmp_path, monkeypatch
):
    """`budget.hours`: a worker lost after its stage stopped starting trials. Its members were
    told FAIL (reason=lost) and kept for a retry in the driver's memory only, which the launch
    never started (no time left) and dropped: `status` said "3 run again", yet no resume ran
    them. Now they wait in Optuna's queue, as a Ctrl-C's interrupted trials do."""
    monkeypatch.chdir(tmp_path)
    resources = "{concurrency: 1, pack: 3}"
    write_spec(tmp_path, "late", "", source="builtin:digits", epochs=100_000, resources=resources)
    path = tmp_path / "late.yaml"
    # 14.4 s for the sweep, 6 s of it for the coarse stage's 10 trials: its first pack holds 3
    # (a quarter of the one slot's share, packing.before_a_deadline), starts well within those
    # 6 s even on a loaded machine, and trains on the only slot until it is killed 7 s later,
    # when the stage may start nothing more
    path.write_text(path.read_text().replace("stages:\n", "budget: {trials: 24, hours: 0.004}\n"))
    killed: list[int] = []
    threading.Thread(target=_kill_one_training_worker, args=(killed, 7.0), daemon=True).start()
    sweep.run(sweep.prepare(path))
    assert killed
    folder = tmp_path / "sweeps" / "late"
    lost = [t for t in trials(folder, "late", "coarse") if t.user_attrs.get("reason") == "lost"]
    assert len(lost) == 3
    study = optuna.load_study(
        study_name=study_name("late", "coarse"), storage=make_storage(None, folder)
    )
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert {t.user_attrs["retry_of"]: t.system_attrs["fixed_params"] for t in waiting} == {
        t.number: t.params for t in lost
    }


def test_pruned_member_leaves_its_pack_training_and_ctrl_c_records_every_member(tmp_path):
    # one pack of 3 trials that run until stopped, however fast the machine
    write_spec(
        tmp_path,
        "packprune",
        "  - {name: only, trials: 3}",
        source="builtin:digits",
        epochs=1_000_000,
        resources="{concurrency: 1, pack: 3}",
    )
    driver = start_cli("launch", "packprune.yaml", "--quiet", cwd=tmp_path)
    folder = tmp_path / "sweeps" / "packprune"

    def by_number():
        return {t.number: t for t in trials(folder, "packprune", "only")}

    def three_running():
        running = _running(folder, "packprune", "only")
        return (
            len(running) == 3 and all(len(t.intermediate_values) >= 3 for t in running) and running
        )

    def seen():
        return [(t.number, t.state.name, len(t.intermediate_values)) for t in by_number().values()]

    pruned, *others = wait_for(three_running, 180, "a pack of three, several epochs in", seen)
    assert len({_structure(t) for t in (pruned, *others)}) == 1
    assert cli("prune", "packprune", "--trial", str(pruned.number), cwd=tmp_path).returncode == 0

    def others_went_on():
        now = by_number()
        stopped = now[pruned.number]
        return stopped.state == TrialState.PRUNED and all(
            now[t.number].state == TrialState.RUNNING
            and len(now[t.number].intermediate_values) >= len(stopped.intermediate_values) + 3
            for t in others
        )

    # recorded PRUNED at once, while the rest of its pack trains on
    wait_for(others_went_on, 120, "the pruned member recorded, the others training", seen)
    kill_group(driver, signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err

    own = by_number()
    assert own[pruned.number].state == TrialState.PRUNED
    assert own[pruned.number].user_attrs["reason"] == "manual"
    interrupted = {n for n, t in own.items() if t.user_attrs.get("reason") == "interrupted"}
    assert interrupted == {t.number for t in others}  # every member still training, recorded
    assert not [t for t in own.values() if t.state == TrialState.RUNNING]
    runs, all_runs = mlflow_runs(folder, "packprune")
    assert not [r for r in all_runs if r.info.status == "RUNNING"]
    statuses = {int(r.data.tags["sweeper.trial"]): r.info.status for r in runs}
    assert statuses == {pruned.number: "KILLED"} | {n: "FAILED" for n in interrupted}

"""Real sweeps: real Ray tasks, a real Optuna journal, a real MLflow SQLite store."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import optuna
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from sweeper.errors import UserError
from sweeper.records import is_diverged
from sweeper.results.summary import best, load_view, status
from sweeper.run import folder as folder_module
from sweeper.run import sweep
from sweeper.search.recipe import recipe
from sweeper.search.study import make_storage, study_name
from sweeper.search.zoom import top_trials, value_by
from sweeper.spec.scales import Param
from tests.e2e import helpers
from tests.e2e.helpers import assert_exact, cli, mlflow_runs, write_spec


def test_sweep_records_exactly_n_trials_everywhere(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stages = (
        "  - {name: coarse, trials: 6, sampler: random, pruner: {type: asha, min_epochs: 1}}\n"
        "  - {name: fine, trials: 4, sampler: tpe, zoom: {top: 0.5, margin: 0.1}}"
    )
    plan = sweep.prepare(write_spec(tmp_path, "exact", stages))
    folder = plan.folder
    shown = []  # what the live table showed: (stage, finished, running), as each call said it
    sweep.run(plan, lambda p: shown.append((p.stage, p.finished, p.running)))
    # its first trials running before any ended (it said 0 running until the first one ended)
    assert ("coarse", 0, 2) in shown and ("fine", 0, 2) in shown, shown
    assert shown[-1] == ("fine", 4, 0)

    assert_exact(folder.path, "exact", {"coarse": 6, "fine": 4})
    trials = {
        stage: {t.number: t for t in helpers.trials(folder.path, "exact", stage)}
        for stage in ("coarse", "fine")
    }
    runs, _ = mlflow_runs(folder.path, "exact")
    for run in runs:
        trial = trials[run.data.tags["sweeper.stage"]][int(run.data.tags["sweeper.trial"])]
        assert run.data.tags["sweeper.node_id"]
        assert float(run.data.params["learning_rate"]) == pytest.approx(
            trial.params["learning_rate"]
        )
        assert float(run.data.params["beta"]) == pytest.approx(1 - trial.params["one_minus_beta"])
        assert int(run.data.params["batch_size"]) == 2 ** trial.params["log2_batch_size"]
        if trial.state.name == "COMPLETE":
            assert run.data.metrics["dev_accuracy"] == pytest.approx(trial.value)
            assert "test_accuracy" in run.data.metrics

    top = best(folder)
    every = [t for s in trials.values() for t in s.values() if t.state.name == "COMPLETE"]
    assert top.value == pytest.approx(max(t.value for t in every))
    summary = status(folder).to_json()  # as `sweeper status --json` prints it
    assert summary["state"] == "finished"
    assert [(s["complete"] + s["pruned"], s["running"]) for s in summary["stages"]] == [
        (6, 0),
        (4, 0),
    ]

    # every fine-stage trial lies inside the zoom box that stage recorded, in every parameter
    fine_box = {k: Param.model_validate(v) for k, v in summary["stages"][1]["space"].items()}
    fine_rows = [r for r in load_view(folder).rows if r.stage == "fine"]
    assert len(fine_rows) == 4
    for row in fine_rows:
        assert all(p.contains(row.params[k]) for k, p in fine_box.items()), row.params

    # the coarse stage's top trials inside that box were copied into the fine study (warm start)
    fine_study = optuna.load_study(
        study_name=study_name("exact", "fine"), storage=make_storage(None, folder.path)
    )
    copies = [t for t in fine_study.trials if "warm_start_from" in t.user_attrs]
    assert copies
    for copy in copies:
        origin = trials["coarse"][int(copy.user_attrs["warm_start_from"].split(":")[1])]
        # COMPLETE, with its best value by the ranking's common epoch and no learning curve
        common = copy.user_attrs["warm_start_epochs"]
        assert copy.state.name == "COMPLETE" and not copy.intermediate_values
        assert copy.value == value_by(origin, math.inf if common is None else common, True)
        assert copy.params["learning_rate"] == pytest.approx(origin.params["learning_rate"])

    # an ASHA-pruned trial's run is KILLED and holds its metrics up to the epoch it stopped at
    client = MlflowClient(f"sqlite:///{folder.path / 'mlflow.db'}")
    for run in runs:
        trial = trials[run.data.tags["sweeper.stage"]][int(run.data.tags["sweeper.trial"])]
        if trial.state.name == "PRUNED":
            assert run.info.status == "KILLED"
            curve = client.get_metric_history(run.info.run_id, "dev_accuracy")
            assert max(m.step for m in curve) == max(trial.intermediate_values)

    # launching again with the same spec resumes a finished sweep: nothing new runs
    sweep.run(sweep.prepare(tmp_path / "exact.yaml"))
    assert len(mlflow_runs(folder.path, "exact")[0]) == 10


def test_a_minimized_objective_ranks_the_lowest_first_everywhere(ray_local, tmp_path, monkeypatch):
    """dev_loss, minimized: the kept models (assert_exact once ranked them as if maximized), the
    zoom's top trials and their copies' values, the best trial and the registered model."""
    monkeypatch.chdir(tmp_path)
    stages = (
        "  - {name: coarse, trials: 6, sampler: random}\n"
        "  - {name: fine, trials: 3, sampler: tpe, pruner: {type: median, warmup_epochs: 2},"
        " patience: 2, zoom: {top: 0.5, margin: 0.1}}"
    )
    minimize = "{metric: dev_loss, direction: minimize}"
    plan = sweep.prepare(write_spec(tmp_path, "lows", stages, objective=minimize))
    sweep.run(plan)

    assert_exact(plan.folder.path, "lows", {"coarse": 6, "fine": 3})
    coarse, fine = (helpers.trials(plan.folder.path, "lows", s) for s in ("coarse", "fine"))
    assert all(t.state.name == "COMPLETE" for t in coarse)  # 6 complete, 3 models kept
    for trial in coarse:  # at: best keeps the epoch of the lowest dev_loss
        assert trial.value == pytest.approx(min(trial.intermediate_values.values()))
    study = optuna.load_study(
        study_name=study_name("lows", "fine"), storage=make_storage(None, plan.folder.path)
    )
    copies = [t for t in study.trials if "warm_start_from" in t.user_attrs]
    lowest = sorted(coarse, key=lambda t: t.value)[:3]
    origins = [c.user_attrs["warm_start_from"] for c in copies]
    assert origins == [f"coarse:{t.number}" for t in lowest]
    assert [c.value for c in copies] == [t.value for t in lowest]
    every = [t for t in coarse + fine if t.state.name == "COMPLETE"]
    top = best(plan.folder)
    assert top.value == min(t.value for t in every)
    client = MlflowClient(f"sqlite:///{plan.folder.path / 'mlflow.db'}")
    (registered,) = client.search_model_versions("name = 'lows'")
    assert (registered.tags["stage"], registered.tags["trial"]) == (top.stage, str(top.trial))


def test_diverging_trials_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """...and when none completes, the launch says so (it ended in silence, without a best)."""
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "diverge", "  - {name: only, trials: 3}")
    path.write_text(
        path.read_text().replace(
            "{scale: log, low: 1.0e-3, high: 3.0e-2}", "{scale: log, low: 1.0e+3, high: 1.1e+3}"
        )
    )
    launched = cli("launch", path.name, "--quiet", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    assert (
        "none of the 3 finished trials completed, so no model was kept; 3 diverged (lower the "
        "learning_rate range)" in launched.stderr
    )
    assert "best:" not in launched.stdout
    shown = json.loads(cli("status", "diverge", "--json", cwd=tmp_path).stdout)
    assert [(s["pruned"], s["diverged"]) for s in shown["stages"]] == [(3, 3)]
    assert "3 (3 diverged)" in cli("status", "diverge", cwd=tmp_path).stdout
    nothing = cli("best", "diverge", cwd=tmp_path)  # it said "yet" of a finished sweep
    assert nothing.returncode == 2
    assert "has no completed trial; 3 diverged" in nothing.stderr
    folder = sweep.prepare(path).folder
    runs, _ = mlflow_runs(folder.path, "diverge")
    assert len(runs) == 3
    assert {r.data.tags["sweeper.reason"] for r in runs} == {"diverged"}
    assert {r.info.status for r in runs} == {"KILLED"}


def test_gpu_trials_without_a_gpu_are_a_clear_error(ray_local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "gpu", "  - {name: only, trials: 2}")
    path.write_text(path.read_text().replace("{concurrency: 2}", "{gpus_per_trial: 0.25}"))
    with pytest.raises(UserError, match=r"gpus_per_trial is 0\.25 but the Ray cluster has no GPU"):
        sweep.run(sweep.prepare(path))
    assert not (tmp_path / "sweeps").exists()


def test_a_trial_bigger_than_this_machine_is_a_clear_error(tmp_path):
    """4 CPUs a trial on a 2-CPU machine waited forever, after making the sweep's folder."""
    cpus = os.cpu_count()
    path = write_spec(tmp_path, "big", "  - {name: only, trials: 2}")
    path.write_text(path.read_text().replace("{concurrency: 2}", f"{{cpus_per_trial: {cpus + 1}}}"))
    launched = cli("launch", path.name, "--quiet", cwd=tmp_path, timeout=120)
    assert launched.returncode == 2, launched.stderr
    assert f"cpus_per_trial is {cpus + 1} but this machine has {cpus} CPUs" in launched.stderr
    assert not (tmp_path / "sweeps").exists()


def test_cli_sweep_on_a_parquet_file_with_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    label = np.where(X[:, 0] * X[:, 1] > 0, "same", "different")
    pq.write_table(
        pa.table({"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "label": label}),
        tmp_path / "pairs.parquet",
    )
    write_spec(tmp_path, "pairs", "  - {name: only, trials: 3}", source="pairs.parquet")
    launched = cli("launch", "pairs.yaml", "--quiet", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    shown = json.loads(cli("status", "pairs", "--json", cwd=tmp_path).stdout)
    assert shown["stages"][0]["complete"] + shown["stages"][0]["pruned"] == 3
    found = json.loads(cli("best", "pairs", "--json", cwd=tmp_path).stdout)
    assert set(found) == {
        "stage",
        "trial",
        "value",
        "params",
        "metrics",
        "model_uri",
        "tracking_uri",
    }
    bad = cli("status", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no sweep 'nope'" in bad.stderr

    # the file rewritten with other rows: launching the same spec again would have resumed
    # the sweep on them, mixing two data sets' trials and kept models
    journal = (tmp_path / "sweeps" / "pairs" / "optuna.journal").read_bytes()
    pq.write_table(
        pa.table({"f0": X[:, 1], "f1": X[:, 0], "f2": X[:, 2], "label": label[::-1]}),
        tmp_path / "pairs.parquet",
    )
    again = cli("launch", "pairs.yaml", "--quiet", cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert "data.source: pairs.parquet holds other data than this sweep began on" in again.stderr
    assert (tmp_path / "sweeps" / "pairs" / "optuna.journal").read_bytes() == journal


def test_second_driver_is_refused_while_one_holds_the_lock(tmp_path):
    """...and `is_running` (status, list, ui, delete) only looks: it wrote its own PID into the
    lock file, and held it exclusively for an instant, long enough to refuse a launch."""
    import os
    import subprocess
    import sys

    from sweeper.errors import UserError

    folder = folder_module.SweepFolder(tmp_path)
    assert not folder_module.is_running(folder) and not (tmp_path / "lock").exists()
    with folder_module.sweep_lock(folder):
        assert (tmp_path / "lock").read_text() == str(os.getpid())
        probe = (
            "import sys; from sweeper.run.folder import *; "
            "print(is_running(SweepFolder(Path(sys.argv[1]))))"
        )
        seen = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True
        )
        assert seen.stdout.strip() == "True", seen.stderr
        with pytest.raises(UserError, match="already running"), folder_module.sweep_lock(folder):
            pass
        assert (tmp_path / "lock").read_text() == str(os.getpid())
    seen = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True
    )
    assert seen.stdout.strip() == "False", seen.stderr
    assert (tmp_path / "lock").read_text() == str(os.getpid())  # the last driver's, untouched


EPOCHS_TIMED = 1000  # ~2 s a trial: the first one outlasts the coarse stage's share


def test_a_time_budget_stops_starting_trials_and_a_launch_without_it_runs_the_rest(
    ray_local, tmp_path, monkeypatch
):
    """budget.hours: 7.9 s for 10 trials, one at a time, so the coarse stage's share (its 4 of
    the 10 trials' time, 3.2 s) ends while its first or second trial trains: that one finishes,
    no other starts, and the fine stage does not open, though the launch's time has not run out
    (a fine stage zoomed on one or two coarse trials opened here once). The same spec without
    `hours` (the same sweep: hours is not part of it) runs the rest."""
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "timed", "", epochs=EPOCHS_TIMED, resources="{concurrency: 1}")
    text = path.read_text().replace("stages:\n\n", "budget: {trials: 10, hours: 0.0022}\n")
    path.write_text(text)
    launched = cli("launch", path.name, "--quiet", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr

    coarse, fine = recipe(10, EPOCHS_TIMED)
    plan = sweep.prepare(path)
    ran = helpers.finished(plan.folder.path, "timed", "coarse")
    assert ran < coarse.trials  # 0 when opening the stage took its whole share (heavy load)
    assert f"time budget of 0.0022 h spent: {ran} of 10 trials finished" in launched.stdout
    assert "sweeper resume timed" in launched.stdout
    assert status(plan.folder).to_json()["stages"][1]["complete"] == 0  # fine never opened
    if ran:
        assert_exact(plan.folder.path, "timed", {"coarse": ran})

    path.write_text(text.replace(", hours: 0.0022", ""))
    sweep.run(sweep.prepare(path))
    assert_exact(plan.folder.path, "timed", {"coarse": coarse.trials, "fine": fine.trials})
    assert best(plan.folder) is not None


def test_a_time_budget_stops_a_packed_stage_between_packs(ray_local, tmp_path, monkeypatch):
    """With packs the coarse stage's 4 trials were balanced into one pack of 4 on the one task
    slot, all started at once, so the stage ran every trial past its share of the time; under
    `hours` a pack holds at most a quarter of a slot's trials, and the stage stops between."""
    monkeypatch.chdir(tmp_path)
    resources = "{concurrency: 1, pack: 8}"
    path = write_spec(tmp_path, "timedpack", "", epochs=EPOCHS_TIMED, resources=resources)
    path.write_text(
        path.read_text().replace("stages:\n\n", "budget: {trials: 10, hours: 0.0022}\n")
    )
    launched = cli("launch", path.name, "--quiet", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    coarse, _ = recipe(10, EPOCHS_TIMED)
    ran = helpers.finished(sweep.prepare(path).folder.path, "timedpack", "coarse")
    assert ran < coarse.trials
    assert f"time budget of 0.0022 h spent: {ran} of 10 trials finished" in launched.stdout


def test_a_thorough_budget_runs_every_trial_to_its_end_sampled_by_the_gp(
    ray_local, tmp_path, monkeypatch
):
    """`search: thorough`: one gp stage, no pruner; past its 5 start-up trials the Gaussian
    process asks in the StudyServer actor, reading the sweep's journal."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "thorough", "", epochs=2)
    text = path.read_text().replace("stages:\n\n", "budget: {trials: 7, search: thorough}\n")
    path.write_text(text)
    plan = sweep.prepare(path)
    sweep.run(plan)

    assert_exact(plan.folder.path, "thorough", {"gp": 7})
    trials = helpers.trials(plan.folder.path, "thorough", "gp")
    assert all(t.state.name == "COMPLETE" or is_diverged(t) for t in trials)
    assert all(len(t.intermediate_values) == 2 for t in trials if t.state.name == "COMPLETE")
    assert status(plan.folder).to_json()["budget"] == {"trials": 7, "search": "thorough"}


def test_a_budget_runs_the_recommended_plan_with_warm_copies_the_pruner_ignores(
    ray_local, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "budget", "", epochs=6)
    path.write_text(path.read_text().replace("stages:\n\n", "budget: {trials: 10}\n"))
    plan = sweep.prepare(path)
    sweep.run(plan)

    stages = recipe(10, 6)
    assert [s.name for s in plan.spec.stages] == [s.name for s in stages]
    assert_exact(plan.folder.path, "budget", {s.name: s.trials for s in stages})
    coarse, fine = (helpers.trials(plan.folder.path, "budget", s.name) for s in stages)
    storage = make_storage(None, plan.folder.path)
    study = optuna.load_study(study_name=study_name("budget", "fine"), storage=storage)
    copies = [t for t in study.trials if "warm_start_from" in t.user_attrs]
    top, _ = top_trials(coarse, stages[1].zoom.top, maximize=True)
    assert [c.user_attrs["warm_start_from"] for c in copies] == [f"coarse:{t.number}" for t in top]
    assert all(c.state.name == "COMPLETE" and not c.intermediate_values for c in copies)
    assert len(fine) == stages[1].trials  # the copies are not counted as the stage's trials
    summary = status(plan.folder).to_json()
    assert summary["budget"] == {"trials": 10}  # epochs come from train:
    assert [s["plan"] for s in summary["stages"]] == [s.describe() for s in stages]

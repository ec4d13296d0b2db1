"""Sweep folders are owned: the CLI, as real processes, touches only folders `launch` created
and only the files it made there; a sweep given by path is that folder, from any directory."""

from __future__ import annotations

import stat
from pathlib import Path

from optuna.trial import TrialState

from sweeper.run.ownership import MARKER
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


def _tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_dot_names_are_refused_at_launch_and_nothing_is_created(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's")
    before = _tree(tmp_path)
    for name in ("'..'", "'.'", "-rf"):
        spec = write_spec(tmp_path, "x", "  - {name: only, trials: 1}")
        spec.write_text(spec.read_text().replace("name: x", f"name: {name}", 1))
        before = _tree(tmp_path)
        launched = cli("launch", "x.yaml", "--quiet", cwd=tmp_path, timeout=60)
        assert launched.returncode == 2, launched.stderr
        assert "x.yaml:1: name:" in launched.stderr and "Traceback" not in launched.stderr
        assert _tree(tmp_path) == before and not (tmp_path / "sweeps").exists()


def test_dir_may_not_be_the_working_directory_or_a_system_folder(tmp_path):
    spec = write_spec(tmp_path, "x", "  - {name: only, trials: 1}")
    text = spec.read_text()
    for folder, expected in ((".", "working directory"), ("/etc", "system"), ("/", "system")):
        spec.write_text(text + f"dir: {folder}\n")
        launched = cli("launch", "x.yaml", "--quiet", cwd=tmp_path, timeout=60)
        assert launched.returncode == 2 and expected in launched.stderr, launched.stderr
        assert "x.yaml:15: dir:" in launched.stderr


def test_delete_refuses_a_folder_launch_did_not_create(tmp_path):
    """A folder that merely looks like a sweep (a parseable spec.yaml) is not the sweeper's."""
    write_spec(tmp_path, "look", "  - {name: only, trials: 1}")
    folder = tmp_path / "sweeps" / "look"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text((tmp_path / "look.yaml").read_text())
    (folder / "thesis.tex").write_text("years of work")
    before = _tree(tmp_path)
    for target in ("look", str(folder), ".."):
        refused = cli("delete", target, "--yes", cwd=folder, timeout=60)
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr
    assert "not a sweep folder" in cli("delete", str(folder), "--yes", cwd=tmp_path).stderr
    assert _tree(tmp_path) == before


def test_resume_by_path_from_elsewhere_then_delete_only_what_the_sweeper_made(tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    # a same-named folder under the other working directory's ./sweeps: never touched
    decoy = elsewhere / "sweeps" / "owned"
    decoy.mkdir(parents=True)
    (decoy / "notes.txt").write_text("not a sweep")
    stages = "  - {name: coarse, trials: 4, sampler: random}"
    write_spec(home, "owned", stages, source="builtin:digits", epochs=150)
    driver = start_cli("launch", "owned.yaml", "--quiet", cwd=home)
    folder = home / "sweeps" / "owned"

    def progress():
        states = [t.state for t in trials(folder, "owned", "coarse")]
        return (finished(folder, "owned", "coarse") >= 1 and TrialState.RUNNING in states, states)

    wait_for(lambda: progress()[0], 180, "a finished trial and a running one", progress)
    kill_driver(driver)

    resumed = cli("resume", str(folder), "--quiet", cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert_exact(folder, "owned", {"coarse": 4})
    assert not (elsewhere / "sweeps" / "owned" / "spec.yaml").exists()
    assert _tree(elsewhere) == {"sweeps/owned/notes.txt": b"not a sweep"}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    token = Path.home() / ".ray" / "auth_token"  # Ray's token mode: the token is the user's alone
    assert not token.exists() or stat.S_IMODE(token.stat().st_mode) == 0o600
    for private in (MARKER, "spec.yaml", "optuna.journal", "mlflow.db"):
        assert stat.S_IMODE((folder / private).stat().st_mode) == 0o600, private

    (folder / "my-analysis.ipynb").write_text("{}")
    refused = cli("delete", str(folder), "--yes", cwd=elsewhere, timeout=60)
    assert refused.returncode == 2 and "my-analysis.ipynb" in refused.stderr, refused.stderr
    assert (folder / "spec.yaml").is_file() and (folder / "my-analysis.ipynb").is_file()
    asked = cli("delete", str(folder), cwd=elsewhere, timeout=60, answer="y\n")
    assert asked.returncode == 2 and "delete sweep" not in asked.stdout, asked.stdout  # refused
    assert (folder / "my-analysis.ipynb").is_file()  # before the user is asked to confirm
    assert cli("status", str(folder), cwd=elsewhere, timeout=60).returncode == 0
    (folder / "my-analysis.ipynb").rename(home / "my-analysis.ipynb")
    for answer in ("n\n", ""):  # declined, or no answer at all: it printed "error: Abort:"
        kept = cli("delete", str(folder), cwd=elsewhere, timeout=60, answer=answer)
        assert kept.returncode == 1 and "not deleted" in kept.stderr, kept.stderr
        assert "Abort" not in kept.stderr and (folder / "spec.yaml").is_file()
    (home / "my-analysis.ipynb").rename(folder / "my-analysis.ipynb")

    (folder / "my-analysis.ipynb").rename(home / "my-analysis.ipynb")
    (folder / "artifacts" / "MY_NOTES.txt").write_text("mine")  # inside a folder of its own
    refused = cli("delete", str(folder), "--yes", cwd=elsewhere, timeout=60)
    assert refused.returncode == 2 and "artifacts/MY_NOTES.txt" in refused.stderr, refused.stderr
    (folder / "artifacts" / "MY_NOTES.txt").rename(home / "MY_NOTES.txt")
    deleted = cli("delete", str(folder), "--yes", cwd=elsewhere, timeout=60)
    assert deleted.returncode == 0, deleted.stderr
    assert not folder.exists() and (home / "my-analysis.ipynb").is_file()
    assert _tree(elsewhere) == {"sweeps/owned/notes.txt": b"not a sweep"}


def test_a_sweep_of_the_same_name_from_another_folder_cannot_share_its_stores(tmp_path):
    """Two folders, one space.yaml naming shared stores: the second launch mixed its trials into
    the first's studies and experiment, and deleting it deleted the first's runs, models and
    registered versions. It is refused, creating nothing; the first is deleted whole, its
    registered model included."""
    from mlflow.tracking import MlflowClient

    stores = tmp_path / "stores"
    stores.mkdir()
    urls = {"optuna": f"sqlite:///{stores}/optuna.db", "mlflow": f"sqlite:///{stores}/mlflow.db"}
    spec = write_spec(tmp_path, "dup", "  - {name: only, trials: 2}", epochs=2).read_text()
    spec += f"storage: {{optuna: '{urls['optuna']}', mlflow: '{urls['mlflow']}'}}\n"
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        (folder / "dup.yaml").write_text(spec)
    assert cli("launch", "dup.yaml", "--quiet", cwd=first).returncode == 0
    client = MlflowClient(urls["mlflow"])
    assert len(client.search_model_versions("name = 'dup'")) == 1
    runs_before = len(client.search_runs([client.get_experiment_by_name("dup").experiment_id]))

    refused = cli("launch", "dup.yaml", "--quiet", cwd=second)
    assert refused.returncode == 2, refused.stderr
    assert "dup.yaml:15: storage.optuna: it holds a sweep named 'dup' that another folder" in (
        refused.stderr
    )
    assert sorted(p.name for p in second.iterdir()) == ["dup.yaml"]
    experiment = client.get_experiment_by_name("dup")
    assert len(client.search_runs([experiment.experiment_id])) == runs_before

    again = cli("launch", "dup.yaml", "--quiet", cwd=first)  # its own folder: a resume
    assert again.returncode == 0, again.stderr
    deleted = cli("delete", "dup", "--yes", cwd=first)
    assert deleted.returncode == 0, deleted.stderr
    assert client.get_experiment_by_name("dup") is None
    assert not client.search_registered_models("name = 'dup'")
    assert cli("launch", "dup.yaml", "--quiet", cwd=second).returncode == 0  # the name is free


def test_delete_goes_on_when_the_sweeps_sqlite_mlflow_store_does_not_exist(tmp_path):
    """A `storage.mlflow` SQLite file that is gone (or never made: the launch stopped first)
    holds nothing of the sweep: delete refused ("the MLflow store cannot be read") and the
    folder could not be deleted; it must not create the file either."""
    from mlflow.tracking import MlflowClient

    from sweeper.run.folder import SweepFolder
    from sweeper.run.ownership import Identity, claim

    folder, store = tmp_path / "sweeps" / "gone", tmp_path / "stores" / "mlflow.db"
    claim(folder, Identity("gone", "0"))
    spec = write_spec(tmp_path, "gone", "  - {name: only, trials: 1}").read_text()
    (folder / "spec.yaml").write_text(spec + f"storage: {{mlflow: 'sqlite:///{store}'}}\n")
    store.parent.mkdir()
    deleted = cli("delete", "gone", "--yes", cwd=tmp_path, timeout=60)
    assert deleted.returncode == 0, deleted.stderr
    assert not folder.exists() and not store.exists()
    # a SQLite path of `${VAR}`s names the file they expand to: its experiment is deleted
    claim(folder, Identity("gone", "0"))
    (folder / "spec.yaml").write_text(spec + "storage: {mlflow: 'sqlite:///${STORES_T}/m.db'}\n")
    made = {"sweeper.sweep_id": SweepFolder(folder).sweep_id}  # as the sweep's Tracker tags it
    MlflowClient(f"sqlite:///{store.parent}/m.db").create_experiment(
        "gone", (tmp_path / "runs").as_uri(), tags=made
    )
    deleted = cli(
        "delete", "gone", "--yes", cwd=tmp_path, timeout=60, env={"STORES_T": str(store.parent)}
    )
    assert deleted.returncode == 0, deleted.stderr
    assert MlflowClient(f"sqlite:///{store.parent}/m.db").get_experiment_by_name("gone") is None

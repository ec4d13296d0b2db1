"""The malformed-input corpus, through the real `sweeper launch` command.

Every case must exit with code 2 and one message naming the space.yaml, the line and the field,
print no traceback, and create or change nothing in the working folder. Bad input is caught
before Ray starts, so these run in-process in milliseconds.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sweeper.cli.commands import app
from sweeper.run.ownership import Identity, claim

GOOD = """\
name: bad
data:
  source: data.csv
  target: label
train:
  epochs: 3
space:
  learning_rate: {scale: log, low: 1.0e-3, high: 1.0e-1}
  beta: {scale: one_minus_log, low: 0.9, high: 0.999}
stages:
  - {name: coarse, trials: 4}
"""
CSV = "f0,f1,label\n" + "".join(f"{i * 0.1},{(i * 7) % 5},{'ab'[i % 2]}\n" for i in range(40))


def _csv(edit):
    return lambda: edit(CSV)


def _spec(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


# case: (space.yaml text, data.csv text or None for none, line, text expected in the message)
CORPUS = {
    # YAML itself
    "yaml syntax": (_spec("  epochs: 3", "  epochs: [3"), CSV, 7, "YAML syntax"),
    "bad indentation": (_spec("  target: label", "   target: label"), CSV, 4, "YAML syntax"),
    "python object tag": (
        "name: !!python/object/apply:os.system ['echo pwned']\n",
        CSV,
        1,
        "YAML syntax: could not determine a constructor for the tag",
    ),
    "empty file": ("", CSV, 1, "must be a mapping"),
    "a list, not a mapping": ("- name: bad\n", CSV, 1, "must be a mapping"),
    # keys and types
    "unknown top key": (GOOD + "stagez: []\n", CSV, 12, "stagez: unknown key (did you mean"),
    "unknown data key": (
        _spec("  target: label", "  target: label\n  sorce: x"),
        CSV,
        5,
        "data.sorce: unknown key (did you mean 'source'?)",
    ),
    "unknown trainer option": (
        _spec("  epochs: 3", "  epoch: 3"),
        CSV,
        6,
        "train.epoch: unknown trainer option 'epoch' (did you mean 'epochs'?)",
    ),
    "unknown space name": (
        _spec("  beta:", "  bta:"),
        CSV,
        9,
        "space.bta: unknown trainer option 'bta' (did you mean 'beta'?)",
    ),
    "trials not a number": (
        _spec("trials: 4", "trials: four"),
        CSV,
        11,
        "stages.0.trials: Input should be a valid integer",
    ),
    "zero trials": (_spec("trials: 4", "trials: 0"), CSV, 11, "stages.0.trials"),
    "unknown optimizer": (
        _spec("  epochs: 3", "  epochs: 3\n  optimizer: adamw"),
        CSV,
        5,
        "train: optimizer='adamw'; choose one of ['adam', 'gd', 'momentum', 'rmsprop']",
    ),
    "keep_prob searched outside (0, 1]": (
        _spec("stages:", "  keep_prob: {scale: uniform, low: 0.5, high: 1.5}\nstages:"),
        CSV,
        10,
        "space.keep_prob: keep_prob=1.5 must be in (0, 1]",
    ),
    "bad name": (_spec("name: bad", "name: my sweep"), CSV, 1, "name: String should match"),
    "missing data": (
        _spec("data:\n  source: data.csv\n  target: label\n", ""),
        CSV,
        1,
        "data: Field required",
    ),
    "missing stages": (GOOD.split("stages:")[0], CSV, 1, "no plan: give `budget: {trials: N}`"),
    "budget and stages": (
        _spec("stages:", "budget: {trials: 8}\nstages:"),
        CSV,
        11,
        "stages: give `stages` (your own plan) or `budget` (the recommended plan), not both",
    ),
    "budget epochs and train epochs": (
        _spec("stages:\n  - {name: coarse, trials: 4}\n", "budget: {trials: 8, epochs: 5}\n"),
        CSV,
        5,
        "train: epochs is set both here and in budget.epochs",
    ),
    "budget of no trials": (
        _spec("stages:\n  - {name: coarse, trials: 4}\n", "budget: {trials: 0}\n"),
        CSV,
        10,
        "budget.trials: Input should be greater than or equal to 1",
    ),
    # scales and bounds
    "low > high": (
        _spec("low: 1.0e-3, high: 1.0e-1", "low: 0.5, high: 0.1"),
        CSV,
        8,
        "space.learning_rate: low must be < high",
    ),
    "log scale with low = 0": (
        _spec("low: 1.0e-3", "low: 0"),
        CSV,
        8,
        "space.learning_rate: a log scale needs low > 0",
    ),
    "beta above 1": (
        _spec("high: 0.999", "high: 1.5"),
        CSV,
        9,
        "space.beta: one_minus_log is for β in (0, 1)",
    ),
    "beta at 0": (_spec("low: 0.9", "low: 0"), CSV, 9, "space.beta: one_minus_log is for β in"),
    "pow2 bounds not powers of two": (
        _spec("stages:", "  batch_size: {scale: pow2, low: 30, high: 256}\nstages:"),
        CSV,
        10,
        "space.batch_size: pow2 bounds must be powers of two",
    ),
    "unknown scale": (
        _spec("scale: log,", "scale: logarithmic,"),
        CSV,
        8,
        "space.learning_rate.scale",
    ),
    "categorical without choices": (
        _spec("{scale: one_minus_log, low: 0.9, high: 0.999}", "{scale: categorical}"),
        CSV,
        9,
        "categorical needs a non-empty",
    ),
    "empty space": (
        GOOD.split("space:")[0] + "space: {}\nstages:\n  - {name: c, trials: 1}\n",
        CSV,
        7,
        "space is empty",
    ),
    "both fixed and searched": (
        _spec("  epochs: 3", "  epochs: 3\n  beta: 0.9"),
        CSV,
        10,
        "both fixed in `train` and searched",
    ),
    # stages
    "unknown sampler": (_spec("trials: 4}", "trials: 4, sampler: grd}"), CSV, 11, "sampler"),
    "zoom on the first stage": (
        _spec("trials: 4}", "trials: 4, zoom: {top: 0.2}}"),
        CSV,
        11,
        "first stage has no earlier stage",
    ),
    "duplicate stage names": (
        GOOD + "  - {name: coarse, trials: 2}\n",
        CSV,
        10,
        "stage names must be unique",
    ),
    "negative dev split": (
        _spec("  target: label", "  target: label\n  split: {dev: -0.1}"),
        CSV,
        5,
        "data.split.dev",
    ),
    # data
    "missing data file": (GOOD, None, 3, "data.source: "),
    "unknown built-in data": (_spec("data.csv", "builtin:mnist"), CSV, 3, "unknown built-in"),
    "missing target column": (
        _spec("target: label", "target: lable"),
        CSV,
        4,
        "data.target: ",
    ),
    "non-numeric feature": (
        _spec("  target: label", "  target: label\n  features: [f0, name]"),
        CSV.replace("f0,f1,label", "f0,name,label").replace(",0,", ",zero,"),
        5,
        "feature column 'name' is not numeric",
    ),
    "NaN in a feature": (GOOD, CSV.replace("\n0.5,", "\nnan,"), 3, "column 'f0' has 1 missing"),
    "inf in a feature": (GOOD, CSV.replace(",3,", ",inf,", 1), 3, "column 'f1' has 1 missing"),
    "a single class": (GOOD, CSV.replace(",b\n", ",a\n"), 4, "has a single class ['a']"),
    "header but no rows": (GOOD, "f0,f1,label\n", 3, "the file has no rows"),
    "zero-byte data file": (GOOD, "", 3, "data.source: "),
    "missing label values": (GOOD, CSV.replace(",b\n", ",\n", 1), 4, "data.target: "),
}


def _table_file(suffix: str, **columns) -> dict[str, bytes]:
    """A data file of another type, named data.<suffix>, with the spec pointing at it."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    table = pa.table(columns)
    (pq.write_table if suffix == "parquet" else feather.write_feather)(table, sink)
    return {f"data.{suffix}": sink.getvalue().to_pybytes()}


ROWS = 40
FLOATS = [i * 0.1 for i in range(ROWS)]
LABELS = ["ab"[i % 2] for i in range(ROWS)]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)
# hostile and careless input (issue 21): each must still be one message, exit 2, nothing made
CORPUS |= {
    "alias bomb": (BOMB + GOOD, CSV, 1, "aliases (*name) are expanded"),
    "oversized spec": (GOOD + "#" * 1_100_000 + "\n", CSV, 1, "over 1000000 bytes"),
    "duplicate top key": (GOOD + "name: other\n", CSV, 12, "name: duplicate key (first at line 1)"),
    "duplicate nested key": (
        _spec("  target: label", "  target: label\n  target: f0"),
        CSV,
        5,
        "data.target: duplicate key (first at line 4)",
    ),
    "name '..'": (_spec("name: bad", "name: '..'"), CSV, 1, "'..' is not a sweep name"),
    "name '.'": (_spec("name: bad", "name: ."), CSV, 1, "'.' is not a sweep name"),
    "name starting with -": (_spec("name: bad", "name: -rf"), CSV, 1, "may not start with '-'"),
    "name too long": (_spec("name: bad", "name: " + "n" * 300), CSV, 1, "at most 100 characters"),
    "dir: the root": (GOOD + "dir: /\n", CSV, 12, "dir: / is a system or home folder"),
    "dir: inside /etc": (GOOD + "dir: /etc/sweeps\n", CSV, 12, "inside a system folder"),
    "dir: the working directory": (GOOD + "dir: .\n", CSV, 12, "the working directory"),
    "Rich markup in the target name": (
        _spec("target: label", "target: '[/b][nan]'"),
        CSV,
        4,
        "target column '[/b][nan]' not found",
    ),
    "NaN in a CSV target": (
        _spec("  target: label", "  target: f1"),
        CSV.replace(",3,", ",nan,", 1),
        4,
        "target column 'f1' has 1 missing or NaN",
    ),
    "NaN in a Parquet target": (
        _spec("data.csv", "data.parquet"),
        _table_file("parquet", f0=FLOATS, label=[float("nan")] + [i % 2 for i in range(1, ROWS)]),
        4,
        "target column 'label' has 1 missing or NaN",
    ),
    "NaN in a Feather target": (
        _spec("data.csv", "data.feather"),
        _table_file("feather", f0=FLOATS, label=[float("nan")] + [i % 2 for i in range(1, ROWS)]),
        4,
        "target column 'label' has 1 missing or NaN",
    ),
    "list column as target": (
        _spec("data.csv", "data.parquet"),
        _table_file("parquet", f0=FLOATS, label=[[i % 2] for i in range(ROWS)]),
        4,
        "target column 'label' holds list<element: int64> values",
    ),
    "struct column as feature": (
        _spec("data.csv", "data.parquet").replace(
            "  target: label", "  target: label\n  features: [f0, s]"
        ),
        _table_file("parquet", f0=FLOATS, s=[{"x": i} for i in range(ROWS)], label=LABELS),
        5,
        "feature column 's' is not numeric (struct<x: int64>)",
    ),
    "duplicate column names": (
        GOOD,
        CSV.replace("f0,f1,label", "f0,f0,label"),
        3,
        "duplicate column names ['f0']",
    ),
    "features: []": (
        _spec("  target: label", "  target: label\n  features: []"),
        CSV,
        5,
        "data.features: List should have at least 1 item",
    ),
    "target among the features": (
        _spec("  target: label", "  target: label\n  features: [f0, label]"),
        CSV,
        2,
        "the target 'label' is also listed in features",
    ),
    "test file is the training file": (
        _spec("  target: label", "  target: label\n  test: ./data.csv"),
        CSV,
        5,
        "is the training file too",
    ),
    "a stray text cell in a numeric column": (
        GOOD,
        CSV.replace("\n0.5,", "\nseven,"),
        3,
        "column 'f0' holds numbers but row 6 holds 'seven'",
    ),
    "a stray text cell in a listed feature": (
        _spec("  target: label", "  target: label\n  features: [f0, f1]"),
        CSV.replace("\n0.5,", "\nseven,"),
        5,
        "feature column 'f0' is not numeric (string): row 6 holds 'seven'",
    ),
    "negative split seed": (
        _spec("  target: label", "  target: label\n  split: {seed: -1}"),
        CSV,
        5,
        "data.split.seed: Input should be greater than or equal to 0",
    ),
    "huge split seed": (
        _spec("  target: label", "  target: label\n  split: {seed: 1099511627776}"),
        CSV,
        5,
        "data.split.seed: Input should be less than 4294967296",
    ),
    "negative stage seed": (_spec("trials: 4}", "trials: 4, seed: -5}"), CSV, 11, "stages.0.seed"),
    "cpus_per_trial: .inf": (
        GOOD + "resources: {cpus_per_trial: .inf}\n",
        CSV,
        12,
        "finite number",
    ),
    "fractional cpus above 1": (
        GOOD + "resources: {cpus_per_trial: 1.5}\n",
        CSV,
        12,
        "above 1 Ray takes whole numbers only",
    ),
    "cpus finer than Ray counts": (
        GOOD + "resources: {cpus_per_trial: 0.00001}\n",
        CSV,
        12,
        "steps of 0.0001",
    ),
    "negative gpus": (
        GOOD + "resources: {gpus_per_trial: -1}\n",
        CSV,
        12,
        "resources.gpus_per_trial",
    ),
    "zero concurrency": (GOOD + "resources: {concurrency: 0}\n", CSV, 12, "resources.concurrency"),
    "NaN zoom margin": (
        GOOD + "  - {name: fine, trials: 2, zoom: {margin: .nan}}\n",
        CSV,
        12,
        "stages.1.zoom.margin: Input should be a finite number",
    ),
    "absurd trial count": (_spec("trials: 4", "trials: 1000000000000"), CSV, 11, "stages.0.trials"),
    "hyperband min_epochs above epochs": (
        _spec("trials: 4}", "trials: 4, pruner: {type: hyperband, min_epochs: 5}}"),
        CSV,
        11,
        "stages.0.pruner: hyperband needs min_epochs < epochs",
    ),
    "a password written in a storage URL": (
        GOOD + "storage: {optuna: 'postgresql://me:hunter2@db.example/optuna'}\n",
        CSV,
        12,
        "postgresql://me:***@db.example/optuna holds a password",
    ),
    "a mapping among categorical choices": (
        GOOD.replace(
            "space:\n", "space:\n  activation: {scale: categorical, choices: [{a: 1}, relu]}\n"
        ),
        CSV,
        8,
        "space.activation: choices are values or lists of values, not {'a': 1}",
    ),
    "a password in a storage URL's query": (
        GOOD + "storage: {optuna: 'postgresql://me@db.example/optuna?password=hunter2'}\n",
        CSV,
        12,
        "postgresql://me@db.example/optuna?password=*** holds a password",
    ),
    "a new SQLite store where no file can be made": (
        GOOD + "storage: {optuna: 'sqlite:////proc/x.db'}\n",
        CSV,
        12,
        "storage.optuna: no database can be made in /proc",
    ),
    "an unset variable in a storage URL": (
        GOOD + "storage: {optuna: 'postgresql://me:${SWEEPER_UNSET_9}@db.example/optuna'}\n",
        CSV,
        12,
        "environment variable SWEEPER_UNSET_9 is not set",
    ),
    "a regression loss on classes": (
        _spec("  epochs: 3", "  epochs: 3\n  loss: mse"),
        CSV,
        7,
        "train.loss: mse is a regression loss and the sweeper's data are classes",
    ),
    "binary cross-entropy on three classes": (
        _spec("  epochs: 3", "  epochs: 3\n  loss: binary_cross_entropy"),
        CSV.replace(",a\n", ",c\n", 1),
        7,
        "train.loss: binary_cross_entropy fits two classes and",
    ),
    "binary cross-entropy searched on three classes": (
        GOOD.replace(
            "space:\n",
            "space:\n  loss: {scale: categorical, choices: [auto, binary_cross_entropy]}\n",
        ),
        CSV.replace(",a\n", ",c\n", 1),
        8,
        "space.loss: binary_cross_entropy fits two classes and",
    ),
    "a database server that refuses the connection": (
        GOOD + "storage: {optuna: 'postgresql://me@127.0.0.1:1/optuna'}\n",
        CSV,
        12,
        "); check that the database server is up and that the URL is right",
    ),
    "a data error with SQLite storage creates no database": (
        GOOD + "storage: {optuna: 'sqlite:///optuna.db', mlflow: 'sqlite:///mlflow.db'}\n",
        CSV.replace(",b\n", ",a\n"),
        4,
        "has a single class",
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _launch(folder: Path, *args: str):
    result = CliRunner().invoke(app, ["launch", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("case", list(CORPUS))
def test_malformed_input_is_one_clear_error_and_changes_nothing(case, tmp_path, monkeypatch):
    text, data, line, expected = CORPUS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(text)
    for name, content in ({"data.csv": data} if isinstance(data, str) else data or {}).items():
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    before = _snapshot(tmp_path)

    result = _launch(tmp_path, "space.yaml", "--quiet")

    assert f"space.yaml:{line}:" in result.output
    assert expected in result.output.replace("\n", "")
    assert "hunter2" not in result.output
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "sweeps").exists()


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 30 + 25


def _existing_sweep(tmp_path: Path) -> Path:
    """A sweep folder as `launch` leaves it: the spec copy with absolute data paths."""
    folder = tmp_path / "sweeps" / "bad"
    claim(folder, Identity("bad", "0"))
    raw = yaml.safe_load(GOOD)
    raw["data"]["source"] = str(tmp_path / "data.csv")
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "data.csv").write_text(CSV)
    return folder


def test_a_changed_spec_is_refused_saying_what_differs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = _existing_sweep(tmp_path)
    (tmp_path / "space.yaml").write_text(_spec("high: 1.0e-1", "high: 2.0e-1"))
    before = _snapshot(tmp_path)
    result = _launch(tmp_path, "space.yaml", "--quiet")
    assert "different spec (changed: space)" in result.output
    assert _snapshot(tmp_path) == before and folder.is_dir()


@pytest.mark.parametrize(
    "store,content,expected",
    [
        ("optuna.journal", b'{"op_code": 0}\nnot json\n{"op_code": 1}\n', "Optuna storage cannot"),
        ("mlflow.db", b"SQLite format 3\x00" + b"\x07" * 300, "MLflow store cannot be read"),
    ],
)
def test_a_corrupted_store_is_one_clear_error(tmp_path, monkeypatch, store, content, expected):
    monkeypatch.chdir(tmp_path)
    folder = _existing_sweep(tmp_path)
    (folder / store).write_bytes(content)
    (tmp_path / "space.yaml").write_text(GOOD)
    before = _snapshot(tmp_path)
    assert expected in _launch(tmp_path, "space.yaml", "--quiet").output
    assert _snapshot(tmp_path) == before
    if store == "optuna.journal":
        shown = CliRunner().invoke(app, ["status", "bad"])
        assert shown.exit_code == 2 and expected in shown.output


@pytest.mark.parametrize(
    "edit,where",
    [
        (("trials: 4}", "trials: 4, sampler: gp}"), "11: stages.0.sampler"),
        (
            ("stages:\n  - {name: coarse, trials: 4}\n", "budget: {trials: 8, search: thorough}\n"),
            "10: budget.search",
        ),
    ],
)
def test_a_gp_stage_without_pytorch_is_refused_before_any_trial_runs(
    edit, where, tmp_path, monkeypatch
):
    """Optuna imports PyTorch at its GPSampler's first ask, after the start-up trials: without
    this check a sweep ran five trials and then died in the StudyServer with a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without PyTorch
    (tmp_path / "space.yaml").write_text(_spec(*edit))
    (tmp_path / "data.csv").write_text(CSV)
    before = _snapshot(tmp_path)

    result = _launch(tmp_path, "space.yaml", "--quiet")

    message = result.output.replace("\n", "")
    assert f"space.yaml:{where}: gp needs torch, not installed here: pip install torch" in message
    assert _snapshot(tmp_path) == before and not (tmp_path / "sweeps").exists()


def test_an_mlflow_server_that_refuses_is_said_at_once(tmp_path, monkeypatch):
    """A tracking server that refused the connection was retried by MLflow for 251 s, in
    silence, before the launch said so: now a plain HTTP request asks it first."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(GOOD + "storage: {mlflow: 'http://127.0.0.1:1'}\n")
    (tmp_path / "data.csv").write_text(CSV)
    before = _snapshot(tmp_path)
    result = _launch(tmp_path, "space.yaml", "--quiet")
    assert "http://127.0.0.1:1: the MLflow store cannot be read (URLError" in result.output
    assert _snapshot(tmp_path) == before


def test_a_malformed_ray_address_is_a_clear_error(tmp_path):
    """It ended in ValueError, exit 1. (Its own process: this one may hold a Ray already.)"""
    (tmp_path / "space.yaml").write_text(GOOD)
    (tmp_path / "data.csv").write_text(CSV)
    before = _snapshot(tmp_path)
    sweeper = str(Path(sys.executable).with_name("sweeper"))
    result = subprocess.run(
        [sweeper, "launch", "space.yaml", "--quiet", "--address", "garbage"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Ray cluster at garbage: Invalid address format" in result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before
    client = subprocess.run(  # Ray Client: it failed at the first task, a folder made
        [sweeper, "launch", "space.yaml", "--quiet", "--address", "ray://127.0.0.1:1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert client.returncode == 2, client.stderr
    assert "Ray Client (ray://) cannot run the sweeper's trial tasks" in client.stderr
    assert _snapshot(tmp_path) == before


def test_a_file_where_the_sweep_folder_would_be_is_a_clear_error(tmp_path, monkeypatch):
    """A file named `sweeps` was found only once Ray had started: FileExistsError, exit 1."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(GOOD)
    (tmp_path / "data.csv").write_text(CSV)
    (tmp_path / "sweeps").write_text("my notes")
    result = _launch(tmp_path, "space.yaml", "--quiet")
    assert f"{tmp_path / 'sweeps'} is a file, where the sweep's folder" in result.output
    assert (tmp_path / "sweeps").read_text() == "my notes"


def test_a_new_sqlite_store_named_through_a_variable_is_made_where_it_points(tmp_path, monkeypatch):
    """The check that a new SQLite file can be made looked in the URL's folder as written,
    `${STORES}` and all, which never exists: every such store was refused at launch."""
    from sweeper.run.sweep import prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "stores").mkdir()
    monkeypatch.setenv("SWEEPER_STORES", str(tmp_path / "stores"))
    url = "sqlite:///${SWEEPER_STORES}/optuna.db"
    (tmp_path / "space.yaml").write_text(GOOD + f"storage: {{optuna: '{url}'}}\n")
    (tmp_path / "data.csv").write_text(CSV)
    assert prepare(tmp_path / "space.yaml").spec.storage.optuna == url
    assert not (tmp_path / "sweeps").exists() and not any((tmp_path / "stores").iterdir())

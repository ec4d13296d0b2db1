"""Data files through pyarrow: formats, string labels, and errors that name the column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from sweeper.data.datasets import load_dataset
from sweeper.errors import UserError
from sweeper.spec.schema import DataSpec


def _table(m=120, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(m), rng.standard_normal(m)
    label = np.where(a + b > 0, "yes", "no")
    return pa.table({"a": a, "b": b, "note": ["x"] * m, "label": label})


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".feather", ".arrow"])
def test_formats_and_string_labels(tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)  # the data's relative paths are from here
    path = tmp_path / f"data{suffix}"
    table = _table()
    {
        ".parquet": pq.write_table,
        ".csv": pcsv.write_csv,
        ".feather": feather.write_feather,
        ".arrow": feather.write_feather,
    }[suffix](table, path)
    ds = load_dataset(DataSpec(source=path.name, target="label"))
    assert ds.classes == ["no", "yes"] and ds.n_classes == 2
    assert ds.features == ["a", "b"]  # the string column is not a default feature
    assert list(ds.left_out) == ["note"]  # and the launch says so
    assert ds.X_train.shape[0] == 2 and ds.X_train.dtype == np.float32
    # examples contiguous: the trainer gathers mini-batches from X.T without transposing a copy
    assert all(X.T.flags.c_contiguous for X in (ds.X_train, ds.X_dev, ds.X_test))
    m = ds.X_train.shape[1] + ds.X_dev.shape[1] + ds.X_test.shape[1]
    assert m == 120
    # standardization fitted on the training split only
    np.testing.assert_allclose(ds.X_train.mean(axis=1), 0, atol=1e-6)


def _write(tmp_path, table, name="d.parquet"):
    pq.write_table(table, tmp_path / name)
    return name


@pytest.mark.parametrize(
    "mutate,target,features,expected",
    [
        (lambda t: t, "lable", None, "target column 'lable' not found"),
        (lambda t: t, "label", ["a", "c"], "feature column 'c' not found"),
        (lambda t: t, "label", ["a", "note"], "feature column 'note' is not numeric"),
        (
            lambda t: t.set_column(0, "a", pa.array([np.nan] + [1.0] * 119)),
            "label",
            None,
            "feature column 'a' has 1 missing, NaN or infinite values (first at row 1)",
        ),
        (
            lambda t: t.set_column(1, "b", pa.array([1.0] * 5 + [np.inf] + [1.0] * 114)),
            "label",
            None,
            "feature column 'b' has 1 missing",
        ),
        (
            lambda t: t.set_column(3, "label", pa.array(["yes"] * 120)),
            "label",
            None,
            "single class",
        ),
        (lambda t: t.slice(0, 0), "label", None, "has no rows"),
        (lambda t: t.drop_columns(["a", "b"]), "label", None, "no numeric feature columns"),
        (  # a regression target became one class per value, with no word
            lambda t: t.set_column(3, "label", pa.array(np.linspace(0.5, 9.5, 120))),
            "label",
            None,
            "target column 'label' holds real numbers (e.g. 0.5) and the sweeper trains",
        ),
    ],
)
def test_bad_data_names_the_column(tmp_path, monkeypatch, mutate, target, features, expected):
    monkeypatch.chdir(tmp_path)  # the data's relative paths are from here
    name = _write(tmp_path, mutate(_table()))
    with pytest.raises(UserError) as info:
        load_dataset(DataSpec(source=name, target=target, features=features))
    assert expected in str(info.value)
    assert "d.parquet" in str(info.value)


def test_missing_and_unreadable_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the data's relative paths are from here
    with pytest.raises(UserError, match="not found"):
        load_dataset(DataSpec(source="nope.csv", target="y"))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="cannot read as parquet"):
        load_dataset(DataSpec(source="broken.parquet", target="y"))


def test_builtins_and_separate_test_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the data's relative paths are from here
    ds = load_dataset(DataSpec(source="builtin:digits"))
    assert ds.n_classes == 10 and ds.X_train.shape[0] == 64
    _write(tmp_path, _table(seed=0), "train.parquet")
    _write(tmp_path, _table(m=30, seed=1), "test.parquet")
    ds = load_dataset(DataSpec(source="train.parquet", test="test.parquet", target="label"))
    assert ds.X_test.shape[1] == 30


def test_a_file_with_20000_columns_loads_in_seconds(tmp_path):
    """Column lookups are one dict, not a scan of the names per column (quadratic: minutes)."""
    import time

    from sweeper.data.datasets import load_dataset
    from sweeper.spec.schema import DataSpec

    n, m = 20_000, 40
    values = np.random.default_rng(0).integers(0, 9, (m, n))
    lines = [",".join(f"f{i}" for i in range(n)) + ",label"]
    lines += [",".join(map(str, row)) + f",{'ab'[r % 2]}" for r, row in enumerate(values)]
    (tmp_path / "wide.csv").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    dataset = load_dataset(DataSpec(source=str(tmp_path / "wide.csv"), target="label"))
    assert time.monotonic() - started < 10  # the bar; ~2 s here
    assert dataset.X_train.shape[0] == n and len(dataset.features) == n


def test_numbers_stored_as_text_are_numbers_and_an_empty_file_is_said_so(tmp_path, monkeypatch):
    """A Parquet column of numbers written as strings was left out of the features (and
    refused by name, "row 0 holds '1045.0'"); a header-only file to predict on was "not
    numeric (null)"."""
    from sweeper.data.datasets import Preprocessing

    monkeypatch.chdir(tmp_path)
    table = _table()
    as_text = table.set_column(1, "b", pa.array([f"{v:.6f}" for v in table["b"].to_pylist()]))
    _write(tmp_path, as_text, "text.parquet")
    _write(tmp_path, table, "numbers.parquet")
    text = load_dataset(DataSpec(source="text.parquet", target="label"))
    numbers = load_dataset(DataSpec(source="numbers.parquet", target="label"))
    assert text.features == numbers.features == ["a", "b"]
    np.testing.assert_allclose(text.X_train, numbers.X_train, atol=1e-6)
    empty = pa.table({"a": pa.array([], pa.null()), "b": pa.array([], pa.null())})
    with pytest.raises(UserError, match=r"rows\.csv: the file has no rows"):
        Preprocessing(["a", "b"], ["no", "yes"]).inputs(empty, "rows.csv")

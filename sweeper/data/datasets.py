"""Datasets for a sweep: built-ins or a user's Parquet/CSV/Arrow file, split and standardized.

Files are read with pyarrow. The target column may hold strings (encoded as classes in sorted
order) or numbers; features default to every other numeric column. Standardization is fitted on
the training split only. The result is what a trial task receives from Ray's object store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeper.data.builtin import BUILTINS
from sweeper.errors import DataError
from sweeper.spec.schema import DataSpec


@dataclass(frozen=True)
class Preprocessing:
    """What a trained model needs around it to take raw rows and give labels: the feature
    columns in order, the standardization fitted on the training split (`mean`, `scale`; none
    when the spec turns it off) and the classes, as the data's own values (text, integers,
    booleans), in the order of the network's outputs. Stored as JSON beside a kept model."""

    features: list[str]
    classes: list[Any]
    mean: list[float] | None = None
    scale: list[float] | None = None

    @classmethod
    def fit(
        cls, X_train: np.ndarray, features: list[str], classes: list[Any], standardize: bool
    ) -> Preprocessing:
        if not standardize:
            return cls(features, classes)
        sigma = X_train.std(axis=0)
        sigma[sigma == 0] = 1.0  # constant features stay constant (0) instead of NaN
        return cls(features, classes, X_train.mean(axis=0).tolist(), sigma.tolist())

    def standardize(self, X: np.ndarray) -> np.ndarray:
        """(X − μ) / σ of rows X (m, n), as fitted on the training split."""
        if self.mean is None or self.scale is None:
            return X
        return (X - np.asarray(self.mean)) / np.asarray(self.scale)

    def inputs(self, table: pa.Table, source: str) -> np.ndarray:
        """The network's input X (n_x, m) float32 from raw rows; a missing or non-numeric
        feature column is a DataError naming it."""
        X = self.standardize(feature_matrix(table, self.features, source))
        return np.ascontiguousarray(X, dtype=np.float32).T

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> Preprocessing:
        return cls(**stored)


@dataclass(frozen=True)
class DataInput:
    """A file (or built-in) a sweep trains or tests on, as MLflow records a run's input dataset,
    so that sweeps on different data are told apart: `digest` hashes the values read (feature
    columns, labels, their names), not the file's bytes or path."""

    name: str  # the file's name, or the built-in's
    digest: str
    source_type: str  # MLflow's: "local" for a file, "code" for a built-in
    source: dict[str, Any]  # as MLflow's sources of that type: {"uri": …} or {"tags": …}
    columns: dict[str, str]  # column → its MLflow type: the features, then the target
    rows: int
    context: str  # "training" or "test"

    @classmethod
    def of(
        cls,
        source: str,
        X: np.ndarray,
        y: np.ndarray,
        classes: list[Any],
        features: list[str],
        target: str,
        context: str,
    ) -> DataInput:
        """The input of `X` (m, n) and labels `y` (indices into `classes`) read from `source`
        (a file's path, or `builtin:NAME`)."""
        digest = hashlib.sha256(json.dumps([features, target, classes], default=str).encode())
        digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
        if source.startswith("builtin:"):
            name = source.removeprefix("builtin:")
            where = ("code", {"tags": {"sweeper.builtin": name}})
        else:
            name, where = Path(source).name, ("local", {"uri": Path(source).resolve().as_uri()})
        return cls(
            name=name,
            digest=digest.hexdigest()[:16],
            source_type=where[0],
            source=where[1],
            columns={f: "double" for f in features} | {target: _mlflow_type(classes[0])},
            rows=len(y),
            context=context,
        )


def _mlflow_type(value: Any) -> str:
    """The MLflow column type of a label value (bool before int: a bool is an int)."""
    for kind, name in ((bool, "boolean"), (int, "long"), (float, "double")):
        if isinstance(value, kind):
            return name
    return "string"


@dataclass
class Dataset:
    """Splits in the trainer's layout: X (n_x, m) float32, y (m,) int labels.

    Each X is the transposed view of a row-major (m, n_x) array: the notes' shape, with every
    example contiguous in memory, which is what the trainer gathers mini-batches from (so it
    need not transpose the data again in every trial).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_dev: np.ndarray
    y_dev: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    preprocessing: Preprocessing  # what turns raw rows into X and outputs into labels
    inputs: list[DataInput] = dataclasses.field(default_factory=list)  # what it was read from
    # columns that are neither the target nor numeric, left out of the features found on their
    # own (name → type): said at launch, since a predictive boolean column went unnoticed
    left_out: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def classes(self) -> list[Any]:
        return self.preprocessing.classes

    @property
    def features(self) -> list[str]:
        return self.preprocessing.features


def read_table(path: Path) -> pa.Table:
    """A pyarrow Table from .parquet, .csv, .arrow/.feather/.ipc."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            # an empty cell is a missing value, whatever the column's type
            return pcsv.read_csv(
                path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True)
            )
        if suffix in (".arrow", ".feather", ".ipc"):
            import pyarrow.feather as feather

            return feather.read_table(path)
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found") from None
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: cannot read as {suffix[1:]}: {error}") from None
    raise DataError(f"{path}: unsupported data file type {suffix!r} (parquet, csv, arrow, feather)")


NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def _is_number(column: pa.ChunkedArray) -> bool:
    return pa.types.is_integer(column.type) or pa.types.is_floating(column.type)


def _as_numbers(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column whose every cell is a number (a Parquet file that stored them as strings),
    as float64; any other column as it is."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    if (
        column.length() == column.null_count
        or not pc.all(pc.match_substring_regex(column, NUMBER)).as_py()
    ):
        return column
    try:
        return pc.cast(pc.utf8_trim_whitespace(column), pa.float64())
    except pa.ArrowInvalid:  # a number Arrow does not read: said as not numeric, by name
        return column


def _stray_cell(column: pa.ChunkedArray) -> tuple[int, str] | None:
    """(row, text) of the first non-number in a text column that is mostly numbers, else None:
    one stray cell turns a CSV column into text, which must not drop the feature silently."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    numeric = pc.match_substring_regex(column, NUMBER)
    present = column.length() - column.null_count
    if (pc.sum(numeric).as_py() or 0) <= present // 2:
        return None
    row = pc.index(numeric, False).as_py()
    return row, column[row].as_py()


def table_to_arrays(
    table: pa.Table, target: str | None, features: list[str] | None, source: str
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(X (m, n), y labels, class names, feature names) with every problem naming its column.

    Columns are looked up in one dict, so a file with 20,000 columns costs no more per column
    than one with 20."""
    if table.num_rows == 0:
        raise DataError(f"{source}: the file has no rows")
    names = table.column_names
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1}) if len(names) < 1000 else "…"
        raise DataError(f"{source}: duplicate column names {twice}: each column needs its own")
    if target is None:
        raise DataError(f"{source}: data.target must name the label column", "data.target")
    if target not in index:
        raise DataError(
            f"{source}: target column {target!r} not found; columns: {_some(names)}", "data.target"
        )
    if features is None:
        features = []
        for i, name in enumerate(names):
            if name == target:
                continue
            column = _as_numbers(table.column(i))
            if _is_number(column):
                features.append(name)
            elif (stray := _stray_cell(column)) is not None:
                raise DataError(
                    f"{source}: column {name!r} holds numbers but row {stray[0] + 1} holds "
                    f"{stray[1]!r}: fix that cell, or list the features to use in data.features"
                )
        if not features:
            raise DataError(f"{source}: no numeric feature columns besides target {target!r}")
    y, classes = _labels(table.column(index[target]), target, source)
    return feature_matrix(table, features, source), y, classes, list(features)


def feature_matrix(table: pa.Table, features: list[str], source: str) -> np.ndarray:
    """X (m, n) float64 of the named columns, in that order; each problem names its column."""
    if table.num_rows == 0:  # its columns have no type: "not numeric (null)" misled
        raise DataError(f"{source}: the file has no rows")
    names = table.column_names
    index = {name: i for i, name in enumerate(names)}
    columns = []
    for name in features:
        if name not in index:
            raise DataError(
                f"{source}: feature column {name!r} not found; columns: {_some(names)}",
                "data.features",
            )
        column = _as_numbers(table.column(index[name]))
        if not _is_number(column):
            stray = _stray_cell(column)
            where = f": row {stray[0] + 1} holds {stray[1]!r}" if stray else ""
            raise DataError(
                f"{source}: feature column {name!r} is not numeric ({column.type}){where}",
                "data.features",
            )
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{source}: feature column {name!r} has {int(bad.sum())} missing, NaN or infinite "
                f"values (first at row {row + 1})"
            )
        columns.append(values)
    return np.column_stack(columns).reshape(table.num_rows, len(features))


def _labels(labels: pa.ChunkedArray, target: str, source: str) -> tuple[np.ndarray, list[Any]]:
    """Class indices of a text, integer or boolean target column, and the classes (the
    column's own values, in sorted order)."""
    kind = labels.type
    if pa.types.is_dictionary(kind):
        labels, kind = labels.cast(kind.value_type), kind.value_type
    usable = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer,
              pa.types.is_boolean, pa.types.is_floating)  # fmt: skip
    if not any(check(kind) for check in usable):
        raise DataError(
            f"{source}: target column {target!r} holds {kind} values; a label is text, an "
            "integer or a boolean",
            "data.target",
        )
    missing = labels.null_count
    if pa.types.is_floating(kind):
        missing += pc.sum(pc.is_nan(labels)).as_py() or 0
    if missing:
        raise DataError(
            f"{source}: target column {target!r} has {missing} missing or NaN values",
            "data.target",
        )
    classes = sorted(pc.unique(labels).to_pylist(), key=str)
    fractional = [c for c in classes if isinstance(c, float) and not c.is_integer()]
    if fractional:  # a regression target: it became one class per value, trained as such
        raise DataError(
            f"{source}: target column {target!r} holds real numbers (e.g. {fractional[0]!r}) "
            "and the sweeper trains classifiers: a label is text, an integer or a boolean",
            "data.target",
        )
    if len(classes) < 2:
        raise DataError(
            f"{source}: target column {target!r} has a single class {classes}; need ≥ 2",
            "data.target",
        )
    position = {c: i for i, c in enumerate(classes)}
    y = np.array([position[v] for v in labels.to_pylist()], dtype=np.int64)
    return y, classes


def _some(names: list[str]) -> str:
    return str(names) if len(names) <= 20 else f"{names[:20]} and {len(names) - 20} more"


def load_dataset(spec: DataSpec) -> Dataset:
    """Load, split and standardize the data a spec names (a relative path from the working
    folder: `sweep.prepare` makes a space.yaml's paths absolute first)."""
    test_arrays, target, left_out = None, spec.target or "label", {}
    if spec.source.startswith("builtin:"):
        name = spec.source.removeprefix("builtin:")
        if name not in BUILTINS:
            raise DataError(f"unknown built-in {name!r}; choose one of {sorted(BUILTINS)}")
        X, y = BUILTINS[name](seed=spec.split.seed)
        classes, features = np.unique(y).tolist(), [f"x{i}" for i in range(X.shape[1])]
        inputs = [DataInput.of(spec.source, X, y, classes, features, target, "training")]
    else:
        path = Path(spec.source)
        table = read_table(path)
        X, y, classes, features = table_to_arrays(table, spec.target, spec.features, str(path))
        if spec.features is None:
            left_out = {
                field.name: str(field.type)
                for field in table.schema
                if field.name != spec.target and field.name not in features
            }
        inputs = [DataInput.of(str(path), X, y, classes, features, target, "training")]
        if spec.test:
            test_path = Path(spec.test)
            if test_path.exists() and path.exists() and test_path.samefile(path):
                raise DataError(
                    f"{test_path} is the training file too: a test set must be data the model "
                    "never saw (leave data.test out to carve one from the training file)",
                    "data.test",
                )
            try:
                X_t, y_t, test_classes, _ = table_to_arrays(
                    read_table(test_path), spec.target, features, str(test_path)
                )
            except DataError as error:
                raise DataError(str(error), "data.test") from None
            unknown = sorted(set(test_classes) - set(classes))
            if unknown:
                raise DataError(
                    f"{test_path}: target column {spec.target!r} has classes "
                    f"not in the training file: {unknown}",
                    "data.test",
                )
            remap = np.array([classes.index(c) for c in test_classes])
            test_arrays = (X_t, remap[y_t])
            inputs.append(
                DataInput.of(str(test_path), *test_arrays, classes, features, target, "test")
            )
    dataset = split_and_standardize(X, y, classes, features, spec, test_arrays)
    return dataclasses.replace(dataset, inputs=inputs, left_out=left_out)


def split_and_standardize(
    X: np.ndarray,
    y: np.ndarray,
    classes: list[Any],
    features: list[str],
    spec: DataSpec,
    test_arrays: tuple[np.ndarray, np.ndarray] | None,
) -> Dataset:
    rng = np.random.default_rng(spec.split.seed)
    order = rng.permutation(len(y))
    m = len(y)
    n_test = 0 if test_arrays is not None else int(round(spec.split.test * m))
    n_dev = int(round(spec.split.dev * m))
    if m - n_test - n_dev < 1 or n_dev < 1:
        raise DataError(
            f"{m} rows are too few for the split dev={spec.split.dev} test={spec.split.test}",
            "data.split",
        )
    test, dev, train = order[:n_test], order[n_test : n_test + n_dev], order[n_test + n_dev :]
    X_test, y_test = test_arrays if test_arrays is not None else (X[test], y[test])
    X_train, X_dev = X[train], X[dev]
    preprocessing = Preprocessing.fit(X_train, features, classes, spec.standardize)
    X_train, X_dev, X_test = (preprocessing.standardize(A) for A in (X_train, X_dev, X_test))

    def layout(A: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(A, dtype=np.float32).T  # (n_x, m), examples contiguous

    return Dataset(
        layout(X_train),
        y[train],
        layout(X_dev),
        y[dev],
        layout(X_test),
        y_test,
        n_classes=len(classes),
        preprocessing=preprocessing,
    )

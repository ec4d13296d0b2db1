"""One row per trial, to Parquet or CSV through pyarrow, for analysis outside the sweeper.

Columns: stage, number, state, value, epochs, duration_s, node_id, reason, retry_of, then one
`param.<name>` column per trainer option and one `metric.<name>` column per final metric.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from sweeper.errors import UserError
from sweeper.records import TrialRecord
from sweeper.results.view import SweepView

FIXED = ("stage", "number", "state", "value", "epochs", "duration_s", "node_id", "reason")
FORMATS = (".parquet", ".csv")


def to_table(view: SweepView) -> pa.Table:
    def flat(row: TrialRecord) -> dict[str, Any]:
        return (
            {k: getattr(row, k) for k in (*FIXED, "retry_of")}
            | {f"param.{k}": v for k, v in row.params.items()}
            | {f"metric.{k}": v for k, v in row.metrics.items()}
        )

    rows = [flat(r) for r in view.rows]
    names = list(dict.fromkeys(k for r in rows for k in r)) or [*FIXED, "retry_of"]
    return pa.table({n: _column([r.get(n) for r in rows]) for n in names})


def _column(values: list[Any]) -> pa.Array:
    """One column; JSON text where lists and single values mix (a categorical of a width and
    per-layer widths, `choices: [8, [16, 8]]`), which Arrow cannot hold in one typed column."""
    lists = {isinstance(v, list) for v in values if v is not None}
    if len(lists) == 2:
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    return pa.array(values)


def write(view: SweepView, path: Path) -> int:
    """Write the sweep's trials to `path` (.parquet or .csv); returns the row count."""
    return write_table(to_table(view), path)


def check_output(path: Path, overwrite: bool, formats: tuple[str, ...] = FORMATS) -> None:
    """Refuse, before any work, a file a command cannot or must not write: another format, a
    folder, one in a folder that does not exist, or one that exists and `overwrite` (--force)
    was not given: the sweeper writes over nothing it did not make unless told to."""
    if path.suffix not in formats:
        raise UserError(f"{path}: the sweeper writes {' or '.join(formats)} files")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; name a file in it")
    if not path.parent.is_dir():
        raise UserError(f"{path}: no folder {path.parent} to write it in")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise UserError(f"{path}: exists; --force writes over it")


def write_table(table: pa.Table, path: Path) -> int:
    """`table` to `path`, a .parquet or .csv file `check_output` has passed. Written beside it
    and renamed, so that a failure leaves no partial file. CSV has no lists: a list-valued
    column (hidden_units: [64, 64]) is written as JSON text, where pyarrow refused the table
    and left an empty file."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        if path.suffix == ".parquet":
            pq.write_table(table, partial)
        else:
            pcsv.write_csv(_lists_as_json(table), partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return table.num_rows


def _lists_as_json(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            values = [None if v is None else json.dumps(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(values, pa.string()))
    return table

"""`sweeper export`'s writer (sweeper/results/export.py)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from sweeper.records import TrialRecord
from sweeper.results.export import write, write_table
from sweeper.results.view import SweepView


def test_a_list_option_is_json_text_in_csv_and_a_list_in_parquet(tmp_path):
    """With hidden_units: [64, 64] the CSV export raised ArrowInvalid (exit 1) and left an
    empty file behind, which then blocked the next export as 'exists'."""
    table = pa.table({"number": [0, 1], "param.hidden_units": [[64, 64], [32]]})
    assert write_table(table, tmp_path / "trials.csv") == 2
    read = pcsv.read_csv(tmp_path / "trials.csv").to_pylist()
    assert [r["param.hidden_units"] for r in read] == ["[64, 64]", "[32]"]
    write_table(table, tmp_path / "trials.parquet")
    assert pq.read_table(tmp_path / "trials.parquet").column(1).to_pylist() == [[64, 64], [32]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.csv", "trials.parquet"]


def test_a_categorical_of_a_width_and_per_layer_widths_is_exported_as_json_text(tmp_path):
    """`hidden_units: {scale: categorical, choices: [8, [16, 8]]}` is a valid space and sweeps,
    but `sweeper export` failed on it (exit 1, ArrowInvalid: cannot mix list and non-list)."""
    rows = [
        TrialRecord("s1", n, "COMPLETE", 0.8, {"hidden_units": h}, {"dev_accuracy": 0.8}, [{}])
        for n, h in enumerate([8, [16, 8], None])
    ]
    view = SweepView(None, {}, rows)  # the export reads the rows only
    for suffix in (".csv", ".parquet"):
        assert write(view, tmp_path / f"trials{suffix}") == 3
    read = pcsv.read_csv(tmp_path / "trials.csv").column("param.hidden_units").to_pylist()
    assert read == ["8", "[16, 8]", ""]  # a trial without it: an empty cell
    parquet = pq.read_table(tmp_path / "trials.parquet").column("param.hidden_units")
    assert parquet.to_pylist() == ["8", "[16, 8]", None]

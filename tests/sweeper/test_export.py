"""`sweeper export`'s writer (sweeper/results/export.py)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from sweeper.results.export import write_table


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

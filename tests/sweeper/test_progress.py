"""`sweeper launch`'s live progress table (sweeper/cli/commands.py)."""

from __future__ import annotations

import io

from rich.console import Console

from sweeper.cli.commands import _Display
from sweeper.run.dispatch import StageProgress


def test_the_last_table_ends_its_line_when_the_output_is_a_file():
    """Rich ends a live display with a newline on a terminal only; in a log file the line after
    the table (`best: …`) ran into its bottom border."""
    out = io.StringIO()
    display = _Display(Console(file=out, width=120))
    display.live.start()
    display.update(StageProgress("coarse", 4, {"complete": 3, "pruned": 1, "failed": 0}))
    display.stop()
    display.live.console.print("best: stage coarse trial 2")
    lines = out.getvalue().splitlines()
    assert lines[-1] == "best: stage coarse trial 2"
    assert lines[-2].startswith("└") and lines[-2].endswith("┘")
    assert any(line.startswith("│ coarse │ 4/4 ") for line in lines)

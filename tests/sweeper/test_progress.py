"""`sweeper launch`'s live progress table (sweeper/cli/commands.py)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from sweeper.cli.display import Display
from sweeper.records import StageProgress


def _clocked() -> tuple[list[float], io.StringIO, Display]:
    """A live table drawing into a string, on a clock the test turns by hand (now[0])."""
    now = [100.0]
    out = io.StringIO()
    display = Display(Console(file=out, width=120), log_every_s=1e9, clock=lambda: now[0])
    display.live.start()
    return now, out, display


def test_the_last_table_ends_its_line_when_the_output_is_a_file():
    """Rich ends a live display with a newline on a terminal only; in a log file the line after
    the table (`best: …`) ran into its bottom border."""
    out = io.StringIO()
    display = Display(Console(file=out, width=120))
    display.live.start()
    display.update(StageProgress("coarse", 4, {"complete": 3, "pruned": 1, "failed": 0}))
    display.stop()
    display.live.console.print("best: stage coarse trial 2")
    lines = out.getvalue().splitlines()
    assert lines[-1] == "best: stage coarse trial 2"
    assert lines[-2].split()[:2] == ["coarse", "4/4"]  # the table's last line, whole


def test_the_table_fits_80_columns_whole():
    """A terminal or a log of 80 columns showed "comple…", "runni…" and "elaps…", and wrapped
    the ETA: nine ruled columns need more than 80."""
    out = io.StringIO()
    display = Display(Console(file=out, width=80))
    display.live.start()
    display.start -= 1_234  # four-digit seconds elapsed, five of ETA
    counts = {"complete": 600, "pruned": 30, "failed": 10}
    display.update(StageProgress("coarse-stage-1", 1000, counts, running=2, best=-1.234e-05))
    display.update(StageProgress("fine", 64, {"complete": 6, "pruned": 0, "failed": 0}, 2, 0.9731))
    display.stop()
    lines = out.getvalue().splitlines()
    assert "…" not in out.getvalue()
    header = next(line for line in lines if line.split()[:1] == ["stage"])
    names = ["stage", "done", "complete", "pruned", "failed", "running", "best", "elapsed", "ETA"]
    assert header.split() == names
    rows = [line.split() for line in lines if line.split()[:1] in (["coarse-stage-1"], ["fine"])]
    assert [row[:7] for row in rows] == [
        ["coarse-stage-1", "630/1000", "600", "30", "10", "2", "-1.234e-05"],
        ["fine", "6/64", "6", "0", "0", "2", "0.9731"],
    ]


def test_trials_run_again_are_said_below_the_table_which_still_fits_80_columns():
    """'10 (10 run again)' in the failed column cut the stage name to "coarse-st…" and wrapped
    the cell over two lines in 80 columns."""
    out = io.StringIO()
    display = Display(Console(file=out, width=80))
    display.live.start()
    display.start -= 1_234
    counts = {"complete": 600, "pruned": 30, "failed": 10}
    display.update(StageProgress("coarse-stage-1", 1000, counts, 2, -1.234e-05, run_again=10))
    display.stop()
    assert "…" not in out.getvalue()
    row = next(line.split() for line in out.getvalue().splitlines() if "coarse-stage-1" in line)
    assert row[:6] == ["coarse-stage-1", "630/1000", "600", "30", "10", "2"]
    assert "failed: 10 lost or interrupted, run again" in " ".join(out.getvalue().split())


def test_a_log_file_gets_a_progress_line_as_trials_end_and_when_a_stage_is_done():
    """A live table reaches a file once, at the end: a long sweep's log shows its progress in
    lines, at most every `log_every_s` seconds and when a stage's last trial ends."""
    out = io.StringIO()
    display = Display(Console(file=out, width=120), log_every_s=0.0)
    display.live.start()
    for done in (1, 2):
        counts = {"complete": done, "pruned": 0, "failed": 0}
        display.update(StageProgress("coarse", 2, counts, running=2 - done, best=0.5 * done))
    display.stop()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("coarse: 1/2 done (1 complete, 0 pruned, 0 failed), 1 running, ")
    assert lines[1].startswith("coarse: 2/2 done (2 complete, 0 pruned, 0 failed), 0 running, ")
    assert "best 0.5, " in lines[0] and "best 1, " in lines[1]
    assert "sweep progress" in lines[2]  # then the final table

    quiet = io.StringIO()
    display = Display(Console(file=quiet, width=120), log_every_s=3600.0)
    display.live.start()
    display.update(StageProgress("coarse", 2, {"complete": 1, "pruned": 0, "failed": 0}))
    display.update(StageProgress("coarse", 2, {"complete": 1, "pruned": 1, "failed": 0}))
    display.stop()
    logged = [line for line in quiet.getvalue().splitlines() if line.startswith("coarse:")]
    assert logged == [line for line in logged if line.startswith("coarse: 2/2 done")] != []


def test_a_finished_stage_shows_its_own_time_and_the_next_one_counts_from_its_end():
    """The last table showed every stage's elapsed as the whole sweep's (coarse 19 s, while its
    own progress line had said 15 s)."""
    now, out, display = _clocked()
    display.update(StageProgress("coarse", 2, {"complete": 0, "pruned": 0, "failed": 0}))
    now[0] = 115.0
    display.update(StageProgress("coarse", 2, {"complete": 2, "pruned": 0, "failed": 0}))
    display.update(StageProgress("fine", 4, {"complete": 0, "pruned": 0, "failed": 0}))
    now[0] = 119.0
    display.update(StageProgress("fine", 4, {"complete": 1, "pruned": 0, "failed": 0}))
    display.stop()
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines() if line.split()}
    assert rows["coarse"][-2:] == ["15s", "0s"]
    assert rows["fine"][-2:] == ["4s", "12s"]  # 4 s for 1 of 4: 12 s to go


def test_elapsed_counts_on_between_trials_and_no_eta_is_made_up_before_one_ends():
    """The table was drawn only when a trial ended: a minute into a stage whose first trials
    still ran it said "elapsed 0s, ETA 0s" (and 7 s into a sweep, "ETA 69s" from no trial)."""
    now, out, display = _clocked()
    display.update(StageProgress("coarse", 4, {"complete": 0, "pruned": 0, "failed": 0}, 2))
    now[0] = 160.0
    display.stop()
    row = next(line.split() for line in out.getvalue().splitlines() if "coarse" in line)
    assert row == ["coarse", "0/4", "0", "0", "0", "2", "60s"]


@pytest.mark.parametrize(
    ("opens_at", "done_before", "one_more_at", "shown"),
    [
        # the table's clock started before Ray did: 7 s of Ray's start counted as the first
        # stage's, and 2 s into its training, 1 of 10 done, it said 9s, ETA 81s
        (107.0, 0, 109.0, ["2s", "18s"]),
        # a stage resumed at 5 of 10 took its rate from all 5 trials done before: 10 s for its
        # first new one read ETA 7s (10 s / 6 done × 4), where 4 more at that rate take 40 s
        (100.0, 5, 110.0, ["10s", "40s"]),
    ],
    ids=["the first stage's time starts when it opens", "a resumed stage's rate is this launch's"],
)
def test_elapsed_and_eta_count_this_launchs_time_and_trials(
    opens_at, done_before, one_more_at, shown
):
    now, out, display = _clocked()
    now[0] = opens_at
    display.update(StageProgress("coarse", 10, _counts(done_before), 2))
    now[0] = one_more_at
    display.update(StageProgress("coarse", 10, _counts(done_before + 1), 2))
    display.stop()
    row = next(line.split() for line in out.getvalue().splitlines() if "coarse" in line)
    assert row[-2:] == shown


def _counts(complete: int) -> dict[str, int]:
    return {"complete": complete, "pruned": 0, "failed": 0}

"""The HTML report's text (sweeper/results/report.py), from hand-built records."""

from __future__ import annotations

from sweeper.records import TrialRecord
from sweeper.results.report import render
from sweeper.results.view import SweepView
from tests.sweeper.test_server import SPEC


def record(number: int, state: str, reason: str | None = None, retry_of: int | None = None):
    value = 0.9 if state == "COMPLETE" else None
    return TrialRecord("coarse", number, state, value, {"learning_rate": 0.01}, {}, [], None,
                       None, None, reason, retry_of)  # fmt: skip


def test_the_reports_counts_say_which_failures_ran_again_as_status_does():
    """Two trials lost, one of them run again as trial 2: the report said "2 failed" where
    `status` said "failed 2 (1 run again)"."""
    rows = [record(0, "FAIL", "lost"), record(1, "FAIL", "lost"), record(2, "COMPLETE", None, 0)]
    page = render(SweepView(SPEC, {"coarse": {}}, rows), {})
    assert "coarse: 1 complete, 0 pruned, 2 failed (1 run again)" in page

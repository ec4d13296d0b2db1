"""`budget.hours`: each stage gets the share of the time left that its trials are of the trials
left, so time one stage leaves unused goes to the next."""

from __future__ import annotations

import time

import pytest

from sweeper.run.deadline import Deadline


def test_a_stage_gets_its_trials_share_of_the_time_left():
    now = time.monotonic()
    deadline = Deadline(now + 100.0)
    assert deadline.stage_end(10, 40) == pytest.approx(now + 25.0, abs=0.5)
    assert deadline.stage_end(40, 40) == pytest.approx(now + 100.0, abs=0.5)  # the last stage
    assert not deadline.passed()


def test_a_spent_deadline_leaves_no_time():
    deadline = Deadline(time.monotonic() - 1.0)
    assert deadline.passed()
    assert deadline.stage_end(3, 6) <= time.monotonic()
    assert Deadline.after(1 / 3600).end == pytest.approx(time.monotonic() + 1.0, abs=0.5)

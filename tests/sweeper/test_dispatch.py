"""The driver's stage loop rules that need no Ray (sweeper.run.dispatch)."""

from __future__ import annotations

import pytest

from sweeper.records import StageProgress
from sweeper.run.dispatch import StageRun
from sweeper.spec.schema import Objective, Resources


def test_only_this_launchs_errors_count_toward_the_failure_cap():
    """A stage opened after a Ctrl-C holds its interrupted trials as FAIL (they run again):
    they are not errors. Before, 12 of them plus one error ended a stage of 20."""
    opened = StageProgress("s", 20, {"complete": 2, "pruned": 0, "failed": 12})
    stage = StageRun(
        server=None,  # _check_failures asks nothing of the server
        index=0,
        fixed={},
        dataset_ref=None,
        objective=Objective(metric="dev_accuracy", direction="maximize"),
        maximize=True,
        resources=Resources(),
        progress=opened,
    )
    for _ in range(10):  # the cap: more than max(3, 20 // 2) errors
        stage._check_failures("ValueError: boom")
    with pytest.raises(RuntimeError, match="stage s: 11 trials failed; last error:\nValueError"):
        stage._check_failures("ValueError: boom")

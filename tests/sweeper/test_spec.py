"""space.yaml loading: the shipped examples load, all problems at once, the fingerprint.

The malformed-input corpus (file:line: field errors through the CLI) is in test_bad_input.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper import spec
from sweeper.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
GOOD = """\
name: t
data:
  source: builtin:flower
train:
  epochs: 3
space:
  learning_rate: {scale: log, low: 1.0e-3, high: 1.0e-1}
  beta: {scale: one_minus_log, low: 0.9, high: 0.999}
stages:
  - {name: coarse, trials: 4}
"""


@pytest.mark.parametrize(
    "path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_search_spaces_load(path):
    assert spec.load(path).stages


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        spec.load(path)
    return str(info.value)


def test_every_problem_is_listed_at_once(tmp_path):
    text = GOOD.replace("low: 1.0e-3", "low: 0").replace("trials: 4", "trials: 0")
    message = _error(tmp_path, text)
    assert len(message.splitlines()) == 2


def test_fingerprint_ignores_storage_but_not_space(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(GOOD)
    a = spec.load(path)
    path.write_text(GOOD + "resources: {concurrency: 1}\n")
    assert spec.load(path).fingerprint() == a.fingerprint()
    path.write_text(GOOD.replace("1.0e-1", "2.0e-1"))
    assert spec.load(path).fingerprint() != a.fingerprint()

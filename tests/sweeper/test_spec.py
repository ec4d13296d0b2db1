"""space.yaml loading: the shipped examples load; malformed files give file:line: field errors."""

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


# (change to GOOD, expected line, expected text in the message)
CASES = {
    "unknown top key": (GOOD + "stagez: []\n", 11, "stagez: unknown key (did you mean 'stages'?)"),
    "unknown data key": (
        GOOD.replace("  source:", "  sorce: x\n  source:"),
        3,
        "data.sorce: unknown key (did you mean 'source'?)",
    ),
    "unknown trainer option": (
        GOOD.replace("  epochs: 3", "  epoch: 3"),
        5,
        "unknown trainer option 'epoch' (did you mean 'epochs'?)",
    ),
    "unknown space name": (
        GOOD.replace("  beta:", "  bta:"),
        8,
        "unknown trainer option 'bta' (did you mean 'beta'?)",
    ),
    "low > high": (
        GOOD.replace("low: 1.0e-3, high: 1.0e-1", "low: 0.5, high: 0.1"),
        7,
        "space.learning_rate: low must be < high",
    ),
    "log low <= 0": (
        GOOD.replace("low: 1.0e-3", "low: 0"),
        7,
        "space.learning_rate: a log scale needs low > 0",
    ),
    "beta outside (0,1)": (
        GOOD.replace("high: 0.999", "high: 1.5"),
        8,
        "space.beta: one_minus_log is for β in (0, 1)",
    ),
    "wrong type": (
        GOOD.replace("trials: 4", "trials: four"),
        10,
        "stages.0.trials: Input should be a valid integer",
    ),
    "bad scale": (
        GOOD.replace("scale: log,", "scale: logarithmic,"),
        7,
        "space.learning_rate.scale",
    ),
    "empty space": (
        GOOD.split("space:")[0] + "space: {}\nstages:\n  - {name: c, trials: 1}\n",
        6,
        "space is empty",
    ),
    "missing data": (
        GOOD.replace("data:\n  source: builtin:flower\n", ""),
        1,
        "data: Field required",
    ),
    "bad sampler": (GOOD.replace("trials: 4}", "trials: 4, sampler: grd}"), 10, "stages.0.sampler"),
    "zoom on first stage": (
        GOOD.replace("trials: 4}", "trials: 4, zoom: {top: 0.2}}"),
        10,
        "first stage has no earlier stage",
    ),
    "negative split": (
        GOOD.replace("  source: builtin:flower", "  source: builtin:flower\n  split: {dev: -0.1}"),
        4,
        "data.split.dev",
    ),
    "categorical without choices": (
        GOOD.replace("{scale: one_minus_log, low: 0.9, high: 0.999}", "{scale: categorical}"),
        8,
        "categorical needs a non-empty",
    ),
    "both fixed and searched": (
        GOOD.replace("  epochs: 3", "  epochs: 3\n  beta: 0.9"),
        9,
        "both fixed in `train` and searched",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_spec_names_file_line_and_field(case, tmp_path):
    text, line, expected = CASES[case]
    message = _error(tmp_path, text)
    assert str(tmp_path / "space.yaml") in message
    assert f":{line}:" in message
    assert expected in message


def test_pow2_bounds_must_be_powers_of_two(tmp_path):
    text = GOOD.replace("stages:", "  batch_size: {scale: pow2, low: 30, high: 256}\nstages:")
    assert "space.batch_size: pow2 bounds must be powers of two" in _error(tmp_path, text)


def test_yaml_syntax_error_has_line(tmp_path):
    message = _error(tmp_path, GOOD.replace("  epochs: 3", "  epochs: [3"))
    assert "YAML syntax" in message and ":6:" in message


def test_python_object_tags_are_refused(tmp_path):
    message = _error(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    assert "YAML syntax" in message


def test_every_problem_is_listed_at_once(tmp_path):
    text = GOOD.replace("low: 1.0e-3", "low: 0").replace("trials: 4", "trials: 0")
    message = _error(tmp_path, text)
    assert len(message.splitlines()) == 2


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        spec.load(tmp_path / "nope.yaml")


def test_fingerprint_ignores_storage_but_not_space(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(GOOD)
    a = spec.load(path)
    path.write_text(GOOD + "resources: {concurrency: 1}\n")
    assert spec.load(path).fingerprint() == a.fingerprint()
    path.write_text(GOOD.replace("1.0e-1", "2.0e-1"))
    assert spec.load(path).fingerprint() != a.fingerprint()

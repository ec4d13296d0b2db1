"""`import sweeper` offers every public function of sweeper.api, loaded on first use."""

from __future__ import annotations

import inspect
import subprocess
import sys

from typer.testing import CliRunner

import sweeper
from sweeper import api
from sweeper.cli.commands import app
from sweeper.run.ownership import Identity, claim


def test_every_public_api_function_is_offered_by_the_package():
    public = {
        name
        for name, value in vars(api).items()
        if inspect.isfunction(value) and value.__module__ == api.__name__ and name[0] != "_"
    }
    assert public == set(sweeper.API)
    assert all(getattr(sweeper, name) is getattr(api, name) for name in public)


def test_importing_the_package_does_not_load_the_api():
    code = "import sys, sweeper; print('sweeper.api' in sys.modules, 'ray' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == ["False", "False"]


def test_list_says_a_folder_it_cannot_read_is_unreadable_in_json_too(tmp_path):
    """`sweeper list` printed "unreadable" for it, but `list --json` gave "state": "stopped"
    with 0 of 0 trials finished, as if it were a sweep stopped before its first trial."""
    broken = tmp_path / "sweeps" / "broken"
    claim(broken, Identity("broken", "0"))
    (broken / "spec.yaml").write_text("name: [unclosed\n")
    (listed,) = api.list_sweeps(tmp_path)
    assert listed.to_json()["state"] == "unreadable" and "YAML" in listed.to_json()["error"]


def test_list_keeps_its_columns_aligned_past_a_30_character_name(tmp_path, monkeypatch):
    """Names were padded to 30 characters: a longer one (up to 100 are allowed) pushed its
    state and folder right of every other line's."""
    for name in ("short", "a-sweep-name-of-forty-characters-exactly"):
        claim(tmp_path / "sweeps" / name, Identity(name, "0"))
        (tmp_path / "sweeps" / name / "spec.yaml").write_text("name: [unclosed\n")
    monkeypatch.chdir(tmp_path)
    listed = CliRunner().invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    lines = [line for line in listed.output.splitlines() if "unreadable" in line]
    assert len(lines) == 2 and len({line.index("unreadable") for line in lines}) == 1, lines

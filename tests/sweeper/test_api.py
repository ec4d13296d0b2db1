"""`import sweeper` offers every public function of sweeper.api, loaded on first use."""

from __future__ import annotations

import inspect
import subprocess
import sys

import sweeper
from sweeper import api


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

"""Shared fixtures: small, seeded data and a float64 backend for exact checks."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from model import get_backend


def pytest_sessionstart(session: pytest.Session) -> None:
    """Ctrl-C as a terminal gives it, whoever started the suite: a shell starts a background
    job (`… &`, as CI scripts may) with SIGINT ignored, every process inherits that, and the
    CLIs that the tests stop with SIGINT (`sweeper ui`, panda `train`) would never stop. A
    handled signal is reset to its default in a new program, an ignored one is not."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def backend64():
    return get_backend("numpy", dtype="float64")


@pytest.fixture
def rng():
    return np.random.default_rng(0)

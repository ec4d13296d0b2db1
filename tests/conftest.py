"""Shared fixtures: small, seeded data and a float64 backend for exact checks."""

from __future__ import annotations

import numpy as np
import pytest

from model import get_backend


@pytest.fixture
def backend64():
    return get_backend("numpy", dtype="float64")


@pytest.fixture
def rng():
    return np.random.default_rng(0)

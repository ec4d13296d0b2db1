"""A real local Ray instance shared by the end-to-end tests of one session."""

from __future__ import annotations

import pytest
import ray


@pytest.fixture(scope="session")
def ray_local():
    ray.init(
        address="local",  # our own, never another test's cluster running on this machine
        _node_ip_address="127.0.0.1",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()

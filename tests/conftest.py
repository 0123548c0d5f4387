"""Shared test configuration: hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray (2 CPUs) for every integration and API test of the session."""
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="rlm-tests",
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()

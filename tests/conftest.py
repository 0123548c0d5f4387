"""Shared test configuration: hypothesis profiles (see ``tests/hypothesis_profiles.py``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from tests.hypothesis_profiles import register_profiles, select_profile

if TYPE_CHECKING:
    from rlm.testing.postgres import ThrowawayPostgres

register_profiles()
settings.load_profile(select_profile(os.environ))


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray (2 CPUs) for every integration and API test of the session.

    The Serve proxy of the API tests runs the proxy guard, as under ``rlm serve``: its
    callback is named in the environment every process of this Ray inherits.
    """
    import ray

    from serve_app.guard import enable

    enable()

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """One throwaway PostgreSQL 15 on loopback for the session (never skipped: CI installs it)."""
    from rlm.testing.postgres import ThrowawayPostgres

    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: ThrowawayPostgres, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of the session server for one test."""
    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return postgres_server.database_url(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The state store a parametrised test runs on: ``None`` (SQLite files under the test's
    ``tmp_path``) or a fresh, migrated database of the session's PostgreSQL."""
    if request.param == "sqlite":
        return None
    from rlm.db.connect import ensure_schema

    url: str = request.getfixturevalue("postgres_url")
    ensure_schema(url)
    return url

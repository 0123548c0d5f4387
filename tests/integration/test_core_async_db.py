"""The engine core on PostgreSQL awaits its hot path's round trips instead of blocking its loop.

A real engine (the session's Ray, its own state directory and a database of the session's
PostgreSQL): another connection holds a lock that stalls the INSERT of a new task's record;
while the core waits for that statement, it still answers another caller's ``status``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from pydantic import SecretStr

import rlm
from rlm.testing.postgres import ThrowawayPostgres
from tests.integration.conftest import make_settings
from tests.support import wait_until

pytestmark = pytest.mark.integration

SUM = {
    "type": "recursive",
    "description": "sum",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
}


@pytest.fixture(scope="module")
def pg_engine(
    ray_session: None, postgres_server: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[rlm.Hypervisor, str]]:
    url = postgres_server.database_url("core_async_db")
    settings = make_settings(tmp_path_factory.mktemp("pg-engine")).model_copy(
        update={"database_url": SecretStr(url)}
    )
    hv = rlm.connect(settings=settings)
    yield hv, url
    hv.shutdown_engine()


def _waiting_inserts(admin: psycopg.Connection[tuple[object, ...]]) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO tasks%'"
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_status_is_answered_while_a_task_record_waits_on_the_database(
    pg_engine: tuple[rlm.Hypervisor, str],
) -> None:
    hv, url = pg_engine
    done = hv.execute(SUM)
    assert done.status == "completed" and done.output == 55
    with (
        psycopg.connect(url, autocommit=True) as admin,
        psycopg.connect(url) as blocker,
        ThreadPoolExecutor(2) as pool,
    ):
        # Inserts into tasks wait for this transaction; plain reads of it do not.
        blocker.execute("LOCK TABLE tasks IN EXCLUSIVE MODE")
        try:
            stalled = pool.submit(hv.submit, SUM)
            # The core is inside the new task's INSERT: the server shows it waiting on the lock.
            wait_until(lambda: _waiting_inserts(admin) == 1, 30, "the new task's INSERT waiting")
            t0 = time.monotonic()
            status = pool.submit(hv.status, done.task_id).result(timeout=10)
            answered_s = time.monotonic() - t0
            assert status.status == "completed"
            assert not stalled.done(), "the stalled submit answered before the lock was released"
            assert _waiting_inserts(admin) == 1
        finally:
            blocker.rollback()
        task_id = stalled.result(timeout=30)
    assert answered_s < 10
    assert hv.result(task_id, timeout=30).output == 55

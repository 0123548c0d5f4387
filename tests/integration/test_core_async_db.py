"""The engine core on PostgreSQL awaits its hot path's round trips instead of blocking its loop.

A real engine (the session's Ray, its own state directory and a database of the session's
PostgreSQL): another connection holds a lock that stalls the INSERT of a new task's record;
while the core waits for that statement, it still answers another caller's ``status``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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


def _nap(chunk: Any, params: Any) -> int:
    """Sleep ``params["s"]`` seconds, then sum the chunk (a task that runs long enough for the
    test to lock its record's row)."""
    time.sleep(float(params["s"]))
    return int(sum(chunk))


def _add(partials: Sequence[int], params: Any) -> int:
    return sum(partials)


def _stored_status(admin: psycopg.Connection[tuple[object, ...]], task_id: str) -> str | None:
    row = admin.execute("SELECT status FROM tasks WHERE task_id = %s", (task_id,)).fetchone()
    return None if row is None else str(row[0])


def _waiting_task_writes(admin: psycopg.Connection[tuple[object, ...]]) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND query LIKE '%tasks%'"
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_a_final_record_waiting_on_the_database_never_stalls_the_core(
    pg_engine: tuple[rlm.Hypervisor, str],
) -> None:
    """The final record's transaction is open while it waits (here on a row lock another
    connection holds on its task): the core's own synchronous writes meanwhile (the heartbeat
    every 5 s, the 0.5 s poll, the events writer) must not wait for a lock that transaction
    holds, or the loop that would finish it is stuck for good."""
    hv, url = pg_engine
    hv.register_operation("nap", leaf=_nap, combine=_add, replace=True)
    done = hv.execute(SUM)  # the heartbeat and the poll are running from here on
    nap: dict[str, Any] = {
        "type": "parallel",
        "description": "nap",
        "input": {"items": [1, 2, 3], "operation": "nap", "params": {"s": 3}},
    }
    with (
        psycopg.connect(url, autocommit=True) as admin,
        psycopg.connect(url) as blocker,
        ThreadPoolExecutor(2) as pool,
    ):
        task_id = hv.submit(nap)
        # Once the poll has stored "running" (it writes the row no more), hold the row.
        wait_until(lambda: _stored_status(admin, task_id) == "running", 30, "stored running")
        blocker.execute("SELECT 1 FROM tasks WHERE task_id = %s FOR UPDATE", (task_id,))
        try:
            wait_until(lambda: _waiting_task_writes(admin) == 1, 30, "the final record waiting")
            time.sleep(6)  # past a heartbeat and a dozen polls, each a write on the loop
            status = pool.submit(hv.status, done.task_id).result(timeout=10)
            assert status.status == "completed"
            assert _waiting_task_writes(admin) == 1  # the final record still waits
        finally:
            blocker.rollback()
        ended = hv.result(task_id, timeout=30)
        assert ended.status == "completed" and ended.output == 6
        assert _stored_status(admin, task_id) == "completed"

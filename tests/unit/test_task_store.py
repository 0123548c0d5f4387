"""The task table: records survive reopening; unfinished tasks of gone instances fail."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rlm.models.tasks import ExecuteResponse
from rlm.tasks import INTERRUPTED_MESSAGE, TaskRecord, TaskStore
from rlm.tasks.idempotency import IDEMPOTENCY_TTL_S, IdempotencyKey


def _record(task_id: str, status: str, instance: str, owner: str = "alice") -> TaskRecord:
    return TaskRecord(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        created_at=datetime.now(UTC),
        type="recursive",
        description="d",
        priority="normal",
        owner_id=owner,
        request={"type": "recursive"},
        planned_calls=10,
        completed_calls=3,
        instance_id=instance,
    )


def test_records_survive_reopening(database_url: str | None, tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = TaskStore(db, database_url=database_url)
    result = ExecuteResponse(
        task_id="t1",
        status="completed",
        output=[1, {"a": 2}],
        execution_time_ms=1.5,
        agent_calls=3,
        decomposition_depth=1,
        success=True,
        score=1.0,
    )
    store.put(_record("t1", "completed", "i1").evolve(result=result, completed_calls=10))
    store.close()
    again = TaskStore(db, database_url=database_url).get("t1")
    assert again is not None
    assert again.result == result
    status = again.to_status()
    assert status.progress is not None and status.progress.percentage == 100.0


def test_recovery_fails_tasks_of_dead_instances_only(
    database_url: str | None, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = TaskStore(db, database_url=database_url)
    # An instance whose process is gone: a child that has exited.
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(child.stdout)
    store.register_instance("live")
    store._conn.execute(
        "INSERT INTO instances (instance_id, pid, host, started_at, heartbeat_at)"
        " VALUES ('dead', ?, ?, 0, ?)",
        (dead_pid, __import__("socket").gethostname(), store._clock()),
    )
    store.put(_record("running-dead", "running", "dead"))
    store.put(_record("pending-dead", "pending", "dead"))
    store.put(_record("running-live", "running", "live"))
    store.put(_record("done", "completed", "dead"))
    marked = TaskStore(db, database_url=database_url).recover_interrupted("new")
    assert sorted(marked) == ["pending-dead", "running-dead"]
    rec = store.get("running-dead")
    assert rec is not None and rec.status == "failed"
    assert rec.result is not None and rec.result.error is not None
    assert rec.result.error.message == INTERRUPTED_MESSAGE
    assert rec.result.agent_calls == 3
    live = store.get("running-live")
    assert live is not None and live.status == "running"


def test_stale_heartbeat_counts_as_gone(database_url: str | None, tmp_path: Path) -> None:
    now = [1000.0]
    store = TaskStore(
        tmp_path / "s.db", clock=lambda: now[0], stale_after_s=30, database_url=database_url
    )
    store.register_instance("other")
    store.put(_record("t", "running", "other"))
    now[0] += 10
    assert store.recover_interrupted("me") == []
    now[0] += 60
    assert store.recover_interrupted("me") == ["t"]


def test_listing_by_owner(database_url: str | None, tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "s.db", database_url=database_url)
    for i in range(3):
        store.put(_record(f"a{i}", "completed", "i", owner="alice"))
    store.put(_record("b0", "completed", "i", owner="bob"))
    assert {r.task_id for r in store.list(owner_id="alice")} == {"a0", "a1", "a2"}
    assert len(store.list(limit=2)) == 2


def test_stored_bytes_count_a_teams_requests_and_results(tmp_path: Path) -> None:
    import sqlite3

    store = TaskStore(tmp_path / "state.db")
    assert store.stored_bytes(team_id="t") == 0
    result = ExecuteResponse(
        task_id="t1",
        status="completed",
        output="ü",
        execution_time_ms=1.0,
        agent_calls=1,
        decomposition_depth=0,
        success=True,
    )
    request = {"type": "recursive", "description": "é" * 10}  # 2 bytes each in UTF-8
    store.put(
        dataclasses.replace(
            _record("t1", "completed", "i"), team_id="t", request=request, result=result
        )
    )
    store.put(dataclasses.replace(_record("t2", "pending", "i"), team_id="t"))  # no result yet
    store.put(dataclasses.replace(_record("t3", "completed", "i"), team_id="u"))
    rows = sqlite3.connect(tmp_path / "state.db").execute(
        "SELECT request_json, result_json FROM tasks WHERE team_id = 't'"
    )
    expected = sum(len(req.encode()) + len((res or "").encode()) for req, res in rows)
    assert store.stored_bytes(team_id="t") == expected > 2 * 10
    assert store.stored_bytes(team_id="v") == 0
    store.close()


def test_a_file_from_before_stored_bytes_is_filled_in_once(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "state.db"
    store = TaskStore(db)
    store.put(dataclasses.replace(_record("t1", "pending", "i"), team_id="t"))
    store.close()
    # Make it the old file: no stored_bytes column.
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE tasks DROP COLUMN stored_bytes")
    (request,) = sqlite3.connect(db).execute("SELECT request_json FROM tasks").fetchone()
    reopened = TaskStore(db)
    assert reopened.stored_bytes(team_id="t") == len(request.encode()) > 0
    assert reopened.get("t1") is not None
    reopened.close()
    assert TaskStore(db).stored_bytes(team_id="t") == len(request.encode())  # not added twice


def test_an_interrupted_task_reports_the_time_it_ran_not_the_downtime(
    database_url: str | None, tmp_path: Path
) -> None:
    now = [1_000_000.0]
    store = TaskStore(
        tmp_path / "s.db", clock=lambda: now[0], stale_after_s=30, database_url=database_url
    )
    store.register_instance("old")
    started = datetime.fromtimestamp(now[0], UTC)
    store.put(_record("t", "running", "old").evolve(started_at=started))
    now[0] += 12.5
    store.heartbeat("old")  # the old engine's last sign of life: 12.5 s into the task
    now[0] += 3600.0  # an hour down before a new engine looks
    assert store.recover_interrupted("new") == ["t"]
    record = store.get("t")
    assert record is not None and record.result is not None
    assert record.result.execution_time_ms == 12_500.0
    assert record.completed_at == datetime.fromtimestamp(1_000_012.5, UTC)


def test_idempotency_keys_name_their_task_for_a_day(
    database_url: str | None, tmp_path: Path
) -> None:
    now = [1_000_000.0]
    store = TaskStore(tmp_path / "s.db", clock=lambda: now[0], database_url=database_url)
    key = IdempotencyKey.of("alice", "k-1", {"type": "recursive", "input": {"items": [1]}})
    store.put(_record("t1", "pending", "i"), key=key)
    named = store.idempotent("alice", "k-1")
    assert named is not None and named.task_id == "t1"
    assert named.fingerprint == key.fingerprint
    # Another caller's key of the same name names nothing.
    assert store.idempotent("bob", "k-1") is None
    now[0] += IDEMPOTENCY_TTL_S - 1
    assert store.purge_idempotency() == 0
    assert store.idempotent("alice", "k-1") is not None
    now[0] += 2
    assert store.idempotent("alice", "k-1") is None  # expired: a new request may use it
    assert store.purge_idempotency() == 1


def test_a_key_and_its_task_are_written_together(database_url: str | None, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = TaskStore(db, database_url=database_url)
    key = IdempotencyKey.of("alice", "k", {"a": 1})
    bad = _record("t1", "pending", "i").evolve(request={"x": object()})  # not JSON
    with pytest.raises(TypeError):
        store.put(bad, key=key)
    assert store.get("t1") is None and store.idempotent("alice", "k") is None


def test_running_is_stored_for_pending_tasks_only(database_url: str | None, tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    for task_id, status in (("p1", "pending"), ("p2", "pending"), ("done", "completed")):
        store.put(_record(task_id, status, "i1"))
    at = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
    store.mark_running([("p1", at), ("done", at), ("absent", at)])
    p1, p2, done = (store.get(t) for t in ("p1", "p2", "done"))
    assert p1 is not None and (p1.status, p1.started_at) == ("running", at)
    assert p2 is not None and p2.status == "pending"
    # A task that ended before its start was stored keeps its final record.
    assert done is not None and done.status == "completed"
    assert store.get("absent") is None


def test_starting_a_task_checks_its_id_and_records_its_key_at_once(
    database_url: str | None, tmp_path: Path
) -> None:
    import asyncio

    from rlm.db.async_pool import close_async_pools

    store = TaskStore(tmp_path / "state.db", database_url=database_url)
    key = IdempotencyKey("alice", "k1", "f1")
    other = IdempotencyKey("alice", "k2", "f2")
    first = _record("t1", "pending", "i1")

    async def go() -> tuple[bool, bool, bool, bool]:
        try:
            fresh = await store.start_async(first, key)
            # Same id again (another key): refused, and neither the record nor a key written.
            again = await store.start_async(_record("t1", "running", "i2", owner="bob"), other)
            # Not flushed (an execute's record without a key): written and checked the same.
            unflushed = await store.start_async(_record("t2", "pending", "i1"), flush=False)
            taken = await store.start_async(_record("t2", "running", "i3"), flush=False)
            return fresh, again, unflushed, taken
        finally:
            await close_async_pools()

    assert asyncio.run(go()) == (True, False, True, False)
    unflushed = TaskStore(tmp_path / "state.db", database_url=database_url).get("t2")
    assert unflushed is not None and unflushed.instance_id == "i1"
    stored = store.get("t1")
    assert stored is not None
    assert (stored.status, stored.owner_id, stored.instance_id) == ("pending", "alice", "i1")
    named = store.idempotent("alice", "k1")
    assert named is not None and (named.task_id, named.fingerprint) == ("t1", "f1")
    assert store.idempotent("alice", "k2") is None

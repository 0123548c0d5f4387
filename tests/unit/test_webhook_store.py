"""The outbox in a real SQLite file: written with the task's final record, leased, recorded,
retried, pruned; webhooks disabled by 410 and by long failure."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from rlm.admission import Viewer
from rlm.errors import InvalidInput
from rlm.models import ExecuteResponse, WebhookCreate, WebhookCreated, WebhookUpdate
from rlm.tasks.events import TaskEvent
from rlm.tasks.record import TaskRecord
from rlm.tasks.store import TaskStore
from rlm.webhooks.lifecycle import AttemptResult, Decision
from rlm.webhooks.outbox import WebhookOutbox
from rlm.webhooks.service import WebhookService
from rlm.webhooks.settings import WebhookSettings
from rlm.webhooks.store import Outcome, WebhookStore

SETTINGS = WebhookSettings(
    allow_http=True, allow_loopback=True, disable_after_s=10.0, disable_min_failures=2
)
T = TypeVar("T")

ALICE = Viewer("alice", "acme")
ADMIN = Viewer("root", "acme", admin=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Names:
    def resolve(self, host: str, port: int) -> list[str]:
        return {"localhost": ["127.0.0.1"]}[host]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(path: Path, clock: Clock, database_url: str | None) -> WebhookStore:
    return WebhookStore(path, SETTINGS, clock=clock, database_url=database_url)


@pytest.fixture
def service(store: WebhookStore, clock: Clock) -> WebhookService:
    return WebhookService(store, SETTINGS, Names(), clock=clock)


@pytest.fixture
def alice_hook(service: WebhookService) -> WebhookCreated:
    """Alice's own webhook for ``task.completed``."""
    return service.create(
        ALICE, WebhookCreate(url="http://localhost:9/a", events=["task.completed"])
    )


@pytest.fixture
def tasks(path: Path, clock: Clock, database_url: str | None) -> TaskStore:
    """A task store whose final records write ``task.completed`` into the outbox."""
    return TaskStore(path, database_url=database_url, hook=_hook(path, clock, database_url))


def _record(
    task_id: str, status: str, owner: str = "alice", org: str | None = "acme"
) -> TaskRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ended = status in ("completed", "failed", "cancelled")
    result = ExecuteResponse(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        output=1 if status == "completed" else None,
        execution_time_ms=1.0,
        agent_calls=1,
        decomposition_depth=0,
        success=status == "completed",
    )
    return TaskRecord(
        task_id=task_id,
        status=status,  # type: ignore[arg-type]
        created_at=at,
        type="recursive",
        description="d",
        priority="normal",
        owner_id=owner,
        org_id=org,
        completed_at=at if ended else None,
        result=result if ended else None,
        instance_id="i1",
    )


def _hook(path: Path, clock: Clock, url: str | None) -> WebhookOutbox:
    return WebhookOutbox(path, SETTINGS, clock=clock, database_url=url)


def _queued(path: Path, url: str | None) -> list[tuple[str, list[str]]]:
    """The outbox as the engine wrote it: each event's type and the webhooks it is for."""
    query = "SELECT event, targets FROM webhook_messages ORDER BY seq"
    if url is None:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(query).fetchall()
    else:
        with psycopg.connect(url) as pg:
            rows = pg.execute(query).fetchall()  # type: ignore[assignment]
    return [(str(e), sorted(json.loads(t)) if t else []) for e, t in rows]


def test_a_final_record_and_its_event_are_written_together(
    database_url: str | None,
    path: Path,
    clock: Clock,
    service: WebhookService,
    store: WebhookStore,
    alice_hook: WebhookCreated,
) -> None:
    mine = alice_hook
    org = service.create(
        ADMIN, WebhookCreate(url="http://localhost:9/o", events=["task.completed"], scope="org")
    )
    quota_only = service.create(
        ALICE, WebhookCreate(url="http://localhost:9/q", events=["quota.threshold_exceeded"])
    )
    outbox = _hook(path, clock, database_url)
    tasks = TaskStore(path, database_url=database_url, hook=outbox)
    tasks.put(_record("t1", "running"))
    assert _queued(path, database_url) == []  # not ended: nothing to say yet
    tasks.put(_record("t1", "completed"))
    assert _queued(path, database_url) == [
        ("task.completed", sorted([mine.webhook_id, org.webhook_id]))
    ]
    assert outbox.flush() == 2 and outbox.flush() == 0
    tasks.put(_record("t1", "completed"))  # written again: the same event, nothing new
    assert len(_queued(path, database_url)) == 1
    tasks.put(_record("t2", "cancelled", owner="bob"))  # bob in acme: only the org webhook
    tasks.put(_record("t3", "failed", owner="carol", org=None))  # nobody subscribed
    assert _queued(path, database_url)[1] == ("task.completed", [org.webhook_id])
    assert len(_queued(path, database_url)) == 2
    # The worker fans each event out into one delivery per webhook.
    jobs = store.claim(10, lease_s=60.0, room={}, default_room=10)
    by_webhook: dict[str, list[str]] = {}
    for job in jobs:
        body = json.loads(job.body)
        by_webhook.setdefault(job.webhook_id, []).append(body["data"]["taskId"])
        assert (
            body["data"]["status"] == {"t1": "completed", "t2": "cancelled"}[body["data"]["taskId"]]
        )
    assert {w: sorted(t) for w, t in by_webhook.items()} == {
        mine.webhook_id: ["t1"],
        org.webhook_id: ["t1", "t2"],
    }  # ordering is not promised
    assert quota_only.webhook_id not in by_webhook
    assert store.claim(10, lease_s=60.0, room={}, default_room=10) == []  # fanned out once


def test_a_parent_orgs_webhook_never_gets_a_child_orgs_user_events(
    database_url: str | None, path: Path, clock: Clock, service: WebhookService
) -> None:
    # acme-eu is a child org of acme in the tenancy tree; an org webhook covers its own org's
    # members only, so acme's admin never hears of what acme-eu's users run.
    parent = service.create(
        ADMIN, WebhookCreate(url="http://localhost:9/p", events=["task.completed"], scope="org")
    )
    child_admin = Viewer("eu-root", "acme-eu", admin=True)
    child = service.create(
        child_admin,
        WebhookCreate(url="http://localhost:9/c", events=["task.completed"], scope="org"),
    )
    tasks = TaskStore(path, database_url=database_url, hook=_hook(path, clock, database_url))
    tasks.put(_record("eu1", "completed", owner="dave", org="acme-eu"))
    tasks.put(_record("us1", "completed", owner="erin", org="acme"))
    assert _queued(path, database_url) == [
        ("task.completed", [child.webhook_id]),
        ("task.completed", [parent.webhook_id]),
    ]


class _Broken(WebhookOutbox):
    """An outbox whose write fails after queuing its row, on either path."""

    async def task_ended_async(self, tx: Any, record: TaskRecord) -> None:
        await super().task_ended_async(tx, record)
        raise OSError("disk full")

    def task_ended(self, conn: sqlite3.Connection, record: TaskRecord) -> None:
        super().task_ended(conn, record)
        raise OSError("disk full")


@pytest.fixture
def broken_tasks(
    path: Path, clock: Clock, database_url: str | None, alice_hook: WebhookCreated
) -> TaskStore:
    """A task store, for a subscribed task owner, whose outbox write fails."""
    outbox = _Broken(path, SETTINGS, clock=clock, database_url=database_url)
    return TaskStore(path, database_url=database_url, hook=outbox)


def test_a_failed_outbox_write_rolls_the_record_back(
    database_url: str | None, path: Path, broken_tasks: TaskStore
) -> None:
    broken_tasks.put(_record("t1", "running"))
    with pytest.raises(OSError, match="disk full"):
        broken_tasks.put(_record("t1", "completed"))
    stored = broken_tasks.get("t1")
    assert stored is not None and stored.status == "running"
    assert _queued(path, database_url) == []


def test_tasks_marked_interrupted_get_their_event(
    database_url: str | None, path: Path, alice_hook: WebhookCreated, tasks: TaskStore
) -> None:
    TaskStore(path, database_url=database_url).put(
        _record("t1", "running").evolve(instance_id="gone")
    )
    assert tasks.recover_interrupted("me") == ["t1"]
    assert _queued(path, database_url) == [("task.completed", [alice_hook.webhook_id])]


def _enqueue(store: WebhookStore, clock: Clock, n: int, owner: str = "alice") -> None:
    for i in range(n):
        clock.now += 0.001  # events in order: the oldest is due first
        store.enqueue(
            event_id=f"msg_{owner}_{i}",
            event="task.completed",
            body=b"{}",
            owner_id=owner,
            org_id=None,
        )


def test_claim_lease_record_and_retry(
    store: WebhookStore, service: WebhookService, clock: Clock, alice_hook: WebhookCreated
) -> None:
    hook = alice_hook
    _enqueue(store, clock, 3)
    first = store.claim(2, lease_s=60.0, room={}, default_room=10)
    assert [j.event_id for j in first] == ["msg_alice_0", "msg_alice_1"]
    assert all(j.attempts == 0 and j.url == "http://localhost:9/a" for j in first)
    rest = store.claim(10, lease_s=60.0, room={}, default_room=10)
    assert [j.event_id for j in rest] == ["msg_alice_2"]  # leased ones are not claimed again
    assert store.claim(10, lease_s=60.0, room={}, default_room=10) == []
    assert store.next_due() == clock.now + 60.0  # the leases' end
    clock.now += 1
    store.record(
        [
            Outcome(first[0], AttemptResult(200, 2.0), Decision("succeeded"), clock.now),
            Outcome(
                first[1],
                AttemptResult(500, 3.0, "HTTP 500"),
                Decision("pending", next_attempt_at=clock.now + 5),
                clock.now,
            ),
        ]
    )
    assert store.next_due() == clock.now + 5
    clock.now += 5
    again = store.claim(10, lease_s=60.0, room={}, default_room=10)
    assert [(j.event_id, j.attempts) for j in again] == [("msg_alice_1", 1)]
    deliveries = {d.event_id: d for d in service.deliveries(ALICE, hook.webhook_id)}
    assert deliveries["msg_alice_0"].status == "succeeded"
    assert [a.status_code for a in deliveries["msg_alice_0"].attempt_log] == [200]
    failed = deliveries["msg_alice_1"]
    assert (failed.status, failed.attempts, failed.last_status_code) == ("pending", 1, 500)
    assert failed.attempt_log[0].error == "HTTP 500" and failed.attempt_log[0].latency_ms == 3.0
    # By hand: a finished delivery is queued again, due now, same event id.
    done = deliveries["msg_alice_0"]
    retried = service.retry(ALICE, hook.webhook_id, done.delivery_id)
    assert retried.status == "pending" and retried.event_id == done.event_id
    assert retried.expires_at.timestamp() == clock.now + SETTINGS.retry_horizon_s


def test_a_dead_workers_leases_are_released(
    database_url: str | None,
    path: Path,
    store: WebhookStore,
    clock: Clock,
    alice_hook: WebhookCreated,  # the webhook the events are for
) -> None:
    _enqueue(store, clock, 2)
    claimed = store.claim(10, lease_s=60.0, room={}, default_room=10)
    assert len(claimed) == 2
    restarted = WebhookStore(path, SETTINGS, clock=clock, database_url=database_url)
    assert restarted.release_leases() == 2
    again = restarted.claim(10, lease_s=60.0, room={}, default_room=10)
    assert sorted(j.delivery_id for j in again) == sorted(j.delivery_id for j in claimed)


def test_a_webhook_without_room_is_skipped_not_blocking(
    store: WebhookStore, service: WebhookService, clock: Clock, alice_hook: WebhookCreated
) -> None:
    busy = alice_hook
    _enqueue(store, clock, 5)
    idle = service.create(
        Viewer("bob"), WebhookCreate(url="http://localhost:9/b", events=["task.completed"])
    )
    _enqueue(store, clock, 2, owner="bob")
    jobs = store.claim(3, lease_s=60.0, room={busy.webhook_id: 0}, default_room=10)
    assert {j.webhook_id for j in jobs} == {idle.webhook_id} and len(jobs) == 2
    capped = store.claim(10, lease_s=60.0, room={busy.webhook_id: 2}, default_room=10)
    assert [j.webhook_id for j in capped] == [busy.webhook_id] * 2


def _fail(store: WebhookStore, clock: Clock, status: int) -> list[tuple[str, str]]:
    [job] = store.claim(1, lease_s=60.0, room={}, default_room=10)
    result = AttemptResult(status, 1.0, f"HTTP {status}")
    decision = (
        Decision("failed", disable="the receiver answered 410 Gone")
        if status == 410
        else Decision("pending", next_attempt_at=clock.now)
    )
    return store.record([Outcome(job, result, decision, clock.now)])


def test_410_disables_the_webhook_and_ends_its_pending_deliveries(
    store: WebhookStore, service: WebhookService, clock: Clock, alice_hook: WebhookCreated
) -> None:
    hook = alice_hook
    _enqueue(store, clock, 3)
    assert _fail(store, clock, 410) == [(hook.webhook_id, "the receiver answered 410 Gone")]
    view = service.get(ALICE, hook.webhook_id)
    assert view.status == "disabled" and view.disabled_reason == "the receiver answered 410 Gone"
    assert view.disabled_at is not None
    statuses = {d.status for d in service.deliveries(ALICE, hook.webhook_id)}
    assert statuses == {"failed"}
    assert store.claim(10, lease_s=60.0, room={}, default_room=10) == []
    with pytest.raises(InvalidInput, match="disabled"):
        service.retry(
            ALICE, hook.webhook_id, service.deliveries(ALICE, hook.webhook_id)[0].delivery_id
        )


def test_a_webhook_failing_for_long_is_disabled(
    store: WebhookStore, service: WebhookService, clock: Clock, alice_hook: WebhookCreated
) -> None:
    hook = alice_hook
    _enqueue(store, clock, 1)
    assert _fail(store, clock, 500) == []
    clock.now += 5
    assert _fail(store, clock, 500) == []  # 2 failures, but only 5 s
    clock.now += 6
    [(webhook_id, reason)] = _fail(store, clock, 503)
    assert webhook_id == hook.webhook_id and "3 attempts in a row" in reason
    view = service.get(ALICE, hook.webhook_id)
    assert (view.status, view.consecutive_failures) == ("disabled", 3)
    # Enabling again forgets the failures.
    enabled = service.update(ALICE, hook.webhook_id, WebhookUpdate(enabled=True))
    assert (enabled.status, enabled.consecutive_failures, enabled.failing_since) == (
        "active",
        0,
        None,
    )


def test_quota_events_are_moved_in_once_and_kept_without_subscribers(
    database_url: str | None, path: Path, clock: Clock, service: WebhookService, store: WebhookStore
) -> None:
    payload = {
        "event": "quota.threshold_exceeded",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"userId": "alice", "threshold": 80, "period": "daily", "usage": {}},
    }
    outbox = _hook(path, clock, database_url)
    outbox.quota_events([("0000000000000000", payload, "acme")])
    assert _queued(path, database_url) == [("quota.threshold_exceeded", [])]
    [(event_id, body, pending, delivered)] = store.events("quota.threshold_exceeded")
    assert json.loads(body) == payload and (pending, delivered) == (0, 0)
    hook = service.create(
        ADMIN,
        WebhookCreate(url="http://localhost:9/o", events=["quota.threshold_exceeded"], scope="org"),
    )
    second = {**payload, "data": {**payload["data"], "threshold": 100}}
    for _ in range(2):  # a hand-over repeated after a crash adds nothing
        outbox.quota_events([("0000000000000001", second, "acme")])
    assert _queued(path, database_url)[1:] == [("quota.threshold_exceeded", [hook.webhook_id])]
    assert outbox.flush() == 1
    [job] = store.claim(10, lease_s=60.0, room={}, default_room=10)
    assert job.webhook_id == hook.webhook_id and json.loads(job.body) == second
    newest = store.events("quota.threshold_exceeded")[0]
    assert newest[0] != event_id and newest[2:] == (1, 0)  # its delivery is pending


def test_old_finished_deliveries_are_pruned(
    store: WebhookStore, service: WebhookService, clock: Clock, alice_hook: WebhookCreated
) -> None:
    hook = alice_hook
    _enqueue(store, clock, 2)
    [job, _] = store.claim(10, lease_s=60.0, room={}, default_room=10)
    store.record([Outcome(job, AttemptResult(200, 1.0), Decision("succeeded"), clock.now)])
    clock.now += 100
    assert store.prune(older_than_s=50) == 1
    left = service.deliveries(ALICE, hook.webhook_id)
    assert [d.status for d in left] == ["pending"]  # pending deliveries are never pruned


def test_the_async_path_writes_a_final_record_its_events_and_its_event_together(
    database_url: str | None, path: Path, alice_hook: WebhookCreated, tasks: TaskStore
) -> None:
    events = [TaskEvent(1, "task.started", {"n": 1}, 1.0), TaskEvent(2, "task.completed", {}, 2.0)]

    async def go() -> None:
        assert await tasks.start_async(_record("t1", "pending"))
        await tasks.put_async(_record("t1", "running"))
        assert _queued(path, database_url) == []  # not ended: nothing to say yet
        await tasks.put_async(_record("t1", "completed"), events)
        await tasks.put_async(_record("t2", "failed", owner="carol", org=None))  # nobody's

    asyncio.run(_closing(go()))
    assert _queued(path, database_url) == [("task.completed", [alice_hook.webhook_id])]
    stored = tasks.get("t1")
    assert stored is not None and stored.status == "completed"
    assert [(e.seq, e.type, e.data) for e in tasks.events("t1")] == [
        (1, "task.started", {"n": 1}),
        (2, "task.completed", {}),
    ]


def test_a_failed_outbox_write_rolls_the_record_back_on_the_async_path(
    database_url: str | None, path: Path, broken_tasks: TaskStore
) -> None:
    asyncio.run(_closing(broken_tasks.put_async(_record("t1", "running"))))
    with pytest.raises(OSError, match="disk full"):
        asyncio.run(_closing(broken_tasks.put_async(_record("t1", "completed"))))
    stored = broken_tasks.get("t1")
    assert stored is not None and stored.status == "running"
    assert _queued(path, database_url) == []
    # The connection went back clean: the next write on it succeeds.
    asyncio.run(_closing(broken_tasks.put_async(_record("t2", "running"))))
    assert broken_tasks.get("t2") is not None


async def _closing(step: Coroutine[Any, Any, T]) -> T:
    """Run ``step``, then close the loop's asynchronous pools (the loop ends with the call)."""
    from rlm.db.async_pool import close_async_pools

    try:
        return await step
    finally:
        await close_async_pools()

"""Webhook deliveries on a real local Ray and SQLite, to a real HTTP receiver on loopback."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import cloudpickle
from standardwebhooks import Webhook

import rlm
from rlm.admission import Viewer
from rlm.config import Settings
from rlm.errors import Conflict, InvalidInput, error_from_payload
from rlm.models import Delivery, WebhookCreate, WebhookCreated
from rlm.runtime.security import RaySecurity
from rlm.runtime.webhook_worker import WebhookWorkerActor, worker_name
from rlm.testing import WebhookReceiver
from rlm.webhooks.settings import WebhookSettings
from rlm.webhooks.store import WebhookStore
from tests.integration.conftest import TEST_WEBHOOKS, make_settings, with_test_ops
from tests.support import wait_until

pytestmark = pytest.mark.integration

# The resolvers below travel to worker actors: ship this module by value (Ray's workers
# cannot import the test package).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SUM = {"type": "recursive", "description": "s", "input": {"items": [1, 2, 3], "operation": "sum"}}


def _slow(seconds: float, **options: object) -> dict[str, object]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": list(range(4)), "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1, **options},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user() -> Viewer:
    return Viewer(f"hook-{uuid.uuid4().hex[:8]}")


def _register(hv: rlm.Hypervisor, viewer: Viewer, url: str, *events: str) -> WebhookCreated:
    body = WebhookCreate(url=url, events=list(events or ["task.completed"]))  # type: ignore[arg-type]
    created: WebhookCreated = hv.webhooks("create", viewer, body)
    return created


def _deliveries(hv: rlm.Hypervisor, viewer: Viewer, webhook_id: str) -> list[Delivery]:
    found: list[Delivery] = hv.webhooks("deliveries", viewer, webhook_id)
    return found


def _for_task(task_id: str) -> Any:
    return lambda hit: hit.json()["data"].get("taskId") == task_id


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def test_task_completed_is_signed_and_delivered_once(
    hv: rlm.Hypervisor, receiver: WebhookReceiver
) -> None:
    viewer = _user()
    hook = _register(hv, viewer, receiver.url)
    result = hv.execute(SUM, owner_id=viewer.user_id)
    [hit] = receiver.wait_for(_for_task(result.task_id), timeout=30)
    payload = Webhook(hook.secret).verify(hit.body, hit.headers)
    assert payload["event"] == "task.completed"
    assert payload["data"]["status"] == "completed"
    assert payload["data"]["result"]["output"] == 6
    assert payload["data"]["result"]["agentCalls"] == result.agent_calls
    status = hv.status(result.task_id)
    assert status.completed_at is not None
    assert payload["timestamp"] == status.completed_at.isoformat().replace("+00:00", "Z")
    [delivery] = wait_until(
        lambda: [d for d in _deliveries(hv, viewer, hook.webhook_id) if d.status == "succeeded"],
        30,
        "the delivery is recorded as succeeded",
    )
    assert delivery.event_id == hit.webhook_id and delivery.attempts == 1
    assert delivery.attempt_log[0].status_code == 200
    # Another user's task is not this webhook's business.
    hv.execute(SUM, owner_id="someone-else")
    assert [h.json()["data"]["taskId"] for h in receiver.received] == [result.task_id]


def test_down_then_500_then_200_delivers_once_under_one_webhook_id(hv: rlm.Hypervisor) -> None:
    viewer = _user()
    port = _free_port()
    hook = _register(hv, viewer, f"http://127.0.0.1:{port}/hook")
    task = hv.execute(SUM, owner_id=viewer.user_id)
    wait_until(
        lambda: any(
            d.attempts >= 1 and (d.last_error or "").startswith("cannot connect")
            for d in _deliveries(hv, viewer, hook.webhook_id)
        ),
        30,
        "an attempt failed while the receiver was down",
    )
    with WebhookReceiver(port=port) as receiver:
        receiver.respond(500)
        [ok] = receiver.wait_for(lambda h: h.status == 200, timeout=30)
        [delivery] = wait_until(
            lambda: [d for d in _deliveries(hv, viewer, hook.webhook_id) if d.status != "pending"],
            30,
            "the delivery ends",
        )
        hits = receiver.received
    assert [h.status for h in hits] == [500, 200]
    assert {h.webhook_id for h in hits} == {delivery.event_id}
    assert ok.json()["data"]["taskId"] == task.task_id
    assert delivery.status == "succeeded" and delivery.next_attempt_at is None
    codes = [a.status_code for a in delivery.attempt_log]
    assert codes[-2:] == [500, 200] and set(codes[:-2]) == {None}
    assert all(a.error and a.error.startswith("cannot connect") for a in delivery.attempt_log[:-2])
    # Each attempt is signed afresh with the same id; the receiver verifies every one.
    for hit in hits:
        Webhook(hook.secret).verify(hit.body, hit.headers)


def test_a_hanging_receiver_slows_neither_tasks_nor_other_webhooks(hv: rlm.Hypervisor) -> None:
    viewer = _user()
    with WebhookReceiver() as stuck, WebhookReceiver() as fine:
        stuck.hang(1000)
        _register(hv, viewer, stuck.url)
        _register(hv, viewer, fine.url)
        first = hv.execute(SUM, owner_id=viewer.user_id)
        stuck.wait_for(_for_task(first.task_id), timeout=30)  # its request now hangs
        tasks, took = [first.task_id], []
        for _ in range(9):
            started = time.monotonic()
            tasks.append(hv.execute(SUM, owner_id=viewer.user_id).task_id)
            took.append(time.monotonic() - started)
        # A task whose end waited on its delivery to the stuck receiver would take at least an
        # attempt's timeout (its send cut off there); none comes near it.
        assert max(took) < TEST_WEBHOOKS.attempt_timeout_s, took
        arrived = fine.wait_for(lambda h: h.json()["data"]["taskId"] in tasks, count=10, timeout=30)
        # Every task ended, and the other webhook got every event, while the first request to
        # the stuck receiver was still unanswered.
        assert stuck.holding >= 1
        assert sorted(h.json()["data"]["taskId"] for h in arrived) == sorted(tasks)
        assert all(hv.status(t).status == "completed" for t in tasks)
        stuck.release()


def test_cancel_and_timeout_send_task_completed_with_their_status(
    hv: rlm.Hypervisor, receiver: WebhookReceiver
) -> None:
    viewer = _user()
    hook = _register(hv, viewer, receiver.url)
    cancelled = hv.submit(_slow(30.0), owner_id=viewer.user_id)
    wait_until(lambda: hv.status(cancelled).status == "running", 30, "the task runs")
    assert hv.cancel(cancelled).status == "cancelled"
    timed_out = hv.execute(_slow(30.0, timeoutMs=300), owner_id=viewer.user_id)
    failed = hv.execute(
        {"type": "recursive", "description": "x", "input": {"items": [1], "operation": "explode"}},
        owner_id=viewer.user_id,
    )
    by_task = {
        h.json()["data"]["taskId"]: h
        for h in receiver.wait_for(lambda h: True, count=3, timeout=30)
    }
    data = {t: Webhook(hook.secret).verify(h.body, h.headers)["data"] for t, h in by_task.items()}
    assert data[cancelled]["status"] == "cancelled"
    assert data[cancelled]["result"]["status"] == "cancelled"
    assert data[timed_out.task_id]["status"] == "failed"
    assert data[timed_out.task_id]["result"]["error"]["code"] == "TIMEOUT"
    assert data[failed.task_id]["status"] == "failed"
    assert data[failed.task_id]["result"]["success"] is False


def _exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_pending_deliveries_survive_killing_the_worker_and_stopping_the_engine(
    ray_session: None, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    hv = with_test_ops(rlm.connect(settings=settings))
    viewer = _user()
    port = _free_port()
    hook = _register(hv, viewer, f"http://127.0.0.1:{port}/hook")
    tasks = [hv.execute(SUM, owner_id=viewer.user_id).task_id for _ in range(3)]

    def failed_once() -> list[Delivery]:
        found = _deliveries(hv, viewer, hook.webhook_id)
        return found if len(found) == 3 and all(d.attempts >= 1 for d in found) else []

    before = {d.delivery_id: d.event_id for d in wait_until(failed_once, 30, "3 failed attempts")}
    # Kill the worker: Ray restarts it, and it resumes from the file.
    worker = ray.get_actor(worker_name(settings), namespace=settings.namespace)
    ray.kill(worker, no_restart=False)
    wait_until(lambda: _restarted(hv), 60, "the restarted worker answers")
    # Then the whole engine, stopped (tests/api/test_webhooks_kill.py kills `rlm serve`).
    core_pid = hv.engine_info()["corePid"]
    hv.shutdown_engine()
    wait_until(lambda: _exited(core_pid), 30, f"the old core (pid {core_pid}) exits")
    assert all(d.status == "pending" for d in _store_deliveries(settings, hook.webhook_id))
    again = rlm.connect(settings=settings)
    try:
        with WebhookReceiver(port=port) as receiver:
            hits = receiver.wait_for(lambda h: True, count=3, timeout=60)
            after = wait_until(
                lambda: [
                    d
                    for d in _deliveries(again, viewer, hook.webhook_id)
                    if d.status == "succeeded"
                ],
                30,
                "3 deliveries succeed",
            )
        assert sorted(h.json()["data"]["taskId"] for h in hits) == sorted(tasks)
        assert len(receiver.received) == 3  # once each
        assert {h.webhook_id for h in hits} == set(before.values())
        assert {d.delivery_id: d.event_id for d in after} == before
    finally:
        again.shutdown_engine()


def _restarted(hv: rlm.Hypervisor) -> bool:
    try:
        stats = hv.webhook_stats()
    except (ray.exceptions.ActorUnavailableError, ray.exceptions.ActorDiedError):
        return False
    # A new worker has sent nothing yet, and released the leases of the killed one (if any).
    return bool(stats["attempts"] >= 0)


def _store_deliveries(settings: Settings, webhook_id: str) -> list[Delivery]:
    store = WebhookStore(settings.database_path, settings.webhooks)
    try:
        return store.deliveries(webhook_id)
    finally:
        store.close()


class Rebinding:
    """Resolves ``rebind.test`` to loopback the first time, to a private address after; and
    ``inside.test`` always to a private address."""

    def __init__(self) -> None:
        self.calls = 0

    def resolve(self, host: str, port: int) -> list[str]:
        if host == "inside.test":
            return ["10.20.30.40"]
        if host != "rebind.test":
            raise OSError("Name or service not known")
        self.calls += 1
        return ["127.0.0.1"] if self.calls == 1 else ["10.0.0.7"]


@contextmanager
def _worker(state_dir: Path, **webhooks: Any) -> Iterator[tuple[Any, Settings]]:
    """A worker actor of its own (no engine) on ``state_dir``, with a resolver the test
    controls and the test settings changed by ``webhooks``."""
    settings = Settings(
        state_dir=state_dir,
        webhooks=WebhookSettings(**{**TEST_WEBHOOKS.model_dump(), **webhooks}),
    )
    worker = WebhookWorkerActor.remote(settings, Rebinding())
    ray.get(worker.ready.remote())
    try:
        yield worker, settings
    finally:
        ray.get(worker.close.remote())
        ray.kill(worker)


@pytest.fixture
def own_worker(ray_session: None, tmp_path: Path) -> Iterator[tuple[Any, Settings]]:
    """A worker of its own that disables a webhook after 3 failures over a second."""
    with _worker(tmp_path, disable_after_s=1.0, disable_min_failures=3) as made:
        yield made


def _call(worker: Any, method: str, viewer: Viewer, *args: Any) -> Any:
    kind, value = ray.get(worker.call.remote(method, viewer, *args))
    if kind == "err":
        raise error_from_payload(value)
    return value


def _disabled_events(settings: Settings, webhook_id: str) -> list[Any]:
    """The ``webhook.disabled`` security events of ``webhook_id`` (as the operator sees them)."""
    page = RaySecurity(settings).call_sync("events", None, types=["webhook.disabled"])
    return [e for e in page.events if (e.details or {}).get("webhookId") == webhook_id]


def _event(settings: Settings, owner: str) -> None:
    store = WebhookStore(settings.database_path, settings.webhooks)
    try:
        store.enqueue(
            event_id=f"msg_{uuid.uuid4().hex}",
            event="task.completed",
            body=b'{"event":"task.completed"}',
            owner_id=owner,
            org_id=None,
        )
    finally:
        store.close()


def test_a_private_address_is_refused_at_registration_and_at_delivery(
    own_worker: tuple[Any, Settings], receiver: WebhookReceiver
) -> None:
    worker, settings = own_worker
    viewer = _user()
    with pytest.raises(InvalidInput) as refused:
        _call(
            worker,
            "create",
            viewer,
            WebhookCreate(url="http://inside.test/h", events=["task.completed"]),
        )
    assert refused.value.details["addressClass"] == "private"
    with pytest.raises(InvalidInput):
        _call(
            worker,
            "create",
            viewer,
            WebhookCreate(url="http://10.1.1.1/h", events=["task.completed"]),
        )
    # Registered while the name resolved to loopback; it resolves to 10.0.0.7 at delivery.
    hook = _call(
        worker,
        "create",
        viewer,
        WebhookCreate(url=f"http://rebind.test:{receiver.port}/h", events=["task.completed"]),
    )
    _event(settings, viewer.user_id)
    ray.get(worker.kick.remote())

    def refused_attempt() -> list[Delivery]:
        found = _call(worker, "deliveries", viewer, hook.webhook_id)
        return [d for d in found if d.attempts >= 1]

    [delivery] = wait_until(refused_attempt, 30, "an attempt was made")
    assert delivery.last_error is not None and delivery.last_error.startswith("refused:")
    assert "10.0.0.7" in delivery.last_error and "private" in delivery.last_error
    assert delivery.attempt_log[0].status_code is None
    assert receiver.received == []


def test_410_gone_disables_the_webhook(
    own_worker: tuple[Any, Settings], receiver: WebhookReceiver
) -> None:
    worker, settings = own_worker
    viewer = _user()
    hook = _call(
        worker, "create", viewer, WebhookCreate(url=receiver.url, events=["task.completed"])
    )
    receiver.respond(410)
    _event(settings, viewer.user_id)
    ray.get(worker.kick.remote())
    gone = wait_until(
        lambda: _call(worker, "get", viewer, hook.webhook_id).status == "disabled" or None,
        30,
        "the webhook is disabled",
    )
    assert gone
    view = _call(worker, "get", viewer, hook.webhook_id)
    assert view.disabled_reason == "the receiver answered 410 Gone" and view.disabled_at
    # The audit log has it too, for the owner's org's admins (here: the operator, no org).
    [event] = wait_until(
        lambda: _disabled_events(settings, hook.webhook_id),
        30,
        "the audit log records the disabled webhook",
    )
    assert event.user_id == viewer.user_id and "410 Gone" in event.message
    [delivery] = _call(worker, "deliveries", viewer, hook.webhook_id)
    assert (delivery.status, delivery.last_status_code) == ("failed", 410)
    assert len(receiver.received) == 1
    # Retrying a delivery of a disabled webhook is a conflict with its state (409), not bad
    # input: the same call succeeds once the webhook is enabled again.
    with pytest.raises(Conflict) as conflict:
        _call(worker, "retry", viewer, hook.webhook_id, delivery.delivery_id)
    assert conflict.value.status == 409 and conflict.value.details["field"] == "enabled"
    # A disabled webhook gets no new events; its test ping still goes out.
    _event(settings, viewer.user_id)
    kind, ping = ray.get(worker.test.remote(viewer, hook.webhook_id))
    assert kind == "ok" and ping.status == "succeeded" and ping.event == "webhook.test"
    assert [h.json()["event"] for h in receiver.received] == ["task.completed", "webhook.test"]


def test_a_webhook_failing_for_long_is_disabled(
    own_worker: tuple[Any, Settings], receiver: WebhookReceiver
) -> None:
    worker, settings = own_worker
    viewer = _user()
    hook = _call(
        worker, "create", viewer, WebhookCreate(url=receiver.url, events=["task.completed"])
    )
    receiver.respond(*[500] * 100)
    _event(settings, viewer.user_id)
    _event(settings, viewer.user_id)
    ray.get(worker.kick.remote())
    view = wait_until(
        lambda: (w := _call(worker, "get", viewer, hook.webhook_id)).status == "disabled" and w,
        30,
        "the webhook is disabled",
    )
    assert view.consecutive_failures >= 3 and view.disabled_reason.startswith(
        "every attempt failed"
    )
    deliveries = _call(worker, "deliveries", viewer, hook.webhook_id)
    assert {d.status for d in deliveries} == {"failed"}
    assert all(
        d.last_error.startswith("webhook disabled") or d.last_status_code == 500 for d in deliveries
    )
    assert ray.get(worker.stats.remote())["disabled"] == 1
    # And a security event says so, as for a 410.
    [event] = wait_until(
        lambda: _disabled_events(settings, hook.webhook_id), 30, "a webhook.disabled event"
    )
    assert event.user_id == viewer.user_id and "every attempt failed" in event.message
    assert event.type == "webhook.disabled"


def test_retry_after_is_honoured(
    ray_session: None, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    # The schedule alone would try again within 0.24 s (0.2 s and its jitter); the receiver
    # asks for 3 s, well under the longest wait (30 s here), so 3 s it is.
    with _worker(tmp_path, retry_max_delay_s=30.0) as (worker, settings):
        viewer = _user()
        hook = _call(
            worker, "create", viewer, WebhookCreate(url=receiver.url, events=["task.completed"])
        )
        receiver.respond(429, retry_after="3")
        _event(settings, viewer.user_id)
        ray.get(worker.kick.remote())
        first, second = receiver.wait_for(lambda h: True, count=2, timeout=30)
        [delivery] = wait_until(
            lambda: [
                d
                for d in _call(worker, "deliveries", viewer, hook.webhook_id)
                if d.status == "succeeded"
            ],
            30,
            "the delivery succeeds",
        )
    assert (first.status, second.status) == (429, 200)
    assert second.webhook_id == first.webhook_id
    # The second attempt waited for what the receiver asked, from when it answered.
    assert 3.0 <= second.at - first.at < 20.0
    assert [a.status_code for a in delivery.attempt_log] == [429, 200]
    assert delivery.attempt_log[1].at - delivery.attempt_log[0].at >= timedelta(seconds=3)
    assert all(a.latency_ms > 0 for a in delivery.attempt_log)  # each attempt's latency


def test_webhooks_survive_a_restarted_core(ray_session: None, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    hv = rlm.connect(settings=settings)
    try:
        viewer = _user()
        with WebhookReceiver() as receiver:
            hook = _register(hv, viewer, receiver.url)
            core = ray.get_actor(
                "rlm-core-" + worker_name(settings).removeprefix("rlm-webhooks-"),
                namespace=settings.namespace,
            )
            ray.kill(core, no_restart=False)  # Ray restarts it; its new worker is a new actor
            wait_until(lambda: _answers(hv), 60, "the restarted core answers")
            # The cached handle of the old worker is stale: the next call finds the new one.
            assert [w.webhook_id for w in hv.webhooks("list_webhooks", viewer)] == [hook.webhook_id]
            task = hv.execute(SUM, owner_id=viewer.user_id)
            [hit] = receiver.wait_for(_for_task(task.task_id), timeout=30)
            assert Webhook(hook.secret).verify(hit.body, hit.headers)["data"]["status"] == (
                "completed"
            )
    finally:
        hv.shutdown_engine()


def _answers(hv: rlm.Hypervisor) -> bool:
    try:
        hv.engine_info()
    except (ray.exceptions.ActorUnavailableError, ray.exceptions.ActorDiedError):
        return False
    return True

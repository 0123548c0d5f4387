"""``/v1/webhooks`` over real Serve: registration, scopes and tenancy, validation, the SDK, and
events that arrive signed at a receiver on loopback (threshold alerts included).

Webhooks, the outbox and the deliveries live in the state store: every test runs on both
(SQLite, then PostgreSQL) but the refused bodies and query parameters, which the routes refuse
before any store is read, and run once, on SQLite.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from rlm.errors import InvalidInput, WebhookNotFound
from rlm.testing import WebhookReceiver
from rlm.webhooks.store import WebhookStore
from rlm_hypervisor import AsyncRLMClient, RLMClient
from rlm_hypervisor.webhooks import WebhookVerificationError, verify
from tests.api.conftest import Api
from tests.support import wait_until

pytestmark = pytest.mark.integration

SUM = {"type": "recursive", "description": "s", "input": {"items": [1, 2, 3], "operation": "sum"}}
EXECUTE = "rlm:execute rlm:read"


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as r:
        yield r


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _sdk(api: Api, token: str) -> RLMClient:
    return RLMClient(api_key=token, base_url=api.base_url, max_retries=0)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["requestId"]
    details: dict[str, Any] = body["error"].get("details", {})
    return details


def test_register_receive_verify_list_retry_and_ping(api: Api, receiver: WebhookReceiver) -> None:
    user = _name("wh")
    with _sdk(api, api.token(sub=user, scopes=EXECUTE)) as client:
        created = client.webhooks.create(receiver.url, ["task.completed"], description="CI")
        assert created.secret.startswith("whsec_")
        assert [w.webhook_id for w in client.webhooks.list()] == [created.webhook_id]
        result = client.execute(SUM)
        [hit] = receiver.wait_for(lambda h: True, timeout=30)
        event = verify(hit.body, hit.headers, created.secret)
        assert event["event"] == "task.completed"
        assert event["data"]["taskId"] == result.task_id
        assert event["data"]["status"] == "completed" and event["data"]["result"]["output"] == 6
        [delivery] = wait_until(
            lambda: client.webhooks.deliveries(created.webhook_id, status="succeeded"),
            30,
            "the delivery is listed as succeeded",
        )
        assert delivery.event_id == hit.webhook_id and delivery.attempt_log[0].status_code == 200
        assert client.webhooks.delivery(created.webhook_id, delivery.delivery_id).attempts == 1
        # Retried by hand: sent again under the same webhook-id.
        assert client.webhooks.retry(created.webhook_id, delivery.delivery_id).status in (
            "pending",
            "succeeded",
        )
        second = receiver.wait_for(lambda h: True, count=2, timeout=30)[1]
        assert second.webhook_id == hit.webhook_id and second.body == hit.body
        # A ping answers with its first attempt.
        ping = client.webhooks.test(created.webhook_id)
        assert (ping.event, ping.status, ping.attempts) == ("webhook.test", "succeeded", 1)
        pinged = receiver.wait_for(lambda h: h.json()["event"] == "webhook.test", timeout=30)
        assert verify(pinged[0].body, pinged[0].headers, created.secret)["data"] == {
            "webhookId": created.webhook_id,
            "message": "a test event from RLM Hypervisor: this endpoint receives webhooks",
        }
        client.webhooks.delete(created.webhook_id)
        assert client.webhooks.list() == []
        with pytest.raises(WebhookNotFound):
            client.webhooks.get(created.webhook_id)


def test_rotation_signs_with_both_secrets_during_the_grace(
    api: Api, receiver: WebhookReceiver
) -> None:
    grace = 10  # room for the ping to be sent within it on a loaded 2-core machine
    with _sdk(api, api.token(sub=_name("rot"), scopes=EXECUTE)) as client:
        hook = client.webhooks.create(receiver.url)
        rotated = client.webhooks.rotate_secret(hook.webhook_id, grace_seconds=grace)
        expires = rotated.previous_secret_expires_at
        assert expires is not None
        client.webhooks.test(hook.webhook_id)
        [hit] = receiver.wait_for(lambda h: True, timeout=30)
        assert hit.at < expires.timestamp()  # sent within the grace: both secrets sign
        verify(hit.body, hit.headers, hook.secret)
        verify(hit.body, hit.headers, rotated.secret)
        # Once the grace is over, the old secret signs no more (no rotation in between).
        wait_until(lambda: time.time() > expires.timestamp(), grace + 5, "the grace ends")
        client.webhooks.test(hook.webhook_id)
        late = receiver.wait_for(lambda h: True, count=2, timeout=30)[1]
        verify(late.body, late.headers, rotated.secret)
        with pytest.raises(WebhookVerificationError):
            verify(late.body, late.headers, hook.secret)
        # Grace 0: the newest secret alone signs at once.
        last = client.webhooks.rotate_secret(hook.webhook_id, grace_seconds=0)
        client.webhooks.test(hook.webhook_id)
        after = receiver.wait_for(lambda h: True, count=3, timeout=30)[2]
        verify(after.body, after.headers, last.secret)
        for stale in (hook.secret, rotated.secret):
            with pytest.raises(WebhookVerificationError):
                verify(after.body, after.headers, stale)


def test_scopes_and_tenancy(api: Api, user: Callable[..., httpx.Client]) -> None:
    org = _name("org")
    owner = _name("own")
    with api.client(api.token(sub=owner, scopes=EXECUTE, org=org)) as alice:
        made = alice.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["task.completed"]}
        )
        assert made.status_code == 201, made.text
        hook = made.json()["webhookId"]
        secret = made.json()["secret"]
        assert secret.startswith("whsec_")
        # The secret is shown this once: no later answer carries it.
        for later in (alice.get(f"/webhooks/{hook}"), alice.get("/webhooks")):
            assert later.status_code == 200 and secret not in later.text
            assert "whsec_" not in later.text
        refused = alice.post(
            "/webhooks",
            json={"url": "http://127.0.0.1:9/h", "events": ["task.completed"], "scope": "org"},
        )
        assert _error(refused, 403, "FORBIDDEN")["field"] == "scope"
    paths = [
        ("GET", f"/webhooks/{hook}", None),
        ("PATCH", f"/webhooks/{hook}", {"enabled": False}),
        ("POST", f"/webhooks/{hook}/rotate-secret", None),
        ("POST", f"/webhooks/{hook}/test", None),
        ("GET", f"/webhooks/{hook}/deliveries", None),
        ("POST", f"/webhooks/{hook}/deliveries/dlv_x/retry", None),
        ("DELETE", f"/webhooks/{hook}", None),
    ]
    # Another user of the same org, and another org's admin: as if it did not exist.
    for token in (
        api.token(sub=_name("bob"), scopes=EXECUTE, org=org),
        api.token(sub=_name("boss"), scopes="rlm:admin", org=_name("other")),
    ):
        with api.client(token) as stranger:
            assert stranger.get("/webhooks").json() == {"webhooks": []}
            for method, path, body in paths:
                response = stranger.request(method, path, json=body)
                assert _error(response, 404, "WEBHOOK_NOT_FOUND")["webhookId"] == hook
    # The org's admin sees and manages it, and alone may add org-wide ones.
    with api.client(api.token(sub=_name("root"), scopes="rlm:admin", org=org)) as admin:
        assert [w["webhookId"] for w in admin.get("/webhooks").json()["webhooks"]] == [hook]
        assert admin.patch(f"/webhooks/{hook}", json={"description": "seen"}).status_code == 200
        org_wide = admin.post(
            "/webhooks",
            json={"url": "http://127.0.0.1:9/o", "events": ["task.completed"], "scope": "org"},
        )
        assert org_wide.status_code == 201 and org_wide.json()["scope"] == "org"
    # Without rlm:execute, or without a token.
    with api.client(api.token(sub=_name("ro"), scopes="rlm:read")) as reader:
        _error(reader.get("/webhooks"), 403, "FORBIDDEN")
    with api.client() as anonymous:
        _error(anonymous.get("/webhooks"), 401, "UNAUTHORIZED")
    with api.client(api.token(sub=owner, scopes=EXECUTE, org=org)) as alice:
        assert alice.get(f"/webhooks/{hook}").json()["description"] == "seen"
        assert alice.delete(f"/webhooks/{hook}").status_code == 204
        _error(alice.get(f"/webhooks/{hook}"), 404, "WEBHOOK_NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/webhooks", {"events": ["task.completed"]}, "url"),
        ("POST", "/webhooks", {"url": "http://127.0.0.1:9/h"}, "events"),
        ("POST", "/webhooks", {"url": "http://127.0.0.1:9/h", "events": ["nope"]}, "events[0]"),
        ("POST", "/webhooks", {"url": "http://127.0.0.1:9/h", "events": []}, "events"),
        (
            "POST",
            "/webhooks",
            {"url": "http://127.0.0.1:9/h", "events": ["task.completed"], "extra": 1},
            "extra",
        ),
        ("POST", "/webhooks", {"url": "ftp://x/h", "events": ["task.completed"]}, "url"),
        ("POST", "/webhooks", {"url": "http://10.0.0.1/h", "events": ["task.completed"]}, "url"),
        (
            "POST",
            "/webhooks",
            {"url": "http://169.254.169.254/latest", "events": ["task.completed"]},
            "url",
        ),
        ("GET", "/webhooks/wh_1/deliveries?limit=0", None, "limit"),
        ("GET", "/webhooks/wh_1/deliveries?status=lost", None, "status"),
        ("PATCH", "/webhooks/wh_1", {"enabled": "maybe"}, "enabled"),
        ("POST", "/webhooks/wh_1/rotate-secret", {"graceSeconds": -5}, "graceSeconds"),
    ],
)
def test_validation_errors_use_the_envelope_and_name_the_field(
    sqlite_user: Callable[..., httpx.Client], method: str, path: str, body: Any, field: str
) -> None:
    with sqlite_user(scopes=EXECUTE) as client:
        response = client.request(method, path, json=body)
    assert _error(response, 400, "INVALID_INPUT")["field"] == field


def test_a_private_address_is_refused_with_its_class(user: Callable[..., httpx.Client]) -> None:
    with user(scopes=EXECUTE) as client:
        response = client.post(
            "/webhooks", json={"url": "http://192.168.1.20/h", "events": ["task.completed"]}
        )
        details = _error(response, 400, "INVALID_INPUT")
        assert (details["field"], details["addressClass"]) == ("url", "private")
        assert client.get("/webhooks").json() == {"webhooks": []}


def test_threshold_alerts_at_80_and_100_percent_arrive_once_each(
    api: Api, receiver: WebhookReceiver
) -> None:
    user = _name("alerts")
    org = "alerts-org"
    manager_token = api.token(sub="alerts-admin", scopes="rlm:admin", tier="admin", org=org)
    with api.client(manager_token) as manager:
        made = manager.post(
            "/quotas/enterprise/org", json={"orgId": org, "agents": 10**9, "computeHours": 10**6}
        )
        assert made.status_code in (201, 400), made.text  # 400: made by an earlier test
        limits = {
            "userId": user,
            "dailyAgentLimit": 10,
            "weeklyAgentLimit": 1000,
            "monthlyAgentLimit": 1000,
            "dailyComputeHours": 100.0,
            "maxConcurrentAgents": 5,
            "maxStorageGB": 1.0,
        }
        # Setting the limits of a user in no org places the user in the manager's org.
        assert manager.put(f"/quotas/user/{user}", json=limits).status_code == 200
    with WebhookReceiver() as org_receiver, _sdk(api, manager_token) as admin:
        org_hook = admin.webhooks.create(
            org_receiver.url, ["quota.threshold_exceeded"], scope="org"
        )
        with _sdk(api, api.token(sub=user, scopes=EXECUTE)) as client:
            hook = client.webhooks.create(receiver.url, ["quota.threshold_exceeded"])
            for _ in range(10):
                client.execute(SUM)
            with pytest.raises(Exception, match="quota"):
                client.execute(SUM)  # refused at 100 %: no new event
            wait_until(
                lambda: len(client.webhooks.deliveries(hook.webhook_id, status="succeeded")) == 2,
                30,
                "both deliveries to the user's webhook succeed",
            )
        mine = org_receiver.wait_for(lambda h: True, count=2, timeout=30)
        admin.webhooks.delete(org_hook.webhook_id)  # other tests' users are in no such org
    for hits, secret in ((receiver.received, hook.secret), (mine, org_hook.secret)):
        events = [verify(h.body, h.headers, secret) for h in hits]
        assert sorted((e["data"]["threshold"], e["data"]["period"]) for e in events) == [
            (80, "daily"),
            (100, "daily"),
        ]
        assert all(e["data"]["userId"] == user for e in events)
        assert all(e["data"]["usage"]["userId"] == user for e in events)
        assert len({h.webhook_id for h in hits}) == 2
    assert len(receiver.received) == 2
    # The outbox holds exactly these two threshold events for the user: none repeated.
    store = WebhookStore(
        api.settings.database_path, api.settings.webhooks, database_url=api.settings.database_dsn
    )
    try:
        bodies = [
            body
            for _, body, _, _ in store.events("quota.threshold_exceeded", limit=500)
            if f'"userId":"{user}"'.encode() in body
        ]
    finally:
        store.close()
    assert len(bodies) == 2


def test_the_async_sdk_covers_the_routes(api: Api, receiver: WebhookReceiver) -> None:
    token = api.token(sub=_name("async"), scopes=EXECUTE)

    async def main() -> None:
        async with AsyncRLMClient(api_key=token, base_url=api.base_url) as client:
            hook = await client.webhooks.create(receiver.url)
            assert (await client.webhooks.get(hook.webhook_id)).url == receiver.url
            changed = await client.webhooks.update(
                hook.webhook_id, events=["task.completed", "quota.threshold_exceeded"]
            )
            assert changed.events == ["task.completed", "quota.threshold_exceeded"]
            ping = await client.webhooks.test(hook.webhook_id)
            assert ping.status == "succeeded"
            [listed] = await client.webhooks.deliveries(hook.webhook_id)
            assert (await client.webhooks.delivery(hook.webhook_id, listed.delivery_id)).attempts
            rotated = await client.webhooks.rotate_secret(hook.webhook_id)
            assert rotated.secret != hook.secret
            assert [w.webhook_id for w in await client.webhooks.list()] == [hook.webhook_id]
            await client.webhooks.delete(hook.webhook_id)
            with pytest.raises(InvalidInput):
                await client.webhooks.create("http://10.9.8.7/h")

    asyncio.run(main())


def _pool(api: Api, kind: str) -> tuple[str, str, str, str, str]:
    """A parent org with ample caps, and a child org whose monthly caps (``kind`` ``org``) or
    whose team's pool (``team``) is 10 agent calls, with a member with ample limits of its own:
    ``(org, team, user, manager token, parent's manager token)``. Only the pool's thresholds
    can fire: everything else is ample."""
    parent, org = _name("parent"), _name(f"{kind}-org")
    team, user = _name("team"), _name(f"{kind}-member")
    parent_token = api.token(sub=f"{parent}-admin", scopes="rlm:admin", tier="admin", org=parent)
    manager_token = api.token(sub=f"{org}-admin", scopes="rlm:admin", tier="admin", org=org)
    ample = {"agents": 10**6, "computeHours": 10**4}
    caps = {"agents": 10, "computeHours": 100.0} if kind == "org" else ample
    with api.client(parent_token) as owner:
        made = owner.post("/quotas/enterprise/org", json={"orgId": parent, **ample})
        assert made.status_code == 201, made.text
        made = owner.post("/quotas/enterprise/org", json={"orgId": org, "parentId": parent, **caps})
        assert made.status_code == 201, made.text
    with api.client(manager_token) as manager:
        limits = {
            "userId": user,
            "dailyAgentLimit": 1000,
            "weeklyAgentLimit": 1000,
            "monthlyAgentLimit": 1000,
            "dailyComputeHours": 100.0,
            "maxConcurrentAgents": 5,
            "maxStorageGB": 1.0,
        }
        assert manager.put(f"/quotas/user/{user}", json=limits).status_code == 200
        if kind == "team":
            pool = {
                "teamId": team,
                "teamName": "Pool",
                "totalAgentPool": 10,
                "totalComputeHours": 100,
                "totalStorageGB": 1,
            }
            made = manager.post("/quotas/team", json=pool)
            assert made.status_code == 201, made.text
            joined = manager.put(f"/quotas/team/{team}/members/{user}", json={})
            assert joined.status_code == 200, joined.text
    return org, team, user, manager_token, parent_token


@pytest.mark.parametrize("kind", ["team", "org"])
def test_a_team_pool_and_an_orgs_caps_alert_at_80_and_100_percent_once_each(
    api: Api, kind: str
) -> None:
    """A team's pool and an org's caps are monthly windows: reaching 80 % and 100 % of them
    sends one event each to the org-wide webhooks of the team's org (of that org), carrying
    ``teamId`` + ``orgId`` (``orgId``) instead of a ``userId``; the call refused at 100 % and
    the calls before 80 % send nothing."""
    org, team, user, manager_token, parent_token = _pool(api, kind)
    key = "teamId" if kind == "team" else "orgId"
    ours = team if kind == "team" else org
    with (
        WebhookReceiver() as org_receiver,
        _sdk(api, manager_token) as admin,
        _sdk(api, parent_token) as parent_admin,
    ):
        org_hook = admin.webhooks.create(
            org_receiver.url, ["quota.threshold_exceeded"], scope="org"
        )
        # The parent org's webhook: its child's events are the child's managers' business.
        parent_hook = parent_admin.webhooks.create(
            org_receiver.url, ["quota.threshold_exceeded"], scope="org"
        )
        token = api.token(sub=user, scopes=EXECUTE, org=org)
        with _sdk(api, token) as client:
            # The member's own webhook gets its own thresholds, never the pool's.
            own = client.webhooks.create(org_receiver.url, ["quota.threshold_exceeded"])
            used = 0
            while used < 7:
                used += client.execute(SUM).agent_calls
            assert used == 7  # one agent call each
            assert org_receiver.received == []  # 70 %: nothing yet (checked again below)
            for _ in range(3):
                used += client.execute(SUM).agent_calls
            with pytest.raises(Exception, match="quota"):
                client.execute(SUM)  # refused at 100 %: no new event

        def both_succeeded() -> list[Any]:
            found = admin.webhooks.deliveries(org_hook.webhook_id)
            return found if len(found) == 2 and {d.status for d in found} == {"succeeded"} else []

        wait_until(both_succeeded, 30, "the two deliveries to the org's webhook succeed")
        hits = org_receiver.received
        with _sdk(api, token) as client:
            # An event's deliveries are all made at once, so the member's would be there now.
            assert client.webhooks.deliveries(own.webhook_id) == []
            client.webhooks.delete(own.webhook_id)
        assert parent_admin.webhooks.deliveries(parent_hook.webhook_id) == []
        parent_admin.webhooks.delete(parent_hook.webhook_id)
        admin.webhooks.delete(org_hook.webhook_id)
    assert len(hits) == 2 and len({h.webhook_id for h in hits}) == 2  # once each
    events = [verify(h.body, h.headers, org_hook.secret) for h in hits]
    assert sorted(e["data"]["threshold"] for e in events) == [80, 100]
    for event in events:
        data = event["data"]
        assert event["event"] == "quota.threshold_exceeded"
        assert data[key] == ours and data["orgId"] == org and "userId" not in data
        assert data["period"] == "monthly"
        assert data["usage"]["agentsTotal"] == 10
        assert data["usage"]["agentsUsed"] == data["threshold"] // 10  # 8 then 10
    # The outbox holds exactly these two events for the pool: none repeated, none more.
    store = WebhookStore(
        api.settings.database_path, api.settings.webhooks, database_url=api.settings.database_dsn
    )
    try:
        mark = f'"{key}":"{ours}"'.encode()
        bodies = [b for _, b, _, _ in store.events("quota.threshold_exceeded", 500) if mark in b]
    finally:
        store.close()
    assert len(bodies) == 2

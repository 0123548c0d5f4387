"""Quotas through real HTTP: admission is all or nothing, refusals charge nothing, ends release."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import ray

from rlm.quotas.alerts import THRESHOLD_EVENT
from rlm.webhooks.store import WebhookStore
from tests.api.conftest import Api
from tests.support import ok_response, wait_until

pytestmark = pytest.mark.integration

SUM = {
    "type": "recursive",
    "description": "one agent call",
    "input": {"items": list(range(10)), "operation": "sum"},
}


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


def _manager(api: Api) -> httpx.Client:
    return api.client(
        api.token(sub="quota-admin", scopes="rlm:quota:manage", tier="admin", org="acme")
    )


def _limits(api: Api, user: str, daily: int, **extra: Any) -> None:
    with _manager(api) as manager:
        # The manager's org (made once per session; 409 when it exists). Setting the limits of
        # a user in no org places the user in it.
        made = manager.post(
            "/quotas/enterprise/org", json={"orgId": "acme", "agents": 10**9, "computeHours": 10**6}
        )
        assert made.status_code in (201, 409), made.text
        config = {
            "userId": user,
            "dailyAgentLimit": daily,
            "weeklyAgentLimit": 10 * daily + 100,
            "monthlyAgentLimit": 100 * daily + 100,
            "dailyComputeHours": 10.0,
            "maxConcurrentAgents": 500,
            "maxStorageGB": 1.0,
            **extra,
        }
        response = manager.put(f"/quotas/user/{user}", json=config)
        assert response.status_code == 200, response.text
        assert response.json()["maxStorageGB"] == 1.0


def _status(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/quotas/user/me")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_concurrent_executes_admit_exactly_what_fits(api: Api) -> None:
    user = f"q-{uuid.uuid4().hex[:8]}"
    _limits(api, user, daily=10)
    token = api.token(sub=user, scopes="rlm:execute rlm:read rlm:quota:read", tier="enterprise")

    def one(_: int) -> httpx.Response:
        with api.client(token) as client:
            return client.post("/execute", json=SUM)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(one, range(64)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 10, codes
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == 54
    for r in refused:
        error = r.json()["error"]
        assert error["code"] == "QUOTA_EXCEEDED"
        assert {"resource", "period", "limit", "used", "resetTime"} <= set(error["details"])
        assert int(r.headers["Retry-After"]) >= 1
    with api.client(token) as client:
        daily = _status(client)["daily"]
        assert (daily["agentsUsed"], daily["agentsRemaining"], daily["exceeded"]) == (10, 0, True)
        # A refused request changes no counter; a dry-run check charges nothing.
        assert client.post("/execute", json=SUM).status_code == 429
        check = client.post(f"/quotas/user/{user}/check", json={"agentsRequested": 1})
        assert check.json()["allowed"] is False
        assert _status(client)["daily"]["agentsUsed"] == 10


def test_cancel_and_timeout_release_their_reservation(api: Api) -> None:
    user = f"q-{uuid.uuid4().hex[:8]}"
    _limits(api, user, daily=1000)
    token = api.token(sub=user, scopes="rlm:execute rlm:read rlm:quota:read", tier="enterprise")
    slow = {
        "type": "parallel",
        "description": "slow",
        "input": {"items": [1, 2, 3, 4], "operation": "slow_sum", "params": {"seconds": 5}},
        "options": {"leafSize": 1, "async": True},
    }
    with api.client(token) as client:
        task_id = client.post("/execute", json=slow).json()["taskId"]
        held = _status(client)
        assert held["daily"]["agentsUsed"] == 5  # the plan: 4 leaves and a combine
        assert held["currentConcurrentAgents"] >= 1
        assert client.post(f"/tasks/{task_id}/cancel").json()["status"] == "cancelled"
        after = _status(client)
        assert after["daily"]["agentsUsed"] == 0
        assert after["currentConcurrentAgents"] == 0

        timed = {**slow, "options": {"leafSize": 1, "timeoutMs": 300}}
        assert client.post("/execute", json=timed).status_code == 408
        final = _status(client)
        assert final["daily"]["agentsUsed"] == 0
        assert final["currentConcurrentAgents"] == 0

        # A finished task is charged what it really used.
        assert client.post("/execute", json=SUM).status_code == 200
        assert _status(client)["daily"]["agentsUsed"] == 1


def test_quota_reads_are_scoped(api: Api) -> None:
    with api.client(api.token(sub="nosy", scopes="rlm:quota:read")) as nosy:
        assert nosy.get("/quotas/user/nosy").status_code == 200
        assert nosy.get("/quotas/user/someone-else").status_code == 403
    with api.client(api.token(sub="plain", scopes="rlm:execute")) as plain:
        assert plain.get("/quotas/user/me").status_code == 403
        assert plain.put("/quotas/user/plain", json={}).status_code in (400, 403)


def test_usage_survives_an_engine_restart(api: Api) -> None:
    import rlm

    user = f"q-{uuid.uuid4().hex[:8]}"
    _limits(api, user, daily=100, dailyTokenLimit=1000)
    token = api.token(sub=user, scopes="rlm:execute rlm:read rlm:quota:read", tier="enterprise")
    hv = rlm.connect(settings=api.settings)
    with api.client(token) as client:
        for _ in range(3):
            assert client.post("/execute", json=SUM).status_code == 200
        before = _status(client)["daily"]["agentsUsed"]
        assert before == 3
        # Token usage survives too; the holds of a task that dies with the engine (its agent
        # call and an LM call's tokens) are released: on SQLite with every hold of the engine
        # before, on PostgreSQL (shared by instances) with the tasks marked interrupted.
        settled = hv.quotas("reserve_tokens", user, 100)
        hv.quotas("settle_tokens", settled.hold_id, 60, 40, 0.5)
        slow = {
            "type": "parallel",
            "description": "dies with the engine",
            "input": {"items": [1], "operation": "slow_sum", "params": {"seconds": 60}},
            "options": {"async": True},
        }
        accepted = client.post("/execute", json=slow)
        assert accepted.status_code == 202, accepted.text
        dying = accepted.json()["taskId"]
        hv.quotas("reserve_tokens", user, 300, task_id=dying)
        assert _status(client)["daily"]["tokensRemaining"] == 600
        from rlm.runtime.hypervisor import core_actor_name

        core = ray.get_actor(core_actor_name(api.settings), namespace=api.settings.namespace)
        ray.kill(core, no_restart=False)  # Ray restarts it; the new one reloads the state
        response = wait_until(
            lambda: ok_response(lambda: client.get("/quotas/user/me")),
            60,
            "the restarted engine answers /quotas/user/me",
            interval=0.5,
        )
        daily = response.json()["daily"]
        assert daily["agentsUsed"] == before
        assert (daily["tokensUsed"], daily["costUsd"], daily["tokensRemaining"]) == (100, 0.5, 900)
        interrupted = client.get(f"/tasks/{dying}").json()
        assert interrupted["status"] == "failed", interrupted
        assert client.post("/execute", json=SUM).status_code == 200


def test_crossing_thresholds_records_one_event_each(api: Api) -> None:
    user = f"alerts-{uuid.uuid4().hex[:8]}"
    _limits(api, user, daily=10)

    def events() -> list[dict[str, Any]]:
        # The engine moves the ledger's events into the webhook outbox as the task ends.
        store = WebhookStore(
            api.settings.database_path,
            api.settings.webhooks,
            database_url=api.settings.database_dsn,
        )
        try:
            found = [json.loads(b) for _, b, _, _ in store.events(THRESHOLD_EVENT, limit=1000)]
        finally:
            store.close()
        return [e for e in reversed(found) if e["data"].get("userId") == user]

    def crossed() -> list[tuple[int, str]]:
        return [(e["data"]["threshold"], e["data"]["period"]) for e in events()]

    with api.client(api.token(sub=user)) as client:
        for _ in range(7):
            assert client.post("/execute", json=SUM).status_code == 200
        assert crossed() == []  # 7 of 10: below 80 %
        assert client.post("/execute", json=SUM).status_code == 200
        assert crossed() == [(80, "daily")]
        assert client.post("/execute", json=SUM).status_code == 200
        assert crossed() == [(80, "daily")]  # once per threshold per window
        assert client.post("/execute", json=SUM).status_code == 200
        assert client.post("/execute", json=SUM).status_code == 429  # refused: no new event
    assert crossed() == [(80, "daily"), (100, "daily")]
    payload = events()[-1]
    assert payload["event"] == "quota.threshold_exceeded"
    assert payload["data"]["usage"]["daily"]["agentsUsed"] == 10


def test_a_daily_token_limit_is_set_read_back_and_reports_usage(api: Api) -> None:
    import rlm

    user = f"tok-{uuid.uuid4().hex[:8]}"
    _limits(api, user, daily=10, dailyTokenLimit=5000)
    with _manager(api) as manager:
        config = manager.get(f"/quotas/user/{user}").json()
        daily = config["daily"]
        assert (daily["tokenLimit"], daily["tokensRemaining"]) == (5000, 5000)
        assert (daily["tokensUsed"], daily["costUsd"]) == (0, 0.0)
        assert "tokenLimit" not in config["weekly"]  # the limit is daily only
        # The API document's fields are all still there, unchanged.
        assert {"agentsUsed", "agentsLimit", "agentsRemaining", "exceeded"} <= set(daily)

        hv = rlm.connect(settings=api.settings)  # the service's own engine (same state dir)
        hold = hv.quotas("reserve_tokens", user, 1200, task_id="lm-1")
        assert manager.get(f"/quotas/user/{user}").json()["daily"]["tokensRemaining"] == 3800
        hv.quotas("settle_tokens", hold.hold_id, 700, 300, 0.02)
        daily = manager.get(f"/quotas/user/{user}").json()["daily"]
        assert (daily["tokensUsed"], daily["costUsd"], daily["tokensRemaining"]) == (
            1000,
            0.02,
            4000,
        )
        org = manager.get("/quotas/enterprise/org/acme/hierarchy").json()["org"]
        assert org["tokensUsed"] >= 1000 and org["costUsd"] >= 0.02  # the user's org is charged

        bad = manager.put(
            f"/quotas/user/{user}",
            json={
                "userId": user,
                "dailyAgentLimit": 10,
                "weeklyAgentLimit": 200,
                "monthlyAgentLimit": 1100,
                "dailyComputeHours": 10.0,
                "maxConcurrentAgents": 500,
                "maxStorageGB": 1.0,
                "dailyTokenLimit": -1,
            },
        )
        assert bad.status_code == 400
        # Leaving the field out sets no limit.
        _limits(api, user, daily=10)
        daily = manager.get(f"/quotas/user/{user}").json()["daily"]
        assert "tokenLimit" not in daily and daily["tokensUsed"] == 1000

"""``Idempotency-Key`` on ``POST /v1/execute`` over real HTTP: one task, one charge, per key."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api
from tests.support import wait_until

pytestmark = pytest.mark.integration

SCOPES = "rlm:execute rlm:read rlm:quota:read"
# Five leaves and their combines: more than one agent call, so "charged once" is not "charged 1".
SUM = {
    "type": "recursive",
    "description": "sum",
    "input": {"items": list(range(20)), "operation": "sum"},
    "options": {"leafSize": 4, "fanout": 5},
}


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


def _slow(seconds: float, **options: object) -> dict[str, Any]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": [1, 2], "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1, **options},
    }


def _used(client: httpx.Client) -> int:
    response = client.get("/quotas/user/me")
    assert response.status_code == 200, response.text
    return int(response.json()["daily"]["agentsUsed"])


def test_the_same_execute_sent_five_times_runs_once_and_is_charged_once(api: Api) -> None:
    with api.client(api.token(scopes=SCOPES)) as client:
        key = {"Idempotency-Key": f"retry-{uuid.uuid4()}"}
        answers = [client.post("/execute", json=SUM, headers=key) for _ in range(5)]
        assert [a.status_code for a in answers] == [200] * 5, answers[0].text
        bodies = [a.json() for a in answers]
        assert {b["taskId"] for b in bodies} == {bodies[0]["taskId"]}
        assert bodies[0]["output"] == sum(range(20)) and bodies[0]["agentCalls"] > 1
        assert all(b == bodies[0] for b in bodies)  # the first result, as it was
        replayed = [a.headers.get("Idempotent-Replayed") for a in answers]
        assert replayed == [None, "true", "true", "true", "true"]
        assert _used(client) == bodies[0]["agentCalls"]
        listed = client.get("/tasks").json()["tasks"]
        assert [t["taskId"] for t in listed] == [bodies[0]["taskId"]]


def test_the_key_with_another_body_is_refused(api: Api) -> None:
    with api.client(api.token(scopes=SCOPES)) as client:
        key = {"Idempotency-Key": "k-body"}
        first = client.post("/execute", json=SUM, headers=key)
        assert first.status_code == 200
        other = client.post("/execute", json={**SUM, "description": "another"}, headers=key)
        assert other.status_code == 400, other.text
        error = other.json()["error"]
        assert error["code"] == "INVALID_INPUT"
        assert error["details"]["field"] == "Idempotency-Key"
        assert error["details"]["taskId"] == first.json()["taskId"]
        # Reformatted JSON of the same request is the same body.
        same = client.post(
            "/execute",
            content=httpx.Request("POST", "/", json=SUM).content.replace(b",", b", "),
            headers={**key, "Content-Type": "application/json"},
        )
        assert same.status_code == 200 and same.json()["taskId"] == first.json()["taskId"]
        assert _used(client) == first.json()["agentCalls"]


def test_a_duplicate_in_flight_waits_on_the_first(api: Api) -> None:
    with api.client(api.token(scopes=SCOPES)) as client:
        key = {"Idempotency-Key": "k-in-flight"}
        with ThreadPoolExecutor(3) as pool:
            answers = list(
                pool.map(lambda _: client.post("/execute", json=_slow(1.0), headers=key), range(3))
            )
        assert [a.status_code for a in answers] == [200] * 3, answers[0].text
        bodies = [a.json() for a in answers]
        assert len({b["taskId"] for b in bodies}) == 1
        assert all(b["status"] == "completed" and b["output"] == 3 for b in bodies)
        assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == [
            "",
            "true",
            "true",
        ]
        assert _used(client) == bodies[0]["agentCalls"]


def test_async_submits_under_one_key_name_one_task(api: Api) -> None:
    with api.client(api.token(scopes=SCOPES)) as client:
        key = {"Idempotency-Key": "k-async"}
        request = _slow(0.3, **{"async": True})
        first = client.post("/execute", json=request, headers=key)
        again = client.post("/execute", json=request, headers=key)
        assert (first.status_code, again.status_code) == (202, 202)
        task_id = first.json()["taskId"]
        assert again.json()["taskId"] == task_id
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Location"] == f"/v1/tasks/{task_id}"
        wait_until(
            lambda: client.get(f"/tasks/{task_id}").json()["status"] == "completed",
            60,
            f"{task_id} completes",
        )
        # Once the task has ended, a repeat answers its result.
        done = client.post("/execute", json=request, headers=key)
        assert done.status_code == 202
        assert (done.json()["status"], done.json()["output"]) == ("completed", 3)
        assert _used(client) == done.json()["agentCalls"]


def test_keys_belong_to_their_caller(api: Api) -> None:
    key = {"Idempotency-Key": "k-shared-name"}
    with api.client(api.token(scopes=SCOPES)) as alice, api.client(api.token(scopes=SCOPES)) as bob:
        a = alice.post("/execute", json=SUM, headers=key)
        b = bob.post("/execute", json={**SUM, "description": "bob's"}, headers=key)
        assert (a.status_code, b.status_code) == (200, 200)
        assert a.json()["taskId"] != b.json()["taskId"]
        assert "Idempotent-Replayed" not in b.headers


def test_a_bad_key_is_refused_before_anything_runs(api: Api) -> None:
    with api.client(api.token(scopes=SCOPES)) as client:
        for bad in ("x" * 201, "tab\there"):
            response = client.post("/execute", json=SUM, headers={"Idempotency-Key": bad})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["details"]["field"].lower() == "idempotency-key"
        assert _used(client) == 0

"""The task routes over real HTTP: the document's example, async mode, status, cancel, tenancy."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.api.conftest import Api
from tests.support import wait_until

pytestmark = pytest.mark.integration

DOC_EXAMPLE = {
    "type": "recursive",
    "description": "Sum large dataset",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
    "options": {"timeoutMs": 30000, "priority": "normal"},
}


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


def _slow(seconds: float, n: int = 1, **options: object) -> dict[str, object]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": list(range(n)), "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1, **options},
    }


def _poll(client: httpx.Client, task_id: str, until: set[str]) -> dict[str, object]:
    seen: list[dict[str, object]] = []

    def reached() -> bool:
        seen[:] = [client.get(f"/tasks/{task_id}").json()]
        return seen[0]["status"] in until

    wait_until(reached, 60, lambda: f"{task_id} reaches one of {sorted(until)}: {seen}")
    return seen[0]


def test_the_documents_curl_example(api: Api) -> None:
    token = api.token(sub="alice")
    response = httpx.post(
        f"{api.base_url}/execute",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        json=DOC_EXAMPLE,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"] == 55
    assert body["status"] == "completed" and body["success"] is True
    assert set(body) >= {"taskId", "executionTimeMs", "agentCalls", "decompositionDepth"}
    assert response.headers["RateLimit-Policy"] == "60;w=60, 1000;w=3600"
    assert response.headers["RateLimit"].startswith("limit=60, remaining=")


def test_status_of_a_completed_task(user: Callable[..., httpx.Client]) -> None:
    with user() as client:
        done = client.post("/execute", json=DOC_EXAMPLE).json()
        status = client.get(f"/tasks/{done['taskId']}")
        assert status.status_code == 200
        body = status.json()
        assert body["status"] == "completed"
        assert body["progress"] == {"current": 1, "total": 1, "percentage": 100.0}
        assert body["result"]["output"] == 55
        assert "createdAt" in body and "completedAt" in body


@pytest.mark.parametrize("how", ["option", "prefer"])
def test_async_mode_answers_202_and_polls(user: Callable[..., httpx.Client], how: str) -> None:
    request = _slow(0.2, n=4)
    headers = {}
    if how == "option":
        request["options"] = {**request["options"], "async": True}  # type: ignore[dict-item]
    else:
        headers["Prefer"] = "respond-async"
    with user() as client:
        response = client.post("/execute", json=request, headers=headers)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "pending"
        assert response.headers["Location"] == f"/v1/tasks/{body['taskId']}"
        final = _poll(client, body["taskId"], {"completed", "failed"})
        assert final["status"] == "completed"
        assert final["result"]["output"] == 6  # type: ignore[index]
        assert final["progress"]["current"] == final["progress"]["total"] == 5  # type: ignore[index]


def test_cancel_flow(user: Callable[..., httpx.Client]) -> None:
    with user() as client:
        task_id = client.post("/execute", json={**_slow(10.0), "options": {"async": True}}).json()[
            "taskId"
        ]
        _poll(client, task_id, {"running"})
        response = client.post(f"/tasks/{task_id}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert client.get(f"/tasks/{task_id}").json()["status"] == "cancelled"
        again = client.post(f"/tasks/{task_id}/cancel").json()
        assert again["status"] == "already_completed"


def test_tenants_never_see_each_other(api: Api) -> None:
    alice = api.client(api.token(sub="tenant-alice", org="acme"))
    bob = api.client(api.token(sub="tenant-bob", org="acme"))
    admin = api.client(api.token(sub="tenant-admin", org="acme", scopes="rlm:admin"))
    outsider = api.client(api.token(sub="tenant-eve", org="other", scopes="rlm:admin"))
    with alice, bob, admin, outsider:
        task_id = alice.post("/execute", json=DOC_EXAMPLE).json()["taskId"]
        for other in (bob, outsider):
            for response in (
                other.get(f"/tasks/{task_id}"),
                other.post(f"/tasks/{task_id}/cancel"),
            ):
                assert response.status_code == 404
                assert response.json()["error"]["code"] == "TASK_NOT_FOUND"
            assert task_id not in [t["taskId"] for t in other.get("/tasks").json()["tasks"]]
        assert admin.get(f"/tasks/{task_id}").status_code == 200
        assert task_id in [t["taskId"] for t in admin.get("/tasks").json()["tasks"]]
        assert task_id in [t["taskId"] for t in alice.get("/tasks").json()["tasks"]]


def test_health_needs_no_token(api: Api) -> None:
    response = httpx.get(
        f"{api.base_url}/health",
        headers={"Authorization": f"Bearer {api.token(tier='enterprise')}"},
    )
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_lists_every_route_with_errors(api: Api) -> None:
    doc = httpx.get(api.base_url.removesuffix("/v1") + "/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/v1/execute", "post"),
        ("/v1/tasks/{taskId}", "get"),
        ("/v1/tasks/{taskId}/cancel", "post"),
        ("/v1/tasks", "get"),
        ("/v1/health", "get"),
    ]:
        assert method in paths[path], path
    for code in ("400", "401", "403", "429", "500", "408", "202"):
        assert code in paths["/v1/execute"]["post"]["responses"]
    assert "404" in paths["/v1/tasks/{taskId}"]["get"]["responses"]

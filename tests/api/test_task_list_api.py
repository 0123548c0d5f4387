"""``GET /tasks`` filtered and paged over real HTTP: filters, cursors, tenancy, bad input, SDKs.

The filters and cursors are SQL: every test that lists runs on both state stores (SQLite, then
PostgreSQL). Two run once, on SQLite, as they never reach the store: the bad query parameters
(refused by the route before any query) and the OpenAPI document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rlm.errors import InvalidInput
from rlm_hypervisor import AsyncRLMClient, RLMClient
from tests.api.conftest import Api
from tests.support import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


def _task(operation: str, type_: str = "parallel", **options: Any) -> dict[str, Any]:
    return {
        "type": type_,
        "description": f"{operation} for the list",
        "input": {"items": [1, 2, 3, 4], "operation": operation},
        "options": options,
    }


def _slow(seconds: float, n: int) -> dict[str, Any]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": list(range(n)), "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1, "async": True},
    }


@dataclass
class Tenants:
    """Three users of org acme (one of them its admin) and one of org other, with tasks."""

    api: Api
    ada: httpx.Client
    bob: httpx.Client
    admin: httpx.Client
    eve: httpx.Client
    ada_tasks: list[str]  # newest first
    bob_task: str
    eve_task: str
    running: str
    between: tuple[str, str]  # since / until around ada's middle tasks


def _ids(body: dict[str, Any]) -> list[str]:
    return [t["taskId"] for t in body["tasks"]]


@pytest.fixture(scope="module")
def tenants(api: Api) -> Iterator[Tenants]:
    suffix = datetime.now(UTC).strftime("%H%M%S%f")
    ada = api.client(api.token(sub=f"list-ada-{suffix}", org=f"acme-{suffix}"))
    bob = api.client(api.token(sub=f"list-bob-{suffix}", org=f"acme-{suffix}"))
    admin = api.client(
        api.token(sub=f"list-admin-{suffix}", org=f"acme-{suffix}", scopes="rlm:read rlm:admin")
    )
    eve = api.client(
        api.token(
            sub=f"list-eve-{suffix}", org=f"other-{suffix}", scopes="rlm:execute rlm:read rlm:admin"
        )
    )
    with ada, bob, admin, eve:
        made: list[str] = []
        marks: list[str] = []
        for body in (
            _task("sum"),
            _task("max", "recursive"),
            _task("sum", "sequential"),
            _task("min"),
            _task("sum"),
        ):
            marks.append(datetime.now(UTC).isoformat())
            answer = ada.post("/execute", json=body)
            assert answer.status_code == 200, answer.text
            made.append(answer.json()["taskId"])
        bob_task = bob.post("/execute", json=_task("sum")).json()["taskId"]
        eve_task = eve.post("/execute", json=_task("sum")).json()["taskId"]
        # A task still running while the tests read: 2 slow leaves of 20 s each.
        running = ada.post("/execute", json=_slow(20.0, 2)).json()["taskId"]
        wait_until(
            lambda: ada.get(f"/tasks/{running}").json()["status"] == "running",
            60,
            "the slow task runs",
        )
        yield Tenants(
            api,
            ada,
            bob,
            admin,
            eve,
            [running, *reversed(made)],
            bob_task,
            eve_task,
            running,
            (marks[1], marks[3]),
        )
        ada.post(f"/tasks/{running}/cancel")


def test_each_filter_selects_on_the_server(tenants: Tenants) -> None:
    ada = tenants.ada
    everything = ada.get("/tasks", params={"limit": 500}).json()
    assert _ids(everything) == tenants.ada_tasks
    assert "nextCursor" not in everything
    by_status = ada.get("/tasks", params={"status": "completed"}).json()
    assert _ids(by_status) == tenants.ada_tasks[1:]
    # A task running here is stored "pending": the live status decides.
    assert _ids(ada.get("/tasks", params={"status": "running"}).json()) == [tenants.running]
    assert _ids(ada.get("/tasks", params={"status": "pending"}).json()) == []
    several = ada.get("/tasks", params={"status": "running, completed"}).json()
    assert _ids(several) == tenants.ada_tasks
    sums = ada.get("/tasks", params={"operation": "sum"}).json()
    assert all(t["operation"] == "sum" for t in sums["tasks"]) and len(sums["tasks"]) == 3
    typed = ada.get("/tasks", params={"type": "recursive"}).json()
    assert [t["type"] for t in typed["tasks"]] == ["recursive"]
    since, until = tenants.between
    window = ada.get("/tasks", params={"since": since, "until": until}).json()
    # Tasks 2 and 3 (of 5, oldest first) were created in [mark 2, mark 4).
    assert _ids(window) == tenants.ada_tasks[3:5]
    combined = ada.get(
        "/tasks", params={"status": "completed", "operation": "sum", "type": "parallel"}
    ).json()
    assert _ids(combined) == [tenants.ada_tasks[1], tenants.ada_tasks[5]]


def test_a_cursor_walks_the_pages_once_each(tenants: Tenants) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2, "status": "completed,running"}
    for _ in range(10):
        body = tenants.ada.get("/tasks", params=params).json()
        assert len(body["tasks"]) <= 2
        seen += _ids(body)
        if "nextCursor" not in body:
            break
        params["cursor"] = body["nextCursor"]
    assert seen == tenants.ada_tasks


def test_tenants_see_their_own_and_an_admin_its_org(tenants: Tenants) -> None:
    assert _ids(tenants.bob.get("/tasks").json()) == [tenants.bob_task]
    admin = _ids(tenants.admin.get("/tasks", params={"limit": 500}).json())
    assert set(admin) == {*tenants.ada_tasks, tenants.bob_task}
    assert tenants.eve_task not in admin
    # The other org's admin: its own task only, whatever the filters.
    assert _ids(tenants.eve.get("/tasks", params={"operation": "sum"}).json()) == [tenants.eve_task]
    assert _ids(tenants.eve.get("/tasks", params={"status": "running"}).json()) == []
    # A cursor from another tenant's page names a position, not a permission.
    page = tenants.admin.get("/tasks", params={"limit": 1}).json()
    after = tenants.eve.get("/tasks", params={"cursor": page["nextCursor"]}).json()
    assert set(_ids(after)) <= {tenants.eve_task}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": ","}, "status"),
        ({"type": "fractal"}, "type"),
        ({"operation": "a b"}, "operation"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no offset
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"until": "2026-01-01T00:00:00+25:00"}, "until"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "not base64!"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
    ],
)
def test_bad_input_is_a_400_in_the_envelope(
    sqlite_user: Callable[..., httpx.Client], params: dict[str, Any], field: str
) -> None:
    with sqlite_user() as client:
        response = client.get("/tasks", params=params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert field in error["message"] or error.get("details", {}).get("field") == field


def test_the_document_describes_the_filters(sqlite_api: Api) -> None:
    document = httpx.get(
        sqlite_api.base_url.removesuffix("/v1") + "/openapi.json", timeout=30
    ).json()
    route = document["paths"]["/v1/tasks"]["get"]
    names = {p["name"] for p in route["parameters"]}
    assert {"limit", "status", "type", "operation", "since", "until", "cursor"} <= names
    page = route["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/TaskPage"}
    assert "nextCursor" in document["components"]["schemas"]["TaskPage"]["properties"]


def test_the_sdks_pass_the_filters_and_follow_the_cursor(tenants: Tenants) -> None:
    token = tenants.ada.headers["Authorization"].removeprefix("Bearer ")
    base = tenants.api.base_url
    with RLMClient(token, base_url=base) as client:
        assert [t.task_id for t in client.tasks.list(status=["running"])] == [tenants.running]
        seen, cursor = [], None
        while True:
            page = client.tasks.list_page(2, status="completed", cursor=cursor)
            seen += [t.task_id for t in page.tasks]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == tenants.ada_tasks[1:]
        since = datetime.fromisoformat(tenants.between[0])
        later = client.tasks.list(since=since, until=since + timedelta(days=1), operation="min")
        assert [t.operation for t in later] == ["min"]
        with pytest.raises(InvalidInput):
            client.tasks.list(status="finished")

    async def read_async() -> tuple[list[str], str | None]:
        async with AsyncRLMClient(token, base_url=base) as client:
            page = await client.tasks.list_page(1, type="sequential")
            return [t.task_id for t in page.tasks], page.next_cursor

    ids, after = asyncio.run(read_async())
    assert ids == [tenants.ada_tasks[3]] and after is None

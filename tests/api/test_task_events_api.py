"""Task events and trajectories over real HTTP (Serve on loopback), and the SDK reading them.

SSE is parsed here by hand from the raw bytes, independently of the SDK's decoder, so the
framing itself is under test; the SDK's iterators then read the same streams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import rlm
from rlm_hypervisor import AsyncRLMClient, RLMClient, TaskEventMessage, TaskNotFound
from tests.api.conftest import Api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


def _slow(seconds: float, n: int) -> dict[str, Any]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": list(range(n)), "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1, "async": True},
    }


def _submit(client: httpx.Client, request: dict[str, Any]) -> str:
    response = client.post("/execute", json=request)
    assert response.status_code == 202, response.text
    task_id: str = response.json()["taskId"]
    return task_id


def _parse_sse(raw: str) -> tuple[list[dict[str, Any]], list[str]]:
    """SSE messages as ``{"id", "event", "data"}`` (data parsed), and the other blocks."""
    assert raw.endswith("\n\n"), raw[-200:]
    messages, others = [], []
    for block in raw[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if "data" in fields:
            messages.append(
                {
                    "id": int(fields["id"]),
                    "event": fields["event"],
                    "data": json.loads(fields["data"]),
                }
            )
        else:
            others.append(block)
    return messages, others


def _stream(client: httpx.Client, task_id: str, **kwargs: Any) -> httpx.Response:
    with client.stream("GET", f"/tasks/{task_id}/events", **kwargs) as response:
        response.read()
    return response


def test_a_tasks_events_stream_in_order_and_end_with_the_result(
    user: Callable[..., httpx.Client],
) -> None:
    with user() as client:
        task_id = _submit(client, _slow(0.1, n=6))
        response = _stream(client, task_id)  # opened while the task runs
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert "ratelimit" in response.headers
        messages, others = _parse_sse(response.text)
        assert others[0] == "retry: 2000"
        assert [m["id"] for m in messages] == list(range(1, len(messages) + 1))
        for m in messages:  # data: is the event's whole wire form
            assert m["data"]["id"] == m["id"] and m["data"]["event"] == m["event"]
            assert m["data"]["timestamp"].endswith("Z")
        kinds = [m["event"] for m in messages]
        assert kinds[0] == "task.started" and kinds[-1] == "task.completed"
        assert "task.progress" in kinds
        progress = [
            m["data"]["data"]["completedCalls"] for m in messages if m["event"] == "task.progress"
        ]
        assert progress == sorted(progress) and progress[-1] == 7
        end = messages[-1]["data"]["data"]
        assert end["status"] == "completed" and end["result"]["output"] == sum(range(6))
        assert end["result"] == client.get(f"/tasks/{task_id}").json()["result"]

        # Resume: Last-Event-ID (what EventSource sends), or ?lastEventId= without one.
        resumed, _ = _parse_sse(_stream(client, task_id, headers={"Last-Event-ID": "2"}).text)
        assert resumed == messages[2:]
        by_query, _ = _parse_sse(_stream(client, task_id, params={"lastEventId": 3}).text)
        assert by_query == messages[3:]
        at_end, others = _parse_sse(
            _stream(client, task_id, headers={"Last-Event-ID": str(len(messages))}).text
        )
        assert at_end == [] and others == ["retry: 2000"]


def test_only_the_owner_with_the_read_scope_sees_the_stream(
    api: Api, user: Callable[..., httpx.Client]
) -> None:
    with user(sub="events-owner") as owner:
        task_id = _submit(owner, _slow(0.0, n=2))
    with user(sub="events-other") as other:
        response = _stream(other, task_id)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "TASK_NOT_FOUND"
        assert other.get(f"/tasks/{task_id}/trajectory").status_code == 404
    with user(sub="events-owner", scopes="rlm:execute") as no_read:
        response = _stream(no_read, task_id)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "FORBIDDEN"
        assert no_read.get(f"/tasks/{task_id}/trajectory").status_code == 403
    assert httpx.get(f"{api.base_url}/tasks/{task_id}/events").status_code == 401
    with user(sub="events-owner") as owner:
        bad = _stream(owner, task_id, headers={"Last-Event-ID": "not-a-number"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "INVALID_INPUT"


def test_a_stream_counts_once_against_the_rate_limit(user: Callable[..., httpx.Client]) -> None:
    with user() as client:
        task_id = _submit(client, _slow(0.2, n=4))
        before = client.get(f"/tasks/{task_id}")
        remaining = int(before.headers["RateLimit"].split("remaining=")[1].split(",")[0])
        stream = _stream(client, task_id)  # many polls while it runs, one request counted
        assert stream.status_code == 200
        counted = int(stream.headers["RateLimit"].split("remaining=")[1].split(",")[0])
        assert counted == remaining - 1
        after = client.get(f"/tasks/{task_id}")
        assert int(after.headers["RateLimit"].split("remaining=")[1].split(",")[0]) == counted - 1


STEPS: list[tuple[str, dict[str, Any]]] = [
    (
        "rlm.turn",
        {"path": "0", "depth": 0, "turn": 1, "reply": "```repl\nprint(len(context))\n```"},
    ),
    (
        "rlm.cell",
        {"path": "0", "turn": 1, "index": 0, "code": "print(len(context))", "stdout": "5\n"},
    ),
    ("rlm.subcalls", {"path": "0", "turn": 1, "kind": "llm_query", "count": 1, "cached": [False]}),
]


def test_the_trajectory_as_json_and_jsonl(api: Api, user: Callable[..., httpx.Client]) -> None:
    hv = rlm.connect(settings=api.settings)  # the service's own engine (same state dir)
    with user() as client:
        task_id = _submit(client, _slow(0.5, n=2))
        # RLM sessions record their steps through the engine; a synthetic one does it here.
        assert hv.record_events(task_id, STEPS)
        running = client.get(f"/tasks/{task_id}/trajectory").json()
        assert running["status"] in ("pending", "running")
        assert [e["event"] for e in running["events"]] == ["rlm.turn", "rlm.cell", "rlm.subcalls"]
        messages, _ = _parse_sse(_stream(client, task_id).text)  # to the end
        trajectory = client.get(f"/tasks/{task_id}/trajectory")
        assert trajectory.status_code == 200
        body = trajectory.json()
        assert body["taskId"] == task_id and body["status"] == "completed"
        assert [e["event"] for e in body["events"]] == [
            "rlm.turn",
            "rlm.cell",
            "rlm.subcalls",
            "task.completed",
        ]
        assert body["events"][1]["data"]["stdout"] == "5\n"
        # The same events, with the same ids, as the stream sent.
        streamed = {m["id"]: m["data"] for m in messages}
        assert all(streamed[e["id"]] == e for e in body["events"])

        jsonl = client.get(f"/tasks/{task_id}/trajectory", params={"format": "jsonl"})
        assert jsonl.status_code == 200
        assert jsonl.headers["content-type"] == "application/x-ndjson"
        assert f"{task_id}.trajectory.jsonl" in jsonl.headers["content-disposition"]
        assert [json.loads(line) for line in jsonl.text.splitlines()] == body["events"]


def test_the_sdk_iterates_the_live_stream_and_resumes(api: Api) -> None:
    token = api.token(sub="sdk-events")
    with RLMClient(api_key=token, base_url=api.base_url) as client:
        task_id = client.submit(_slow(0.1, n=4))
        events = list(client.tasks.events(task_id))
        assert all(isinstance(e, TaskEventMessage) for e in events)
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[0].event == "task.started" and events[-1].terminal
        progress = [e.progress for e in events if e.progress is not None]
        assert progress and progress[-1].percent == 100.0
        result = events[-1].result
        assert result is not None and result.output == sum(range(4))
        assert list(client.tasks.events(task_id, last_event_id=2)) == events[2:]
        assert client.tasks.trajectory(task_id).events == [events[-1]]
        with pytest.raises(TaskNotFound):
            list(client.tasks.events("task-does-not-exist"))

    async def read_async() -> list[TaskEventMessage]:
        async with AsyncRLMClient(api_key=token, base_url=api.base_url) as client:
            return [e async for e in client.tasks.events(task_id, last_event_id=1)]

    assert asyncio.run(read_async()) == events[1:]


def test_the_openapi_document_lists_the_event_routes(api: Api) -> None:
    doc = httpx.get(api.base_url.removesuffix("/v1") + "/openapi.json").json()
    events = doc["paths"]["/v1/tasks/{taskId}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert {"404", "403", "401"} <= set(events["responses"])
    names = {p["name"] for p in events["parameters"]}
    assert {"taskId", "Last-Event-ID", "lastEventId"} <= names
    trajectory = doc["paths"]["/v1/tasks/{taskId}/trajectory"]["get"]
    content = trajectory["responses"]["200"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(content)
    assert "Trajectory" in doc["components"]["schemas"]


def test_events_arrive_while_the_task_runs_and_a_cancel_ends_the_stream(
    user: Callable[..., httpx.Client],
) -> None:
    with user() as client:
        task_id = _submit(client, _slow(30.0, n=2))  # cancelled long before it would end
        with client.stream("GET", f"/tasks/{task_id}/events") as response:
            lines = response.iter_lines()
            seen = []
            while not any(line.startswith("event: task.started") for line in seen):
                seen.append(next(lines))
            # The stream is not held back until the end: the task is still running now.
            assert client.get(f"/tasks/{task_id}").json()["status"] in ("pending", "running")
            assert client.post(f"/tasks/{task_id}/cancel").json()["status"] == "cancelled"
            rest = "\n".join(lines)
        assert "event: task.completed" in rest
        end = json.loads(rest.split("event: task.completed\ndata: ")[1].split("\n")[0])
        assert end["data"]["status"] == "cancelled"

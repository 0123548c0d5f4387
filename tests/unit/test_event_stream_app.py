"""``GET /tasks/{taskId}/events`` and ``/trajectory`` in the HTTP layer alone (no Ray): the SSE
framing, keep-alives, ``Last-Event-ID`` and its query fallback, and one admission per stream.

The engine is a scripted stand-in behind the app's one seam (``hv.ask``); the real engine is
exercised over HTTP in ``tests/api/test_task_events_api.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import Settings
from rlm.errors import TaskNotFound
from serve_app import create_app
from serve_app.sse import HEARTBEAT, RETRY_MS, encode_event


def _event(seq: int, type_: str, **data: Any) -> dict[str, Any]:
    return {"id": seq, "event": type_, "timestamp": "2026-01-01T00:00:00Z", "data": data}


class _Engine:
    """Answers ``events`` from a script of pages and records every call."""

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages = pages
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def ask(self, method: str, *args: Any) -> tuple[Any, dict[str, str]]:
        self.calls.append((method, args))
        if args[0] == "task-missing":
            raise TaskNotFound(args[0])
        if method == "trajectory":
            events = [
                _event(2, "rlm.turn", turn=1),
                _event(3, "task.completed", status="completed"),
            ]
            return {"taskId": args[0], "status": "completed", "events": events}, {"RateLimit": "x"}
        return self.pages.pop(0), {"RateLimit": "limit=60, remaining=59, reset=60"}

    async def running_async(self) -> dict[str, int]:
        return {"tasks": 0, "inflight": 0, "queued": 0}


def _get(app: Any, url: str, **kw: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get(url, **kw)

    return asyncio.run(go())


def _app(tmp_path: Path, pages: list[dict[str, Any]]) -> tuple[Any, _Engine, dict[str, str]]:
    settings = Settings(state_dir=tmp_path)
    engine = _Engine(pages)
    key = load_signing_key(settings.auth, settings.state_dir, settings.env)
    token = issue_token("alice", ["rlm:read"], "user", settings=settings.auth, key=key)
    return create_app(settings, engine), engine, {"Authorization": f"Bearer {token}"}


def test_the_stream_frames_events_sends_keep_alives_and_ends_after_the_result(
    tmp_path: Path,
) -> None:
    started = _event(1, "task.started", operation="sum")
    progress = _event(2, "task.progress", completedCalls=1)
    end = _event(3, "task.completed", status="completed", result={"output": 2**70})
    pages = [
        {"events": [started], "ended": False},
        {"events": [], "ended": False},  # a wait that brought nothing
        {"events": [progress], "ended": False},
        {"events": [end], "ended": True},
    ]
    app, engine, auth = _app(tmp_path, pages)
    response = _get(app, "/v1/tasks/task-1/events", headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["ratelimit"].startswith("limit=60")
    assert response.content == (
        f"retry: {RETRY_MS}\n\n".encode()
        + encode_event(started)
        + HEARTBEAT
        + encode_event(progress)
        + encode_event(end)
    )
    assert b'"output":1180591620717411303424' in response.content  # beyond 64 bits, exact
    # Each poll resumes after the last event sent; only the first one is admitted (counted
    # against the rate limit), the later ones pass no admission; all carry the viewer.
    afters = [args[2] for _, args in engine.calls]
    assert afters == [0, 1, 1, 2]
    admissions = [args[4] for _, args in engine.calls]
    assert admissions[0] is not None and admissions[1:] == [None, None, None]
    assert all(args[1].user_id == "alice" for _, args in engine.calls)
    timeouts = [args[3] for _, args in engine.calls]
    assert timeouts == [0.0, 15.0, 15.0, 15.0]


def test_sse_messages_are_one_data_line_each() -> None:
    message = encode_event(_event(7, "rlm.cell", stdout="a\nb\n\nc"))
    lines = message.decode().split("\n")
    assert lines[:2] == ["id: 7", "event: rlm.cell"]
    assert lines[2].startswith("data: {") and lines[3:] == ["", ""]


@pytest.mark.parametrize(
    ("headers", "query", "after"),
    [
        ({"Last-Event-ID": "4"}, "", 4),
        ({}, "?lastEventId=5", 5),
        ({"Last-Event-ID": "4"}, "?lastEventId=5", 4),  # the header wins
        ({"Last-Event-ID": "0"}, "?lastEventId=5", 0),
    ],
)
def test_last_event_id_and_its_query_fallback(
    tmp_path: Path, headers: dict[str, str], query: str, after: int
) -> None:
    app, engine, auth = _app(tmp_path, [{"events": [], "ended": True}])
    response = _get(app, f"/v1/tasks/task-1/events{query}", headers={**auth, **headers})
    assert response.status_code == 200
    assert engine.calls[0][1][2] == after


@pytest.mark.parametrize("bad", ["abc", "-1", str(2**60)])
def test_a_bad_last_event_id_is_invalid_input(tmp_path: Path, bad: str) -> None:
    app, engine, auth = _app(tmp_path, [])
    response = _get(app, "/v1/tasks/task-1/events", headers={**auth, "Last-Event-ID": bad})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_INPUT"
    assert response.json()["error"]["details"]["field"] == "Last-Event-ID"
    assert engine.calls == []


def test_an_unknown_task_is_a_404_before_any_stream(tmp_path: Path) -> None:
    app, _, auth = _app(tmp_path, [])
    response = _get(app, "/v1/tasks/task-missing/events", headers=auth)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "TASK_NOT_FOUND"


def test_the_trajectory_as_json_and_as_json_lines(tmp_path: Path) -> None:
    app, engine, auth = _app(tmp_path, [])
    document = _get(app, "/v1/tasks/task-1/trajectory", headers=auth)
    assert document.status_code == 200
    body = document.json()
    assert body["taskId"] == "task-1" and body["status"] == "completed"
    assert [e["event"] for e in body["events"]] == ["rlm.turn", "task.completed"]
    method, args = engine.calls[0]
    assert method == "trajectory" and args[1].user_id == "alice" and args[2] is not None
    lines = _get(app, "/v1/tasks/task-1/trajectory?format=jsonl", headers=auth)
    assert lines.status_code == 200
    assert lines.headers["content-type"] == "application/x-ndjson"
    assert "task-1.trajectory.jsonl" in lines.headers["content-disposition"]
    assert [httpx.Response(200, content=line).json() for line in lines.text.splitlines()] == body[
        "events"
    ]
    assert _get(app, "/v1/tasks/task-1/trajectory?format=xml", headers=auth).status_code == 400

"""The SDK's event stream against scripted servers (``httpx.MockTransport``): SSE decoding,
typed events, reconnecting with ``Last-Event-ID`` after a drop, errors, and the async twin."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm_hypervisor import (
    AsyncRLMClient,
    Forbidden,
    InternalError,
    RLMClient,
    TaskEventMessage,
    TaskNotFound,
    Trajectory,
)
from rlm_hypervisor._events import ServerSentEvent, SSEDecoder

BASE = "http://127.0.0.1:8000/v1"


def _wire(seq: int, event: str, **data: Any) -> dict[str, Any]:
    return {"id": seq, "event": event, "timestamp": "2026-01-01T00:00:00Z", "data": data}


RESULT = {
    "taskId": "t1",
    "status": "completed",
    "output": 15,
    "executionTimeMs": 1.0,
    "agentCalls": 3,
    "decompositionDepth": 1,
    "success": True,
}
END = _wire(4, "task.completed", status="completed", result=RESULT)
EVENTS = [
    _wire(1, "task.started", operation="sum", plannedCalls=3),
    _wire(2, "task.progress", completedCalls=2, plannedCalls=3, percent=66.67, perDepth=[0, 2]),
    _wire(3, "task.progress", completedCalls=3, plannedCalls=3, percent=100.0, perDepth=[1, 2]),
    END,
]


def _sse(*events: dict[str, Any], keep_alive: bool = True) -> list[bytes]:
    chunks = [b"retry: 2000\n\n"]
    for e in events:
        if keep_alive:
            chunks.append(b": keep-alive\n\n")
        body = json.dumps(e)
        # Split mid-message: a chunk boundary is not a message boundary.
        message = f"id: {e['id']}\nevent: {e['event']}\ndata: {body}\n\n".encode()
        chunks += [message[:7], message[7:]]
    return chunks


def _body(chunks: list[bytes], drop: bool) -> Iterator[bytes]:
    yield from chunks
    if drop:
        raise httpx.ReadError("connection reset by peer")


class Server:
    """Scripted answers: each a list of SSE chunks (then optionally a dropped connection), or
    a ready response."""

    def __init__(self, *replies: tuple[list[bytes], bool] | httpx.Response) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.replies, f"unexpected request {request.method} {request.url}"
        reply = self.replies.pop(0)
        if isinstance(reply, httpx.Response):
            return reply
        chunks, drop = reply
        return httpx.Response(
            200, headers={"Content-Type": "text/event-stream"}, content=_body(chunks, drop)
        )

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        response = self(request)
        if isinstance(response.stream, httpx.ByteStream):
            return response
        chunks = list(_collect(response))

        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                if isinstance(chunk, Exception):
                    raise chunk
                yield chunk

        return httpx.Response(200, headers=response.headers, content=body())

    def last_event_ids(self) -> list[str | None]:
        return [r.headers.get("Last-Event-ID") for r in self.requests]


def _collect(response: httpx.Response) -> Iterator[bytes | Exception]:
    try:
        yield from response.stream  # type: ignore[misc]
    except httpx.ReadError as err:
        yield err


def _error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"error": {"code": code, "message": code.lower()}, "requestId": "req-1"}
    return httpx.Response(status, json=body, headers=headers)


class _Sleeps:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def _client(server: Server, sleeps: _Sleeps, **kw: Any) -> RLMClient:
    return RLMClient(
        api_key="k",
        base_url=BASE,
        transport=httpx.MockTransport(server),
        sleep=sleeps,
        jitter=lambda: 1.0,  # the whole backoff step: exact expected sleeps
        **kw,
    )


def test_events_are_typed_and_end_with_the_result() -> None:
    server = Server((_sse(*EVENTS), False))
    sleeps = _Sleeps()
    with _client(server, sleeps) as client:
        events = list(client.tasks.events("t1"))
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert all(isinstance(e, TaskEventMessage) for e in events)
    assert events[1].progress is not None and events[1].progress.percent == 66.67
    assert events[0].progress is None and events[0].result is None
    assert events[-1].terminal and events[-1].result is not None
    assert events[-1].result.output == 15
    request = server.requests[0]
    assert request.url == f"{BASE}/tasks/t1/events"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Authorization"] == "Bearer k"
    assert "Last-Event-ID" not in request.headers
    assert sleeps.slept == []


def test_a_dropped_connection_resumes_after_the_last_event() -> None:
    server = Server(
        (_sse(*EVENTS[:2]), True),  # drops after event 2
        (_sse(*EVENTS[2:3]), False),  # ends cleanly but early (a proxy's timeout)
        (_sse(*EVENTS[3:]), False),
    )
    sleeps = _Sleeps()
    with _client(server, sleeps) as client:
        events = list(client.tasks.events("t1", last_event_id=0))
    assert [e.id for e in events] == [1, 2, 3, 4]
    assert server.last_event_ids() == ["0", "2", "3"]
    assert sleeps.slept == [0.5, 0.5]  # each reconnection after an event starts the backoff over


def test_failures_in_a_row_give_up_after_max_retries() -> None:
    server = Server(*[(_sse(*EVENTS[:1]) if i == 0 else _sse(), True) for i in range(3)])
    sleeps = _Sleeps()
    with _client(server, sleeps, max_retries=2) as client:
        stream = client.tasks.events("t1")
        assert next(stream).id == 1
        with pytest.raises(httpx.ReadError):
            next(stream)
    assert server.last_event_ids() == [None, "1", "1"]
    assert sleeps.slept == [0.5, 1.0]


def test_api_errors_are_raised_and_429_is_waited_out() -> None:
    server = Server(_error(429, "RATE_LIMITED", retry_after="2"), _error(404, "TASK_NOT_FOUND"))
    sleeps = _Sleeps()
    with _client(server, sleeps) as client, pytest.raises(TaskNotFound) as caught:
        list(client.tasks.events("nope"))
    assert sleeps.slept == [2.0]
    assert caught.value.request_id == "req-1"  # type: ignore[attr-defined]
    server = Server(_error(403, "FORBIDDEN"))
    with _client(server, sleeps) as client, pytest.raises(Forbidden):
        list(client.tasks.events("t1"))


def test_a_message_that_is_not_a_task_event_is_an_internal_error() -> None:
    server = Server(([b"event: task.started\ndata: {not json}\n\n"], False))
    with _client(server, _Sleeps()) as client, pytest.raises(InternalError, match="not a task"):
        list(client.tasks.events("t1"))


def test_the_trajectory() -> None:
    body = {"taskId": "t1", "status": "completed", "events": [_wire(2, "rlm.turn", turn=1), END]}

    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url == f"{BASE}/tasks/t%2F1/trajectory"
        return httpx.Response(200, json=body)

    with RLMClient(api_key="k", base_url=BASE, transport=httpx.MockTransport(reply)) as client:
        trajectory = client.tasks.trajectory("t/1")
    assert isinstance(trajectory, Trajectory)
    assert [e.event for e in trajectory.events] == ["rlm.turn", "task.completed"]
    assert trajectory.events[-1].result is not None


def test_the_async_client_iterates_and_resumes_alike() -> None:
    server = Server((_sse(*EVENTS[:2]), True), (_sse(*EVENTS[2:]), False))
    sleeps = _Sleeps()

    async def main() -> list[int]:
        transport = httpx.MockTransport(server.handle_async)
        async with AsyncRLMClient(
            api_key="k", base_url=BASE, transport=transport, sleep=sleeps.asleep, jitter=lambda: 1.0
        ) as client:
            return [e.id async for e in client.tasks.events("t1")]

    assert asyncio.run(main()) == [1, 2, 3, 4]
    assert server.last_event_ids() == [None, "2"]
    assert sleeps.slept == [0.5]


def _decode(text: str) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    return [m for line in text.split("\n") if (m := decoder.feed(line)) is not None]


def test_the_decoder_follows_the_sse_rules() -> None:
    messages = _decode(
        ": comment\nretry: 100\nid: 7\nevent: a\ndata: one\ndata:two\n\n"
        "data: no type\n\n"
        "event: only a type\n\n"
        "id: 8\ndata: x\n\n"
    )
    assert messages == [
        ServerSentEvent("a", "one\ntwo", "7", 100),
        ServerSentEvent("message", "no type", "7", 100),  # the id carries over
        ServerSentEvent("message", "x", "8", 100),
    ]


@given(st.lists(st.text(st.characters(blacklist_characters="\r\n\0"), max_size=20), max_size=5))
def test_any_data_lines_round_trip(lines: list[str]) -> None:
    text = "".join(f"data: {line}\n" for line in lines) + "\n"
    messages = _decode(text)
    assert messages == ([ServerSentEvent("message", "\n".join(lines))] if lines else [])

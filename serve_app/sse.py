"""Server-Sent Events: a task's events as ``text/event-stream``, long-polled from the engine.

Each event is one SSE message (``id:`` its number, ``event:`` its type, ``data:`` its wire form
as one line of JSON, then a blank line). The stream asks the engine for the events after the
last one sent, waiting up to the heartbeat interval each time; a wait that brings nothing sends
a comment line (``: keep-alive``) so proxies keep the connection open. It ends right after
``task.completed``. A client that lost the connection reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse

from serve_app.responses import json_bytes

__all__ = [
    "HEARTBEAT",
    "RETRY_MS",
    "EventStreamResponse",
    "encode_event",
    "event_stream",
]

#: The comment sent when a wait brought no event.
HEARTBEAT = b": keep-alive\n\n"
#: How long an ``EventSource`` waits before reconnecting (the stream's ``retry:`` field).
RETRY_MS = 2000

#: ``hv.ask``: call an engine method, get its value and rate-limit headers.
Ask = Callable[..., Awaitable[tuple[Any, dict[str, str]]]]


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` answer (also what the OpenAPI document declares)."""

    media_type = "text/event-stream"


def encode_event(wire: dict[str, Any]) -> bytes:
    """One event (its wire form: ``id``, ``event``, ``timestamp``, ``data``) as an SSE message.

    ``data:`` carries the whole wire form, so a client reads the timestamp too.

    Example:
        >>> encode_event({"id": 1, "event": "e", "timestamp": "t", "data": {}})
        b'id: 1\\nevent: e\\ndata: {"id":1,"event":"e","timestamp":"t","data":{}}\\n\\n'
    """
    head = f"id: {wire['id']}\nevent: {wire['event']}\ndata: ".encode()
    return head + json_bytes(wire) + b"\n\n"


async def event_stream(
    ask: Ask,
    task_id: str,
    viewer: Any,
    after: int,
    first: dict[str, Any],
    heartbeat_s: float,
) -> AsyncIterator[bytes]:
    """The SSE body: ``first`` (the engine's first answer), then long polls until the end.

    Args:
        ask: The engine's ``ask``.
        task_id: The task.
        viewer: Whose tasks the caller may see (checked on every poll).
        after: The last event the client has.
        first: The first answer (already admitted: the stream counts once against the rate
            limit; later polls pass no admission).
        heartbeat_s: How long a poll waits before a keep-alive comment is sent.
    """
    yield f"retry: {RETRY_MS}\n\n".encode()
    page = first
    while True:
        for wire in page["events"]:
            yield encode_event(wire)
            after = int(wire["id"])
        if page["ended"]:
            return
        if not page["events"]:
            yield HEARTBEAT
        page, _ = await ask("events", task_id, viewer, after, heartbeat_s, None)

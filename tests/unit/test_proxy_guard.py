"""The proxy guard without a proxy: its connection book, its ASGI half and its protocol wrapper.

The ASGI guard runs in front of a scripted downstream app (Serve's router in production); the
protocol wrapper around a recording inner protocol on a fake transport. The real thing, over
real sockets in front of real replicas, is tested in ``tests/api/test_resilience_api.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from serve_app.crashes import TASK_ID_HEADER
from serve_app.guard.asgi import ProxyGuard
from serve_app.guard.book import ConnectionBook
from serve_app.guard.protocol import GuardedProtocol

PEER = ("10.0.0.1", 40000)
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def scope(method: str = "GET", path: str = "/v1/health", **headers: str) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "client": PEER,
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def receiver(*chunks: bytes, stall: bool = False) -> Receive:
    """Deliver ``chunks`` as the body; then (or at once, with ``stall``) never anything."""
    pending = list(chunks)

    async def receive() -> Message:
        if pending and not stall:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


class Answer:
    """What the guard sent the client."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def json(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.messages[1:]))


async def json_app(
    scope: Scope, receive: Receive, send: Send, body: Any, status: int = 200
) -> None:
    raw = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": raw})


def guard(app: App, book: ConnectionBook | None = None, **kwargs: Any) -> ProxyGuard:
    kwargs.setdefault("body_timeout_s", 5.0)
    kwargs.setdefault("max_body_bytes", 1024)
    return ProxyGuard(app, book=book, **kwargs)


def run(
    g: ProxyGuard, s: Scope, receive: Receive | None = None
) -> Answer:  # one request through the guard
    answer = Answer()
    asyncio.run(asyncio.wait_for(g(s, receive or receiver(b""), answer), 10))
    return answer


# -- the connection book -------------------------------------------------------------------------


def test_the_book_caps_connections_per_address_and_in_total() -> None:
    book = ConnectionBook(max_connections=3, max_per_client=2, max_requests=0)
    a1, a2, a3 = (book.open(("10.0.0.1", p)) for p in (1, 2, 3))
    assert (a1.refused, a2.refused, a3.refused) == (None, None, "client")
    b1 = book.open(("10.0.0.2", 1))
    assert b1.refused == "total"  # four open: over the total of three
    book.close(a3)
    book.close(b1)
    book.close(b1)  # idempotent
    assert (len(book), book.from_host("10.0.0.1"), book.from_host("10.0.0.2")) == (2, 2, 0)
    assert book.open(("10.0.0.2", 2)).refused is None


def test_the_book_marks_a_connections_last_request() -> None:
    book = ConnectionBook(max_connections=0, max_per_client=0, max_requests=2)
    conn = book.open(PEER)
    assert book.request_started(conn) is False
    book.request_ended(conn)
    assert book.request_started(conn) is True
    assert conn.busy and conn.requests == 2


# -- the ASGI guard --------------------------------------------------------------------------


def test_the_body_is_read_whole_before_the_app_sees_the_request() -> None:
    seen: list[bytes] = []

    async def app(s: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(message["body"])
        assert message["more_body"] is False
        await json_app(s, receive, send, {"ok": True})

    answer = run(guard(app), scope("POST", "/v1/execute"), receiver(b'{"a":', b" 1", b"}"))
    assert (answer.status, answer.json, seen) == (200, {"ok": True}, [b'{"a": 1}'])


def test_a_body_that_stalls_is_408_in_the_envelope_and_the_app_never_sees_it() -> None:
    async def app(s: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("a replica was involved")

    g = guard(app, body_timeout_s=0.05)
    answer = run(g, scope("POST", "/v1/execute", x_request_id="req-mine"), receiver(stall=True))
    assert answer.status == 408
    assert answer.headers["connection"] == "close"
    assert answer.json["error"]["code"] == "TIMEOUT"
    assert answer.json["requestId"] == "req-mine" == answer.headers["x-request-id"]


def test_a_body_over_the_limit_is_413_by_its_header_or_as_it_streams() -> None:
    async def app(s: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("a replica was involved")

    declared = run(guard(app), scope("POST", "/v1/execute", content_length="5000"))
    streamed = run(guard(app), scope("POST", "/v1/execute"), receiver(b"x" * 600, b"y" * 600))
    for answer in (declared, streamed):
        assert answer.status == 413 and answer.headers["connection"] == "close"
        assert answer.json["error"]["details"]["maxBytes"] == 1024


def test_a_plain_text_error_of_the_proxy_becomes_the_envelope() -> None:
    async def app(s: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"text/plain"), (b"retry-after", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"Service Unavailable"})

    answer = run(guard(app), scope())
    assert answer.status == 503
    assert answer.json["error"]["code"] == "INTERNAL_ERROR"
    assert answer.json["error"]["details"] == {"retryable": True}
    assert answer.headers["retry-after"] == "2"
    assert answer.json["requestId"].startswith("req-")


def test_an_execute_whose_replica_died_is_answered_with_its_task_id() -> None:
    chosen: list[str] = []
    lookups: list[Scope] = []

    async def app(s: Scope, receive: Receive, send: Send) -> None:
        headers = dict(s["headers"])
        if s["method"] == "POST":
            chosen.append(headers[TASK_ID_HEADER.encode()].decode())
            return  # the replica died: Serve's proxy answers nothing
        lookups.append(s)
        await json_app(s, receive, send, {"taskId": chosen[0], "status": "running"})

    forged = {TASK_ID_HEADER.replace("-", "_"): "task-" + "0" * 32}
    s = scope("POST", "/v1/execute", authorization="Bearer tok", **forged)
    answer = run(guard(app), s, receiver(b"{}"))
    assert chosen[0] != "task-" + "0" * 32  # a client cannot choose its task's id
    assert answer.status == 500
    assert answer.json["error"]["details"] == {"taskId": chosen[0], "status": "running"}
    (lookup,) = lookups
    assert (lookup["method"], lookup["path"]) == ("GET", f"/v1/tasks/{chosen[0]}")
    assert (b"authorization", b"Bearer tok") in lookup["headers"]  # asked as the client


def test_an_execute_that_died_before_its_task_was_created_says_so() -> None:
    async def app(s: Scope, receive: Receive, send: Send) -> None:
        if s["method"] == "POST":
            raise RuntimeError("the replica's actor died")
        body = {"error": {"code": "TASK_NOT_FOUND", "message": "no"}, "requestId": "r"}
        await json_app(s, receive, send, body, status=404)

    answer = run(guard(app), scope("POST", "/v1/execute"), receiver(b"{}"))
    assert answer.status == 500
    assert answer.json["error"]["details"] == {"retryable": True}
    assert "nothing ran" in answer.json["error"]["message"]


def test_a_connection_over_a_cap_is_refused_and_closed() -> None:
    book = ConnectionBook(max_connections=10, max_per_client=1, max_requests=0)
    book.open(("10.0.0.1", 1))
    book.open(PEER)  # the second from 10.0.0.1: over the cap

    async def app(s: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("a replica was involved")

    answer = run(guard(app, book), scope())
    assert answer.status == 429 and answer.headers["connection"] == "close"
    assert answer.headers["retry-after"] == "1"
    assert answer.json["error"]["details"]["policy"] == "connections"


def test_the_last_request_a_connection_may_carry_closes_it() -> None:
    book = ConnectionBook(max_connections=0, max_per_client=0, max_requests=2)
    conn = book.open(PEER)

    async def app(s: Scope, receive: Receive, send: Send) -> None:
        await json_app(s, receive, send, {"ok": True})

    first, second = run(guard(app, book), scope()), run(guard(app, book), scope())
    assert "connection" not in first.headers
    assert second.headers["connection"] == "close"
    assert not conn.busy and conn.requests == 2


# -- the protocol wrapper ----------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = asyncio.Event()

    def get_extra_info(self, name: str) -> Any:
        return PEER if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed.set()

    def is_closing(self) -> bool:
        return self.closed.is_set()


class Inner(asyncio.Protocol):
    def __init__(self, **kwargs: Any) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


@pytest.mark.parametrize(
    ("sent", "answered"), [(b"GET / HTTP/1.1\r\nHost: x\r\n", True), (b"", False)]
)
def test_a_head_that_does_not_arrive_in_time_closes_the_connection(
    monkeypatch: pytest.MonkeyPatch, sent: bytes, answered: bool
) -> None:
    book = ConnectionBook(max_connections=0, max_per_client=0, max_requests=0)
    monkeypatch.setattr(GuardedProtocol, "inner_class", Inner)
    monkeypatch.setattr(GuardedProtocol, "book", book)
    monkeypatch.setattr(GuardedProtocol, "header_timeout_s", 0.05)

    async def main() -> FakeTransport:
        transport = FakeTransport()
        protocol = GuardedProtocol(config=None, server_state=None, app_state={})
        protocol.connection_made(transport)  # type: ignore[arg-type]
        if sent:
            protocol.data_received(sent)
        await asyncio.wait_for(transport.closed.wait(), 10)
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(main())
    assert len(book) == 0
    if answered:  # part of a head came: it is told why
        assert transport.written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        body = orjson.loads(transport.written.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "TIMEOUT"
    else:  # nothing came: closed without a word
        assert transport.written == b""


def test_a_head_that_arrives_disarms_the_header_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    book = ConnectionBook(max_connections=0, max_per_client=0, max_requests=0)
    monkeypatch.setattr(GuardedProtocol, "inner_class", Inner)
    monkeypatch.setattr(GuardedProtocol, "book", book)
    monkeypatch.setattr(GuardedProtocol, "header_timeout_s", 0.05)

    checked = asyncio.Event()

    class Watched(GuardedProtocol):
        def _check(self) -> None:
            super()._check()
            checked.set()

    async def main() -> FakeTransport:
        transport = FakeTransport()
        protocol = Watched(config=None, server_state=None, app_state={})
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(b"GET / HTTP/1.1\r\n\r\n")
        conn = book.get(PEER)
        assert conn is not None
        book.request_started(conn)  # what the ASGI guard does when the request begins
        # The deadline passes: the timer fires and finds a request in flight.
        await asyncio.wait_for(checked.wait(), 10)
        return transport

    transport = asyncio.run(main())
    assert not transport.closed.is_set() and transport.written == b""

"""The proxy guard's ASGI half: in Serve's proxy, in front of every API replica.

For each HTTP request it:

1. **names the request**: the client's ``X-Request-ID`` when sane, else a new one, so the
   replica, Serve's logs and any answer the guard gives carry the same id; for
   ``POST …/execute`` it also names the task (:data:`~serve_app.crashes.TASK_ID_HEADER`,
   overwriting whatever a client sent under that name);
2. **refuses** a request on a connection over a cap (:class:`ConnectionBook`): ``429
   RATE_LIMITED`` (too many connections from one address) or ``503`` (too many in total),
   ``Retry-After: 1``, connection closed;
3. **reads the whole body** before anything is sent to a replica, within ``body_timeout_s``
   (else ``408 TIMEOUT``, connection closed) and ``max_body_bytes`` (else ``413``): a client
   that sends headers and never its body holds a coroutine here, never a replica's slot;
4. **answers in the envelope** when the replica cannot: Serve's proxy answers a dead replica
   with an empty ``500``, its own timeouts, back-pressure and missing routes in plain text.
   Any error that is not JSON becomes the envelope with the request id; for an execute, the
   guard first asks another replica (as the client, ``GET …/tasks/{taskId}``) whether the task
   was created, and names it;
5. closes a connection after ``keep_alive_max_requests`` requests (``Connection: close``).

Serve's own routes (``/-/healthz``, ``/-/routes``) pass untouched.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.crashes import TASK_ID_HEADER
from serve_app.guard.book import Connection, ConnectionBook
from serve_app.guard.envelope import new_request_id, send_envelope

__all__ = ["LOOKUP_ATTEMPTS", "ProxyGuard"]

log = logging.getLogger("rlm.api.guard")

#: Tries at asking a replica whether an execute's task was created, after its own died.
LOOKUP_ATTEMPTS: Final = 4
_LOOKUP_TIMEOUT_S: Final = 5.0
_REQUEST_ID = b"x-request-id"
_TASK_ID = TASK_ID_HEADER.encode()


@dataclass
class _Response:
    """What the downstream answered, as far as the guard cares."""

    started: bool = False  # something was sent to the client
    held: int | None = None  # the status of an error the guard swallowed (not JSON)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value)
    return None


def _sane_id(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("latin-1")
    return text if 0 < len(text) <= 128 and text.isprintable() else None


class ProxyGuard:
    """See the module docstring.

    Args:
        app: The proxy's ASGI app (Serve's router to the replicas).
        book: The proxy's connections (``None``: connection caps are not in effect).
        body_timeout_s: How long a request body may take to arrive, from its head.
        max_body_bytes: Larger bodies are refused (413).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        book: ConnectionBook | None,
        body_timeout_s: float,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.book = book
        self.body_timeout_s = body_timeout_s
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/-/"):
            if scope["type"] == "websocket" and self.book is not None:
                # The connection left its HTTP protocol for a WebSocket one: not ours to count.
                conn = self.book.get(scope.get("client"))
                if conn is not None:
                    self.book.close(conn)
            await self.app(scope, receive, send)
            return
        rid = _sane_id(_header(scope, _REQUEST_ID)) or new_request_id()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (_REQUEST_ID, _TASK_ID)]
        headers.append((_REQUEST_ID, rid.encode()))
        task_id = None
        if scope["method"] == "POST" and scope["path"].endswith("/execute"):
            task_id = f"task-{new_request_id()[4:]}"
            headers.append((_TASK_ID, task_id.encode()))
        scope = {**scope, "headers": headers}
        conn = self.book.get(scope.get("client")) if self.book is not None else None
        if conn is not None and conn.refused is not None:
            await self._refuse(conn, send, rid)
            return
        last = conn is not None and self.book is not None and self.book.request_started(conn)
        try:
            await self._guarded(scope, receive, send, rid, task_id, close=last)
        finally:
            if conn is not None:
                ConnectionBook.request_ended(conn)

    async def _refuse(self, conn: Connection, send: Send, rid: str) -> None:
        assert self.book is not None
        if conn.refused == "client":
            limit = self.book.max_per_client
            await send_envelope(
                send,
                429,
                "RATE_LIMITED",
                f"too many connections from {conn.peer[0]}: at most {limit} may be open at "
                "once; reuse or close connections, then retry",
                {"limit": limit, "policy": "connections", "retryAfterS": 1},
                rid,
                headers={"Retry-After": "1"},
                close=True,
            )
        else:
            await send_envelope(
                send,
                503,
                "INTERNAL_ERROR",
                f"the server holds as many connections as it takes ({self.book.max_connections});"
                " retry shortly",
                {"retryable": True},
                rid,
                headers={"Retry-After": "1"},
                close=True,
            )

    async def _guarded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        task_id: str | None,
        *,
        close: bool,
    ) -> None:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_big(send, rid)
            return
        body = await self._read_body(receive, send, rid)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # waits for the client to disconnect

        response = _Response()

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                kind = next(
                    (
                        bytes(v)
                        for k, v in message.get("headers", [])
                        if k.lower() == b"content-type"
                    ),
                    b"",
                )
                if status >= 400 and not kind.startswith(b"application/json"):
                    response.held = status  # not ours: answered in the envelope below
                    response.headers = list(message.get("headers", []))
                    return
                if close:
                    message = {
                        **message,
                        "headers": [*message.get("headers", []), (b"connection", b"close")],
                    }
                response.started = True
            elif message["type"] == "http.response.body" and response.held is not None:
                return
            await send(message)

        try:
            await self.app(scope, replay, guarded_send)
        except Exception:
            log.exception("request %s: the proxy failed to forward it", rid)
        if not response.started:
            await self._stand_in(scope, send, rid, task_id, response)

    async def _read_body(self, receive: Receive, send: Send, rid: str) -> bytes | None:
        """The whole body, or ``None`` once the request has been answered (or abandoned)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                await send_envelope(
                    send,
                    408,
                    "TIMEOUT",
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                    {"bodyTimeoutS": self.body_timeout_s, "received": size},
                    rid,
                    close=True,
                )
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_big(send, rid)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_big(self, send: Send, rid: str) -> None:
        await send_envelope(
            send,
            413,
            "INVALID_INPUT",
            f"the request body is larger than {self.max_body_bytes} bytes",
            {"maxBytes": self.max_body_bytes, "field": "body"},
            rid,
            close=True,
        )

    # -- answering for a replica that could not ----------------------------------------------

    async def _stand_in(
        self, scope: Scope, send: Send, rid: str, task_id: str | None, response: _Response
    ) -> None:
        status = response.held or 500
        retry_after = next(
            (v.decode() for k, v in response.headers if k.lower() == b"retry-after"), None
        )
        headers = {"Retry-After": retry_after} if retry_after else None
        if status == 404:
            await send_envelope(send, 404, "NOT_FOUND", "no such route", None, rid)
            return
        if status == 429:
            await send_envelope(
                send,
                429,
                "RATE_LIMITED",
                "the API replicas are at capacity; retry shortly",
                {"retryAfterS": float(retry_after or 1), "policy": "replica queue"},
                rid,
                headers={"Retry-After": retry_after or "1"},
            )
            return
        code, reason = (
            ("TIMEOUT", "ran past the server's request timeout")
            if status == 408
            else ("INTERNAL_ERROR", "lost the API replica serving it")
        )
        if status == 503:
            reason = "found no API replica ready to serve it"
        details: dict[str, Any]
        if task_id is not None:
            found, task_status = await self._lookup(scope, task_id, rid)
            if found == "created":
                message = (
                    f"this request {reason}; its task was created and is {task_status}: "
                    f"look it up with GET /v1/tasks/{task_id}"
                )
                details = {"taskId": task_id, "status": task_status}
            elif found == "absent":
                message = f"this request {reason} before its task was created; nothing ran"
                details = {"retryable": True}
            else:
                message = (
                    f"this request {reason}; look its task up with GET /v1/tasks/{task_id} "
                    "(it may not have been created)"
                )
                details = {"taskId": task_id, "status": "unknown"}
        else:
            safe = scope["method"] in ("GET", "HEAD", "OPTIONS")
            message = f"this request {reason}" + (
                "; send it again" if safe else "; it may or may not have taken effect"
            )
            details = {"retryable": True} if safe else {}
        await send_envelope(send, status, code, message, details, rid, headers=headers)

    async def _lookup(self, scope: Scope, task_id: str, rid: str) -> tuple[str, str | None]:
        """Ask a replica, as the client, whether ``task_id`` exists.

        Returns:
            ``("created", status)``, ``("absent", None)``, or ``("unknown", None)`` when no
            replica could say.
        """
        path = scope["path"][: -len("execute")] + f"tasks/{task_id}"
        headers = [(_REQUEST_ID, f"{rid}-lookup".encode())]
        auth = _header(scope, b"authorization")
        if auth is not None:
            headers.append((b"authorization", auth))
        lookup = {
            **scope,
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "state": dict(scope.get("state") or {}),
        }
        for attempt in range(LOOKUP_ATTEMPTS):
            status, body = await self._call(lookup)
            try:
                answer = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                answer = None
            if status == 200 and isinstance(answer, dict):
                return "created", str(answer.get("status"))
            if (
                status == 404
                and isinstance(answer, dict)
                and (answer.get("error") or {}).get("code") == "TASK_NOT_FOUND"
            ):
                return "absent", None
            if status in (401, 403, 429):
                break  # the replica answered, but will not say
            await asyncio.sleep(0.25 * 2**attempt)  # a replica is being replaced
        return "unknown", None

    async def _call(self, scope: Scope) -> tuple[int, bytes]:
        """Send a bodiless request through the proxy; its status and body (0 if none)."""
        ended = asyncio.Event()
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await ended.wait()
            return {"type": "http.disconnect"}

        status = 0
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await asyncio.wait_for(self.app(scope, receive, send), _LOOKUP_TIMEOUT_S)
        except Exception:
            status = 0
        finally:
            ended.set()
        return status, b"".join(chunks)

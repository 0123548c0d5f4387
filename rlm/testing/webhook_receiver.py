"""A webhook receiver on loopback: records what it gets and answers as a test scripts it.

:class:`WebhookReceiver` is a small HTTP/1.1 server (plain asyncio, keep-alive, on a background
thread) that accepts any ``POST``, records its headers, body and arrival time, and answers 200
— or what a test queued: a status (with ``Retry-After``), or a hang that holds the request
until :meth:`WebhookReceiver.release` or :meth:`WebhookReceiver.stop`. It is fast (a few tens of
microseconds a request), so benchmarks measure the sender, not the receiver.

Example:
    >>> with WebhookReceiver() as receiver:                                  # doctest: +SKIP
    ...     receiver.respond(500, 200)          # the next two requests: 500, then 200
    ...     ...                                  # register receiver.url as a webhook
    ...     [hit] = receiver.wait_for(lambda r: r.status == 200, timeout=30)
    ...     hit.json()["event"]
    'task.completed'

As a separate process (prints its URL; ``GET /_received?after=N`` lists what arrived)::

    python -m rlm.testing.webhook_receiver --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ReceivedWebhook", "WebhookReceiver", "main"]

_START_TIMEOUT_S = 10.0
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_REASONS = {200: "OK", 204: "No Content", 404: "Not Found", 410: "Gone", 500: "Server Error"}


@dataclass(frozen=True, slots=True)
class ReceivedWebhook:
    """One request the receiver got.

    Attributes:
        method: The HTTP method.
        path: The path (with its query).
        headers: Header names in lower case.
        body: The body, exactly as received.
        at: When it had fully arrived (``time.time()``).
        status: What the receiver answered; 0 for a request it held (a hang).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int

    @property
    def webhook_id(self) -> str | None:
        """The ``webhook-id`` header."""
        return self.headers.get("webhook-id")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int = 200
    retry_after: str | None = None
    hang: bool = False


class WebhookReceiver:
    """An HTTP receiver for webhooks on loopback.

    Args:
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        path: The path of :attr:`url` (any path is accepted).
        history: How many requests to keep.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, path: str = "/hook", history: int = 100_000
    ) -> None:
        self._host = host
        self._port = port
        self._path = path
        self._received: deque[ReceivedWebhook] = deque(maxlen=history)
        self._count = 0
        self._script: deque[_Answer] = deque()
        self._changed = threading.Condition()
        self._holding = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._release: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        """Start listening; returns once connections are accepted.

        Raises:
            RuntimeError: It is running already, or could not listen (e.g. the port is taken).
        """
        if self._thread is not None:
            raise RuntimeError("the receiver is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # e.g. the port is taken
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self._serve())
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="webhook-receiver", daemon=True)
        self._thread.start()
        ready.wait(_START_TIMEOUT_S)
        if failure or self._server is None:
            self._thread.join(_START_TIMEOUT_S)
            self._thread = None
            raise RuntimeError(f"the receiver could not listen on {self._host}:{self._port}") from (
                failure[0] if failure else None
            )
        return self

    async def _open(self) -> None:
        self._release = asyncio.Event()
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, self._host, self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self) -> None:
        assert self._server is not None and self._stopped is not None
        async with self._server:
            await self._stopped.wait()
            # Keep-alive connections outlive the listening socket: close them (their handlers
            # then see the end of the stream) before the loop ends.
            for writer in list(self._connections.values()):
                writer.close()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=_START_TIMEOUT_S)

    def stop(self) -> None:
        """Stop listening, answer held requests (503) and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return

        def shut() -> None:
            assert self._stopped is not None and self._release is not None
            if self._server is not None:
                self._server.close()
            self._release.set()
            self._stopped.set()

        with contextlib.suppress(RuntimeError):  # the loop has closed already
            loop.call_soon_threadsafe(shut)
        thread.join(_START_TIMEOUT_S)
        self._thread = None
        self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (the chosen one, when started with 0)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/hook``."""
        return f"http://{self._host}:{self._port}{self._path}"

    # -- behaviour -----------------------------------------------------------------------------

    def respond(self, *statuses: int, retry_after: str | None = None) -> None:
        """Answer the next requests with these statuses, in order (then 200 again)."""
        with self._changed:
            self._script.extend(_Answer(s, retry_after) for s in statuses)

    def hang(self, n: int = 1) -> None:
        """Hold the next ``n`` requests unanswered until :meth:`release` (or :meth:`stop`)."""
        with self._changed:
            self._script.extend(_Answer(hang=True) for _ in range(n))

    def release(self) -> None:
        """Answer every held request (200) and stop holding new ones."""
        with self._changed:
            self._script = deque(a for a in self._script if not a.hang)
        loop = self._loop
        if loop is not None and self._release is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release.set)

    @property
    def holding(self) -> int:
        """Requests held unanswered right now."""
        with self._changed:
            return self._holding

    @property
    def received(self) -> list[ReceivedWebhook]:
        """Every request received, oldest first."""
        with self._changed:
            return list(self._received)

    @property
    def count(self) -> int:
        """Requests received since the start (also those no longer kept)."""
        with self._changed:
            return self._count

    def wait_for(
        self, predicate: Callable[[ReceivedWebhook], bool], *, count: int = 1, timeout: float
    ) -> list[ReceivedWebhook]:
        """Wait until ``count`` received requests satisfy ``predicate``.

        Returns:
            Those requests, oldest first.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                hits = [r for r in self._received if predicate(r)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(hits)} of {count} expected webhook requests arrived in {timeout} s"
                        f" ({len(self._received)} requests in all)"
                    )
                self._changed.wait(left)

    # -- the server ------------------------------------------------------------------------------

    def _next_answer(self) -> _Answer:
        with self._changed:
            return self._script.popleft() if self._script else _Answer()

    def _record(self, hit: ReceivedWebhook) -> None:
        with self._changed:
            self._received.append(hit)
            self._count += 1
            self._changed.notify_all()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    break
                if len(head) > _MAX_HEAD:
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, _, rest = lines[0].partition(" ")
                path = rest.rsplit(" ", 1)[0]
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length > _MAX_BODY:
                    break
                body = await reader.readexactly(length) if length else b""
                if method == "GET" and path.startswith("/_received"):
                    writer.write(self._listing(path))
                    await writer.drain()
                    continue
                answer = self._next_answer()
                at = time.time()
                if answer.hang:
                    self._record(ReceivedWebhook(method, path, headers, body, at, 0))
                    await self._hold()
                    status = 503 if self._stopped is not None and self._stopped.is_set() else 200
                    writer.write(_response(status, None))
                else:
                    self._record(ReceivedWebhook(method, path, headers, body, at, answer.status))
                    writer.write(_response(answer.status, answer.retry_after))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _hold(self) -> None:
        assert self._release is not None
        with self._changed:
            self._holding += 1
        try:
            await self._release.wait()
        finally:
            with self._changed:
                self._holding -= 1

    def _listing(self, path: str) -> bytes:
        query = parse_qs(urlsplit(path).query)
        after = int(query.get("after", ["0"])[0])
        with self._changed:
            hits = list(self._received)[after:]
        body = json.dumps(
            [
                {"at": h.at, "status": h.status, "headers": h.headers, "body": h.body.decode()}
                for h in hits
            ]
        ).encode()
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}"
        return head.encode() + b"\r\n\r\n" + body


def _response(status: int, retry_after: str | None) -> bytes:
    extra = f"retry-after: {retry_after}\r\n" if retry_after is not None else ""
    reason = _REASONS.get(status, "Status")
    return f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\n{extra}\r\n".encode()


def main(argv: list[str] | None = None) -> None:
    """Serve on loopback until SIGTERM or SIGINT, printing the URL first."""
    parser = argparse.ArgumentParser(prog="python -m rlm.testing.webhook_receiver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with WebhookReceiver(host=args.host, port=args.port) as receiver:
        print(receiver.url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()

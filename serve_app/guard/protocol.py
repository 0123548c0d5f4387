"""The proxy's HTTP connection protocol: uvicorn's own, inside a guard that counts and times.

Serve's proxy runs uvicorn with its automatic HTTP protocol and exposes neither a timeout for a
request's head nor a connection cap. :func:`serve_app.guard.proxy_middlewares` makes uvicorn
build :class:`GuardedProtocol` instead, which wraps the protocol uvicorn would have used (by
composition: every ``asyncio.Protocol`` call is passed on unchanged) and adds:

* **connection caps**: each connection is registered in the :class:`ConnectionBook`; one over
  the per-client or the total cap is marked refused, and the ASGI guard answers its request with
  429 or 503 and closes it;
* **a header timeout**: a new connection must send a whole request head within
  ``header_timeout_s``, and so must a kept-alive connection once the first byte of its next
  request arrives. One that does not is answered ``408`` in the error envelope (when part of a
  head arrived) and closed, or closed silently (nothing arrived).

Idle kept-alive connections are closed by uvicorn's own keep-alive timeout (Serve's
``keep_alive_timeout_s``), request bodies are timed by the ASGI guard.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, cast

from serve_app.guard.book import Connection, ConnectionBook
from serve_app.guard.envelope import raw_response

__all__ = ["GuardedProtocol"]

log = logging.getLogger("rlm.api.guard")


class GuardedProtocol(asyncio.Protocol):
    """uvicorn's HTTP protocol with connection caps and a header timeout.

    Configured once per proxy process by :func:`serve_app.guard.proxy_middlewares` (class
    attributes: uvicorn builds protocols from an import path, with its own arguments).
    """

    inner_class: ClassVar[Any] = None
    book: ClassVar[ConnectionBook | None] = None
    header_timeout_s: ClassVar[float] = 10.0

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        assert self.inner_class is not None and self.book is not None, "guard not installed"
        self._inner: asyncio.Protocol = self.inner_class(
            config=config, server_state=server_state, app_state=app_state, _loop=_loop
        )
        self._loop = _loop or asyncio.get_event_loop()
        self._book: ConnectionBook = self.book
        self._conn: Connection | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without being its subclass.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._conn = self._book.open((str(peer[0]), int(peer[1])))
            self._conn.deadline = self._loop.time() + self.header_timeout_s
            self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        if conn is not None and not conn.busy and not conn.bytes_idle:
            # The first byte of a request head: it must be whole within the header timeout.
            conn.bytes_idle = True
            if conn.deadline is None:
                conn.deadline = self._loop.time() + self.header_timeout_s
            self._arm()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._conn is not None:
            self._book.close(self._conn)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # uvicorn calls these on its protocols (graceful shutdown, keep-alive housekeeping).
    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    # -- the header timeout -------------------------------------------------------------------

    def _arm(self) -> None:
        conn = self._conn
        if self._timer is None and conn is not None and conn.deadline is not None:
            self._timer = self._loop.call_at(conn.deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        conn, transport = self._conn, self._transport
        if conn is None or transport is None or transport.is_closing():
            return
        if conn.busy or conn.deadline is None:
            return  # the head arrived; the next one re-arms the timer
        if self._loop.time() < conn.deadline:
            self._arm()
            return
        if conn.bytes_idle:
            log.info("closing %s:%s: no whole request head in time", *conn.peer)
            transport.write(
                raw_response(
                    408,
                    "TIMEOUT",
                    f"the request head did not arrive within {self.header_timeout_s:g} s",
                    {"headerTimeoutS": self.header_timeout_s},
                )
            )
        transport.close()

"""The proxy's open connections, by client address: caps, and where each one stands.

Pure bookkeeping shared by the connection protocol (:mod:`serve_app.guard.protocol`, which
opens and closes entries) and the ASGI guard (:mod:`serve_app.guard.asgi`, which marks when a
request starts and ends on a connection and refuses the requests of a connection that is over
a cap). Everything runs on the proxy's one event loop, so nothing here locks.

Memory: one :class:`Connection` per open connection (bounded by ``max_connections``, since
over-cap connections are answered and closed) and one counter per client address with open
connections.

Example:
    >>> book = ConnectionBook(max_connections=2, max_per_client=1, max_requests=100)
    >>> first = book.open(("10.0.0.1", 5000))
    >>> first.refused is None
    True
    >>> book.open(("10.0.0.1", 5001)).refused
    'client'
    >>> book.open(("10.0.0.2", 5000)).refused
    >>> book.open(("10.0.0.3", 5000)).refused
    'total'
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

__all__ = ["Connection", "ConnectionBook", "Peer", "Refusal"]

#: A connection's client address: ``(host, port)``.
Peer = tuple[str, int]
#: Why a connection is refused: too many from its address, or too many in total.
Refusal = Literal["client", "total"]


@dataclass(slots=True)
class Connection:
    """One open connection.

    Attributes:
        peer: Its client address.
        refused: Why it is over a cap (its first request is answered with a refusal and the
            connection closed), or ``None``.
        busy: A request is in flight on it (between head and the end of its response).
        requests: Requests started on it so far.
        bytes_idle: Bytes arrived while no request was in flight: a request head is coming.
        deadline: When the head of the next request must have arrived (event-loop time),
            while one is awaited: from the connection's opening, or from the first byte of
            a later request; ``None`` while a request is in flight or the connection idles
            between requests (the keep-alive timeout governs that).
    """

    peer: Peer
    refused: Refusal | None = None
    busy: bool = False
    requests: int = 0
    bytes_idle: bool = False
    deadline: float | None = None


class ConnectionBook:
    """Open connections by address, with a cap per client address and in total.

    Args:
        max_connections: Connections open at once in total (``0``: no cap).
        max_per_client: Connections open at once from one client address (``0``: no cap).
        max_requests: Requests one connection may carry before it is closed (``0``: no cap).
    """

    def __init__(self, *, max_connections: int, max_per_client: int, max_requests: int) -> None:
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.max_requests = max_requests
        self._open: dict[Peer, Connection] = {}
        self._per_host: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._open)

    def open(self, peer: Peer) -> Connection:
        """Register a new connection; it is marked ``refused`` when it is over a cap."""
        host = peer[0]
        refused: Refusal | None = None
        if self.max_connections and len(self._open) >= self.max_connections:
            refused = "total"
        elif self.max_per_client and self._per_host[host] >= self.max_per_client:
            refused = "client"
        conn = Connection(peer, refused)
        previous = self._open.pop(peer, None)
        if previous is not None:  # a port reused before its close was seen
            self._forget_host(previous.peer[0])
        self._open[peer] = conn
        self._per_host[host] += 1
        return conn

    def close(self, conn: Connection) -> None:
        """Forget a connection (idempotent)."""
        if self._open.get(conn.peer) is conn:
            del self._open[conn.peer]
            self._forget_host(conn.peer[0])

    def get(self, peer: Peer | None) -> Connection | None:
        """The open connection from ``peer``, if the book knows it."""
        return None if peer is None else self._open.get(peer)

    def from_host(self, host: str) -> int:
        """Connections open from ``host`` now."""
        return self._per_host.get(host, 0)

    def request_started(self, conn: Connection) -> bool:
        """Mark a request in flight; whether it is the connection's last (keep-alive cap)."""
        conn.busy = True
        conn.bytes_idle = False
        conn.deadline = None
        conn.requests += 1
        return bool(self.max_requests) and conn.requests >= self.max_requests

    @staticmethod
    def request_ended(conn: Connection) -> None:
        """Mark the connection idle again (waiting for its next request's head)."""
        conn.busy = False
        conn.bytes_idle = False

    def _forget_host(self, host: str) -> None:
        self._per_host[host] -= 1
        if self._per_host[host] <= 0:
            del self._per_host[host]

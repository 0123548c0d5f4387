"""What the fake LM server measured: counts, concurrency and arrival times, overall and per tenant.

:class:`Meter` is the thread-safe recorder the server's event loop writes to while tests read
it from their own threads; :class:`ServerStats` is the immutable snapshot a test asserts on.
Only chat completions are measured (``GET /v1/models`` is not).
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, deque
from dataclasses import dataclass

from rlm.testing.responders import ChatRequest

__all__ = ["Meter", "ServerStats", "TenantStats"]


@dataclass(frozen=True, slots=True)
class TenantStats:
    """The requests of one ``X-RLM-Tenant``.

    Attributes:
        requests: Chat completion requests received.
        in_flight: Requests being handled now.
        max_in_flight: The most handled at once since the last reset.
    """

    requests: int
    in_flight: int
    max_in_flight: int


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A snapshot of the server's measurements since start (or the last ``reset_stats``).

    Attributes:
        requests: Chat completion requests received, whatever their outcome.
        ok: Requests answered 200.
        refused: Requests answered with an error, by HTTP status.
        in_flight: Requests being handled now.
        max_in_flight: The most requests handled at once.
        arrivals: ``time.monotonic()`` arrival times of the received requests, sorted.
        accepted_arrivals: Arrival times of the requests answered 200, sorted.
        tenants: Per ``X-RLM-Tenant`` value, for requests that carried one.

    The two arrival lists keep the most recent ``history`` entries (a server option).
    """

    requests: int
    ok: int
    refused: dict[int, int]
    in_flight: int
    max_in_flight: int
    arrivals: tuple[float, ...]
    accepted_arrivals: tuple[float, ...]
    tenants: dict[str, TenantStats]

    def accepted_between(self, start: float, end: float) -> int:
        """Count the accepted requests that arrived in ``[start, end)`` (monotonic seconds)."""
        return bisect.bisect_left(self.accepted_arrivals, end) - bisect.bisect_left(
            self.accepted_arrivals, start
        )

    def max_accepted_in_window(self, window_s: float) -> int:
        """The most accepted requests that arrived within any ``window_s``-long interval."""
        times = self.accepted_arrivals
        best = 0
        first = 0
        for last, arrived in enumerate(times):
            while arrived - times[first] >= window_s:
                first += 1
            best = max(best, last - first + 1)
        return best


@dataclass(slots=True)
class _Tenant:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


class Meter:
    """Thread-safe recorder of the server's requests.

    Args:
        history: How many received requests and arrival times to keep.
    """

    def __init__(self, history: int = 10_000) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self._history = history
        self._lock = threading.Lock()
        # In-flight counts describe the present, so a reset keeps them; the epoch tells which
        # answers belong to requests that arrived before the last reset (not counted again).
        self._epoch = 0
        self._in_flight = 0
        self._tenants: dict[str, _Tenant] = {}
        self._forget()

    def _forget(self) -> None:
        self._requests = 0
        self._ok = 0
        self._refused: Counter[int] = Counter()
        self._max_in_flight = self._in_flight
        self._arrivals: deque[float] = deque(maxlen=self._history)
        self._accepted: deque[float] = deque(maxlen=self._history)
        self._received: deque[ChatRequest] = deque(maxlen=self._history)
        self._tenants = {
            name: _Tenant(0, t.in_flight, t.in_flight)
            for name, t in self._tenants.items()
            if t.in_flight
        }

    def arrive(self, arrived: float, tenant: str | None) -> int:
        """Count a request that has just arrived and is now in flight.

        Returns:
            The epoch to pass back to :meth:`leave`.
        """
        with self._lock:
            self._requests += 1
            self._arrivals.append(arrived)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            if tenant is not None:
                record = self._tenants.setdefault(tenant, _Tenant())
                record.requests += 1
                record.in_flight += 1
                record.max_in_flight = max(record.max_in_flight, record.in_flight)
            return self._epoch

    def leave(self, epoch: int, arrived: float, tenant: str | None, status: int) -> None:
        """Count the answer to a request that :meth:`arrive` counted (in ``epoch``)."""
        with self._lock:
            self._in_flight -= 1
            if tenant is not None:
                self._tenants[tenant].in_flight -= 1
            if epoch != self._epoch:
                return
            if status == 200:
                self._ok += 1
                self._accepted.append(arrived)
            else:
                self._refused[status] += 1

    def receive(self, request: ChatRequest) -> None:
        """Keep a parsed request for :meth:`received`."""
        with self._lock:
            self._received.append(request)

    def received(self) -> list[ChatRequest]:
        """The kept requests, oldest first."""
        with self._lock:
            return list(self._received)

    def snapshot(self) -> ServerStats:
        """The measurements so far."""
        with self._lock:
            return ServerStats(
                requests=self._requests,
                ok=self._ok,
                refused=dict(self._refused),
                in_flight=self._in_flight,
                max_in_flight=self._max_in_flight,
                arrivals=tuple(sorted(self._arrivals)),
                accepted_arrivals=tuple(sorted(self._accepted)),
                tenants={
                    name: TenantStats(t.requests, t.in_flight, t.max_in_flight)
                    for name, t in self._tenants.items()
                },
            )

    def reset(self) -> None:
        """Forget every measurement and kept request.

        Requests in flight stay counted as in flight; their answers are not counted.
        """
        with self._lock:
            self._epoch += 1
            self._forget()

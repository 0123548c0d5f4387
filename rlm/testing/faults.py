"""Fault injection for the fake LM server: failures (429/500/503, ``Retry-After``) and stalls.

Faults are queued and taken one per chat completion, in arrival order, so a test says exactly
which requests fail: ``fail_next(2, 503)`` makes the next two answer 503, whatever they ask.
"""

from __future__ import annotations

import threading
from collections import deque

from rlm.testing.wire import Refusal

__all__ = ["FaultQueue", "injected_refusal"]


def injected_refusal(status: int, retry_after_s: float | None) -> Refusal:
    """The error answer :meth:`FaultQueue.add_failures` queues, worded as OpenAI words it."""
    headers: dict[str, str] = {}
    if retry_after_s is not None:
        # openai-python reads retry-after-ms first, then Retry-After (seconds, may be a float).
        headers["Retry-After"] = f"{retry_after_s:g}"
        headers["retry-after-ms"] = f"{retry_after_s * 1000:g}"
    if status == 429:
        return Refusal(
            429,
            "Rate limit reached for requests (injected by FakeLMServer).",
            type="requests",
            code="rate_limit_exceeded",
            headers=headers,
        )
    if status == 503:
        return Refusal(
            503,
            "The server is overloaded or not ready yet (injected by FakeLMServer).",
            type="server_error",
            code="service_unavailable",
            headers=headers,
        )
    return Refusal(
        status,
        f"Injected failure {status} (FakeLMServer.fail_next).",
        type="server_error" if status >= 500 else "invalid_request_error",
        code="internal_error" if status == 500 else "injected_fault",
        headers=headers,
    )


class FaultQueue:
    """Failures and stalls queued for the next requests, in order; thread-safe.

    Tests queue them from their own thread while the server's event loop takes them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: deque[tuple[int, float | None]] = deque()
        self._stalls: deque[float] = deque()

    def add_failures(self, n: int, status: int, retry_after_s: float | None) -> None:
        """Queue ``n`` failures answering ``status`` (and ``Retry-After`` when given)."""
        with self._lock:
            self._failures.extend([(status, retry_after_s)] * n)

    def add_stalls(self, n: int, seconds: float) -> None:
        """Queue ``n`` stalls of ``seconds`` each."""
        with self._lock:
            self._stalls.extend([seconds] * n)

    def take_failure(self) -> Refusal | None:
        """The next queued failure, if any."""
        with self._lock:
            if not self._failures:
                return None
            status, retry_after_s = self._failures.popleft()
        return injected_refusal(status, retry_after_s)

    def take_stall(self) -> float | None:
        """The next queued stall in seconds, if any."""
        with self._lock:
            return self._stalls.popleft() if self._stalls else None

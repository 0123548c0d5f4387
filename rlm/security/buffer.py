"""A batching event sink: ``emit`` appends to memory; a thread sends batches off the hot path.

Recording an event must never make a request wait on storage. :class:`EventBuffer` takes an
event in a few microseconds (a lock and a list append) and a background thread hands batches
to ``send`` — every ``flush_s``, or at once when ``batch`` events are waiting. ``send`` is
the transport: in the service a fire-and-forget call to the security actor (which writes the
batch in one SQLite transaction), in-process a direct write.

Bounded: past ``max_pending`` waiting events new ones are dropped and counted, and the count
is itself recorded (``audit.dropped``) with the next batch, so an overload is never silent.
An event is lost only if the process dies within ``flush_s`` of recording it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from rlm.security.events import SecurityEventIn

__all__ = ["EventBuffer"]

log = logging.getLogger(__name__)


class EventBuffer:
    """Events waiting to be sent, and the thread that sends them.

    Args:
        send: Sends one batch; returns a receipt (e.g. a Ray ``ObjectRef``) or ``None``.
        flush_s: Longest an event waits before it is sent.
        batch: Events sent at once without waiting for ``flush_s``.
        max_pending: Events kept waiting at most; more are dropped and counted.
    """

    def __init__(
        self,
        send: Callable[[list[SecurityEventIn]], Any],
        *,
        flush_s: float = 0.05,
        batch: int = 500,
        max_pending: int = 10_000,
    ) -> None:
        self._send = send
        self._flush_s = flush_s
        self._batch = batch
        self._max_pending = max_pending
        self._pending: list[SecurityEventIn] = []
        self._dropped = 0
        self._receipts: list[Any] = []
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="rlm-security-events", daemon=True)
        self._thread.start()

    def emit(self, event: SecurityEventIn) -> None:
        """Take one event (never blocks on I/O)."""
        with self._cond:
            if len(self._pending) >= self._max_pending:
                self._dropped += 1
                return
            self._pending.append(event)
            if len(self._pending) >= self._batch:
                self._cond.notify()

    def send_now(self) -> list[Any]:
        """Send what is waiting now; returns the receipts of every batch sent since the last
        call (for :meth:`flush` and async callers to wait on)."""
        self._send_pending()
        with self._send_lock:
            receipts, self._receipts = self._receipts, []
        return receipts

    def _send_pending(self) -> None:
        with self._send_lock:
            with self._cond:
                batch, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch.append(
                    SecurityEventIn.of(
                        "audit.dropped",
                        message=f"{dropped} security events were dropped: too many waiting",
                        details={"dropped": dropped},
                    )
                )
            if not batch:
                return
            try:
                receipt = self._send(batch)
            except Exception:  # never lose the thread; the batch is logged as lost
                log.exception("could not send %d security events", len(batch))
                return
            if receipt is not None:
                # Nobody may ever wait on these: keep the newest only.
                self._receipts = [*self._receipts[-999:], receipt]

    def flush(self, wait: Callable[[list[Any]], Any] | None = None) -> None:
        """Send what is waiting and, with ``wait``, wait for every batch's receipt."""
        receipts = self.send_now()
        if wait is not None and receipts:
            wait(receipts)

    def close(self) -> None:
        """Send what is waiting and stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)
        self.send_now()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closed and len(self._pending) < self._batch:
                    self._cond.wait(self._flush_s)
                if self._closed:
                    return
                waiting = bool(self._pending) or self._dropped > 0
            if waiting:
                self._send_pending()

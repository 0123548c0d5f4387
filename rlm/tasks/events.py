"""A task's events: what happened in it, in order, for live watchers and for the record.

Every task has an :class:`EventLog` while it runs: the task table appends ``task.started`` and
the terminal ``task.completed`` (whatever the status), the scheduler its progress, and an RLM
session its turns, code cells, sub-call batches and child RLMs. Each event gets the next
sequence number of its task, so a watcher that reconnects names the last one it saw
(``Last-Event-ID``) and misses nothing.

Event types (``data`` fields in camelCase, as on the wire):

- ``task.started``: ``operation``, ``type``.
- ``task.progress``: ``completedCalls``, ``plannedCalls``, ``percent``.
- ``rlm.turn``: ``path`` (``"0"`` the root, ``"0.2"`` its third child RLM), ``depth``,
  ``turn``, ``maxIterations``, ``reply`` (truncated), ``inputTokens``, ``outputTokens``,
  ``latencyMs``, ``cached`` (answered from the memo), ``lastCall`` (the call after
  ``maxIterations`` turns asking for the answer; its ``turn`` is ``maxIterations + 1``).
- ``rlm.cell``: ``path``, ``turn``, ``index``, ``code``, ``stdout``, ``stderr``, ``error``,
  ``newVars``, ``durationMs``, ``killedReason``.
- ``rlm.subcalls``: ``path``, ``turn``, ``kind`` (``llm_query`` / ``llm_query_batched``, or
  ``rlm_query`` / ``rlm_query_batched`` answered as LM calls at ``maxDepth``), ``count``,
  ``model``, ``depth`` (of the sub-calls), ``promptDigests`` (SHA-256, 12 hex digits, of the
  first 64 prompts), ``inputTokens``, ``outputTokens``, ``latencyMs`` (the batch's wall time),
  ``cached`` (how many), ``errors`` (how many answered ``"Error: …"``). Sent with the next
  cell or turn event, not on their own.
- ``rlm.child``: ``path``, ``parent``, ``depth``, ``phase`` (``started`` / ``ended``), and at
  the end ``answer`` (truncated) and ``turns``, or ``error`` (truncated) for a child that
  failed.
- ``rlm.answer``: ``path``, ``answer`` (truncated), ``turns``, ``forced``.

Texts in ``rlm.*`` events (replies, code, output, answers) keep their first and last 1,000
characters (:data:`rlm.rlmmode.loop.EVENT_TEXT_CHARS`).
- ``task.completed``: ``status``, ``result`` (the task's ``ExecuteResponse`` on the wire) —
  always the last event.

Example:
    >>> log = EventLog("t1")
    >>> log.append("task.started", {"operation": "sum"}).seq
    1
    >>> [e.type for e in log.after(0)]
    ['task.started']
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["TERMINAL_EVENT", "EventLog", "TaskEvent"]

#: The type of the event that ends every task's log.
TERMINAL_EVENT = "task.completed"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One event of a task.

    Attributes:
        seq: Its number in the task's log, from 1.
        type: What happened (see the module's list).
        data: Its fields, JSON-ready.
        ts: When it happened (seconds since the epoch).
    """

    seq: int
    type: str
    data: dict[str, Any]
    ts: float

    def to_wire(self) -> dict[str, Any]:
        """The event as the API sends it."""
        stamp = datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z")
        return {"id": self.seq, "event": self.type, "timestamp": stamp, "data": self.data}


class EventLog:
    """One running task's events, in memory; watchers wait for the next ones.

    Args:
        task_id: The task's id.
        first_seq: The number the next event gets (a log resumed from the store continues
            its numbering).
    """

    def __init__(self, task_id: str, first_seq: int = 1) -> None:
        self.task_id = task_id
        self._events: list[TaskEvent] = []
        self._next = first_seq
        self._changed = asyncio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._events)

    @property
    def last_seq(self) -> int:
        """The number of the newest event (0 when there is none)."""
        return self._next - 1

    def append(self, type: str, data: dict[str, Any], ts: float | None = None) -> TaskEvent:
        """Add an event; a closed log takes none (the task has ended)."""
        if self.closed:
            raise ValueError(f"the event log of task {self.task_id} is closed")
        event = TaskEvent(self._next, type, data, time.time() if ts is None else ts)
        self._next += 1
        self._events.append(event)
        if type == TERMINAL_EVENT:
            self.closed = True
        # Wake every watcher, then arm a fresh event for the next append.
        self._changed.set()
        self._changed = asyncio.Event()
        return event

    def after(self, seq: int) -> list[TaskEvent]:
        """The events numbered above ``seq``, oldest first."""
        if not self._events or seq < self._events[0].seq:
            return list(self._events)
        return self._events[seq - self._events[0].seq + 1 :]

    async def wait(self, seq: int, timeout_s: float | None) -> list[TaskEvent]:
        """The events above ``seq``; waits up to ``timeout_s`` for one if there is none yet."""
        events = self.after(seq)
        if events or self.closed:
            return events
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout_s)
        except TimeoutError:
            return []
        return self.after(seq)

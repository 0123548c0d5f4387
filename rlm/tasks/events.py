"""A task's events: what happened in it, in order, for live watchers and for the record.

Every task has an :class:`EventLog` while it runs: the task table appends ``task.started`` and
the terminal ``task.completed`` (whatever the status), the scheduler its progress, and an RLM
session its turns, code cells, sub-call batches and child RLMs. Each event gets the next
sequence number of its task, so a watcher that reconnects names the last one it saw
(``Last-Event-ID``) and misses nothing. Events record what changed, never the history again.

Event types (``data`` fields in camelCase, as on the wire):

- ``task.started``: ``operation``, ``type``, ``plannedCalls``, ``plan`` (the tree's shape,
  see *Drawing the tree*).
- ``nodes.started``: ``startedCalls`` (calls sent to agents since the previous one),
  ``perDepth`` (calls sent so far at each depth) and ``started`` (the plan nodes sent since
  the previous one, as ``[start, end)`` index ranges): a node started and not yet in a
  ``done`` range is running; one not started yet is pending. Throttled with
  ``task.progress`` (at most one of each per interval, ``nodes.started`` first).
- ``task.progress``: ``completedCalls``, ``plannedCalls``, ``percent`` (0..100), ``perDepth``
  (agent calls finished so far at each depth, root = 0) and ``done`` (the plan nodes finished
  since the previous progress event, as half-open ``[start, end)`` index ranges).
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
- ``task.truncated``: ``limit``, ``firstDropped`` — the task reached its cap of stored events
  (``RLM_ENGINE__MAX_TASK_EVENTS``, default 10,000, progress not counted): events after this
  marker, up to the terminal one, were not recorded. ``task.completed`` is always kept.
- ``progress.truncated``: ``limit``, ``firstDropped`` — the task's progress events
  (``nodes.started`` and ``task.progress``) reached their own cap
  (``RLM_ENGINE__MAX_TASK_PROGRESS_EVENTS``, default 10,000): no progress event is recorded
  after this marker, every other event still is. Progress has its own budget so a long task's
  progress never crowds out its trajectory (turns, cells, sub-calls).
- ``task.completed``: ``status``, ``result`` (the task's ``ExecuteResponse`` on the wire) —
  always the last event.

Texts in ``rlm.*`` events (replies, code, output, answers) keep their first and last 1,000
characters (:data:`rlm.rlmmode.loop.EVENT_TEXT_CHARS`).

Drawing the tree (built-in operations):
    ``task.started.plan`` is ``{"nodes", "leaves", "depth", "perDepth", "parents"}``:
    ``perDepth[d]`` is how many agent calls the plan has at depth ``d``, and ``parents[i]`` is
    the index of node ``i``'s parent (``-1`` for the root, the last node). Nodes are numbered
    children before parents. A browser builds the tree once from ``parents``, then colours
    the ``started`` ranges of every ``nodes.started`` (running), the ``done`` ranges of every
    ``task.progress`` and the ``perDepth`` bars; a watcher that starts late replays from
    event 1 (or only draws the per-depth bars). A plan of more than :data:`MAX_TREE_NODES`
    nodes leaves ``parents``, ``started`` and ``done`` out: the per-depth counts
    still draw it. A 4,096-leaf tree costs one ``parents`` list (~25 KB) and then only ranges.

Throttling:
    Progress is coalesced: at most one ``task.progress`` per
    :func:`~rlm.tasks.progress.progress_interval` (100 ms, stretching to a thousandth of
    the task's age for tasks older than 100 s, so a day-long task sends under 8,000), however
    many calls finish in between, and always one more just before ``task.completed`` when
    calls finished since the last one.

Persistence:
    The engine writes events to the task store (``task_events`` in ``state.db``) in batches:
    every 250 ms or every 256 events, and the rest with the task's final record, in one
    transaction. An ended task's events are read back from there (after a restart too); a
    task interrupted by a restart gets its ``task.completed`` from its record.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_PROGRESS_EVENTS",
    "MAX_TREE_NODES",
    "PROGRESS_EVENTS",
    "PROGRESS_TRUNCATED_EVENT",
    "TERMINAL_EVENT",
    "TRUNCATED_EVENT",
    "EventLog",
    "TaskEvent",
    "in_trajectory",
]

#: The type of the event that ends every task's log.
TERMINAL_EVENT = "task.completed"
#: The marker that replaces the first event over a task's cap.
TRUNCATED_EVENT = "task.truncated"
#: The marker that replaces the first progress event over a task's progress cap.
PROGRESS_TRUNCATED_EVENT = "progress.truncated"
#: Event types counted against the progress budget, not the task's cap of other events.
PROGRESS_EVENTS = frozenset({"nodes.started", "task.progress"})
#: Events a task keeps before the terminal one, unless the engine's settings say otherwise.
DEFAULT_MAX_EVENTS = 10_000
#: Progress events a task keeps, unless the engine's settings say otherwise.
DEFAULT_MAX_PROGRESS_EVENTS = 10_000
#: Plans up to this many nodes carry their ``parents`` and ``done`` ranges (see above).
MAX_TREE_NODES = 16_384


def in_trajectory(type: str) -> bool:
    """Whether an event of this type belongs to the task's trajectory (RLM steps, the end)."""
    return type.startswith("rlm.") or type in (TERMINAL_EVENT, TRUNCATED_EVENT)


def wire_timestamp(ts: float) -> str:
    """Epoch seconds as the API's ISO 8601 UTC timestamp (``...Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


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
        return {
            "id": self.seq,
            "event": self.type,
            "timestamp": wire_timestamp(self.ts),
            "data": self.data,
        }


class EventLog:
    """One running task's events, in memory; watchers wait for the next ones.

    Args:
        task_id: The task's id.
        first_seq: The number the next event gets (a log resumed from the store continues
            its numbering).
        max_events: Events other than progress kept before the terminal one (``None``: no
            cap). Over the cap, one ``task.truncated`` marker takes the next event's place and
            later ones (progress too) are dropped.
        max_progress_events: Progress events (:data:`PROGRESS_EVENTS`) kept (``None``: no
            cap). Over it, one ``progress.truncated`` marker takes the next one's place and
            later progress is dropped; other events are not affected.
        on_append: Called with the log after every event it keeps (the engine batches its
            writes to the store from there).
    """

    def __init__(
        self,
        task_id: str,
        first_seq: int = 1,
        *,
        max_events: int | None = DEFAULT_MAX_EVENTS,
        max_progress_events: int | None = DEFAULT_MAX_PROGRESS_EVENTS,
        on_append: Callable[[EventLog], None] | None = None,
    ) -> None:
        if max_events is not None and max_events < 2:
            raise ValueError(f"max_events must be at least 2, got {max_events}")
        if max_progress_events is not None and max_progress_events < 1:
            raise ValueError(f"max_progress_events must be at least 1, got {max_progress_events}")
        self.task_id = task_id
        self.max_events = max_events
        self.max_progress_events = max_progress_events
        # Kept events of each budget, each marker in its own (the terminal event in neither).
        self._kept = 0
        self._kept_progress = 0
        self.on_append = on_append
        self._events: list[TaskEvent] = []
        self._next = first_seq
        self._saved = first_seq - 1
        self._changed = asyncio.Event()
        self.closed = False
        #: Events dropped over the cap.
        self.dropped = 0
        #: Progress events dropped over the progress cap (before the main cap was reached).
        self.progress_dropped = 0

    def __len__(self) -> int:
        return len(self._events)

    @property
    def last_seq(self) -> int:
        """The number of the newest event (0 when there is none)."""
        return self._next - 1

    @property
    def truncated(self) -> bool:
        """Whether the cap was reached (the marker is in the log)."""
        return self.dropped > 0

    def append(self, type: str, data: dict[str, Any], ts: float | None = None) -> TaskEvent | None:
        """Add an event; a closed log takes none (the task has ended).

        Returns:
            The event kept, or ``None`` when the cap dropped it (see the class).
        """
        if self.closed:
            raise ValueError(f"the event log of task {self.task_id} is closed")
        if type == TERMINAL_EVENT:
            return self._add(type, data, ts)
        if self.dropped:
            self.dropped += 1
            return None
        if type in PROGRESS_EVENTS and self.max_progress_events is not None:
            if self.progress_dropped:
                self.progress_dropped += 1
                return None
            if self._kept_progress >= self.max_progress_events - 1:
                self.progress_dropped = 1
                marker = {"limit": self.max_progress_events, "firstDropped": type}
                self._kept_progress += 1
                self._add(PROGRESS_TRUNCATED_EVENT, marker, ts)
                return None
            self._kept_progress += 1
            return self._add(type, data, ts)
        if self.max_events is not None and self._kept >= self.max_events - 1:
            self.dropped = 1
            marker = {"limit": self.max_events, "firstDropped": type}
            self._add(TRUNCATED_EVENT, marker, ts)
            return None
        self._kept += 1
        return self._add(type, data, ts)

    def _add(self, type: str, data: dict[str, Any], ts: float | None) -> TaskEvent:
        event = TaskEvent(self._next, type, data, time.time() if ts is None else ts)
        self._next += 1
        self._events.append(event)
        if type == TERMINAL_EVENT:
            self.closed = True
        # Wake every watcher, then arm a fresh event for the next append.
        self._changed.set()
        self._changed = asyncio.Event()
        if self.on_append is not None:
            self.on_append(self)
        return event

    def after(self, seq: int) -> list[TaskEvent]:
        """The events numbered above ``seq``, oldest first."""
        if not self._events or seq < self._events[0].seq:
            return list(self._events)
        return self._events[seq - self._events[0].seq + 1 :]

    def unsaved(self) -> list[TaskEvent]:
        """The events not yet written to the store, oldest first."""
        return self.after(self._saved)

    def mark_saved(self, seq: int | None = None) -> None:
        """Note that the events up to ``seq`` (default: all) are in the store."""
        self._saved = max(self._saved, self.last_seq if seq is None else seq)

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

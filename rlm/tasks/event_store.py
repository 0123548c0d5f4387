"""Task events in the state file: the ``task_events`` table, batched writes, reads of ended tasks.

The table lives in the task store's SQLite file (``state.db``) beside the task records, and
the task store writes a task's last events in the same transaction as its final record, so an
ended task's events are complete in the file as soon as its result is. Running tasks' events
reach the file in batches (:class:`EventWriter`), never one commit per event.

Example:
    >>> writer = EventWriter(lambda batch: None, max_pending=2)
    >>> log = EventLog("t1", max_events=None)
    >>> log.append("task.started", {}) and writer.note(log)
    False
    >>> log.append("task.progress", {}) and writer.note(log)
    True
    >>> writer.flush()
    2
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from rlm.jsonable import dumps
from rlm.tasks.events import TERMINAL_EVENT, TRUNCATED_EVENT, EventLog, TaskEvent
from rlm.tasks.record import TaskRecord

__all__ = [
    "EVENTS_SCHEMA",
    "EventSource",
    "EventWriter",
    "delete_events",
    "insert_events",
    "last_event",
    "select_events",
    "stored_events",
    "terminal_event",
]

EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS task_events (
    task_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    data_json TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;
"""

#: What a trajectory read selects (see :func:`rlm.tasks.events.in_trajectory`).
_TRAJECTORY_SQL = f"(type LIKE 'rlm.%' OR type IN ('{TERMINAL_EVENT}', '{TRUNCATED_EVENT}'))"


def _dumps(data: dict[str, Any]) -> str:
    return dumps(data).decode()


#: Writes one event (a repeat is ignored); :func:`event_rows` are its parameters.
INSERT_EVENT_SQL = (
    "INSERT OR IGNORE INTO task_events (task_id, seq, type, ts, data_json) VALUES (?,?,?,?,?)"
)


def event_rows(task_id: str, events: Iterable[TaskEvent]) -> list[tuple[Any, ...]]:
    """The parameters of :data:`INSERT_EVENT_SQL` for events of one task."""
    return [(task_id, e.seq, e.type, e.ts, _dumps(e.data)) for e in events]


def insert_events(c: sqlite3.Connection, task_id: str, events: Iterable[TaskEvent]) -> None:
    """Write events of one task (inside the caller's transaction); a repeat is ignored."""
    c.executemany(INSERT_EVENT_SQL, event_rows(task_id, events))


def select_events(
    c: sqlite3.Connection,
    task_id: str,
    after: int = 0,
    limit: int | None = None,
    *,
    trajectory: bool = False,
) -> list[TaskEvent]:
    """A task's stored events numbered above ``after``, oldest first.

    Args:
        c: The connection.
        task_id: The task.
        after: Only events numbered above this.
        limit: At most this many (``None``: all).
        trajectory: Only the trajectory's events (``rlm.*``, the marker and the terminal one).
    """
    query = "SELECT seq, type, ts, data_json FROM task_events WHERE task_id = ? AND seq > ?"
    if trajectory:
        query += f" AND {_TRAJECTORY_SQL}"
    query += " ORDER BY seq LIMIT ?"
    rows = c.execute(query, (task_id, after, -1 if limit is None else limit)).fetchall()
    return [TaskEvent(int(s), t, json.loads(d), float(ts)) for s, t, ts, d in rows]


def last_event(c: sqlite3.Connection, task_id: str) -> tuple[int, str] | None:
    """The number and type of the task's newest stored event (``None`` when none is)."""
    row = c.execute(
        "SELECT seq, type FROM task_events WHERE task_id = ? ORDER BY seq DESC LIMIT 1",
        (task_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def delete_events(c: sqlite3.Connection, task_ids: Sequence[str]) -> int:
    """Delete the events of these tasks (inside the caller's transaction); how many rows."""
    deleted = 0
    for task_id in task_ids:
        deleted += c.execute("DELETE FROM task_events WHERE task_id = ?", (task_id,)).rowcount
    return deleted


def terminal_event(record: TaskRecord, seq: int) -> TaskEvent:
    """The ``task.completed`` of an ended task that has none stored, from its record.

    A task interrupted by a restart (or one that ended before its engine kept events) still
    ends its stream with its result.
    """
    ended = record.completed_at or record.created_at
    data: dict[str, Any] = {"status": record.status}
    if record.result is not None:
        data["result"] = record.result.to_wire()
    return TaskEvent(seq, TERMINAL_EVENT, data, ended.timestamp())


class EventSource(Protocol):
    """What :func:`stored_events` reads (a :class:`~rlm.tasks.store.TaskStore`)."""

    def events(
        self, task_id: str, after: int = 0, limit: int | None = None, *, trajectory: bool = False
    ) -> list[TaskEvent]: ...

    def last_event(self, task_id: str) -> tuple[int, str] | None: ...


def stored_events(
    source: EventSource,
    record: TaskRecord,
    after: int,
    limit: int | None,
    *,
    trajectory: bool = False,
) -> tuple[list[TaskEvent], bool]:
    """A task's stored events above ``after``, and whether nothing follows them.

    A task that ended with no ``task.completed`` stored (interrupted by a restart, or ended
    before its engine kept events) ends with one made from its record
    (:func:`terminal_event`), numbered after its last stored event. A task still running (in
    another engine on the same file) is never at its end.

    Args:
        source: The store.
        record: The task's record.
        after: Only events numbered above this.
        limit: At most this many (``None``: all).
        trajectory: Only the trajectory's events.
    """
    events = source.events(record.task_id, after, limit, trajectory=trajectory)
    if events and events[-1].type == TERMINAL_EVENT:
        return events, True
    if (limit is not None and len(events) >= limit) or not record.terminal:
        return events, False
    last = source.last_event(record.task_id)
    if last is not None and last[1] == TERMINAL_EVENT:
        return events, True  # the end is stored, at or before ``after``
    terminal = terminal_event(record, 1 if last is None else last[0] + 1)
    return ([*events, terminal] if terminal.seq > after else events), True


class EventWriter:
    """Gathers running tasks' new events and writes them in batches.

    The engine calls :meth:`note` after each event; a batch is written when ``max_pending``
    events wait (:meth:`note` answers ``True``: flush now) or when ``interval_s`` has passed
    since the first of them (the engine's timer calls :meth:`flush`). A task that ends writes
    its remaining events with its record instead (:meth:`forget`).

    Args:
        write: Writes ``{task_id: events}`` in one transaction.
        max_pending: Events that may wait before a flush is due.
        interval_s: The longest an event waits before its batch is written.
        clock: Monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        write: Callable[[Mapping[str, Sequence[TaskEvent]]], None],
        *,
        max_pending: int = 256,
        interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.max_pending = max_pending
        self.interval_s = interval_s
        self._clock = clock
        self._dirty: dict[str, EventLog] = {}
        self._pending = 0
        self._since: float | None = None

    @property
    def pending(self) -> int:
        """Events noted since the last flush."""
        return self._pending

    def note(self, log: EventLog) -> bool:
        """Note a new event of ``log``; whether a flush is due now."""
        self._dirty[log.task_id] = log
        self._pending += 1
        if self._since is None:
            self._since = self._clock()
        return self.due()

    def due(self) -> bool:
        """Whether a batch should be written now (enough events, or one waited long enough)."""
        if self._since is None:
            return False
        return self._pending >= self.max_pending or self._clock() - self._since >= self.interval_s

    def forget(self, log: EventLog) -> None:
        """Stop tracking ``log`` (its task wrote its last events with its record)."""
        self._dirty.pop(log.task_id, None)

    def flush(self) -> int:
        """Write every noted log's unsaved events in one transaction; how many were written.

        Raises:
            Exception: the write failed; the events stay noted for the next flush.
        """
        batch = {tid: events for tid, log in self._dirty.items() if (events := log.unsaved())}
        if batch:
            self._write(batch)
            for task_id, events in batch.items():
                self._dirty[task_id].mark_saved(events[-1].seq)
        self._dirty.clear()
        self._pending = 0
        self._since = None
        return sum(len(events) for events in batch.values())

"""The task table in SQLite (WAL): task records and the instances that run them.

Every instance of the engine registers itself with its pid, host and a heartbeat. At start-up an
instance marks as failed ("interrupted") the pending and running tasks of every instance that is
gone: its process no longer exists on this host, or its heartbeat is stale. Two engines sharing
one state directory therefore never mark each other's live tasks as interrupted.

The tasks an interrupted instance was running report the time they really ran: from their start
to the instance's last heartbeat (it was alive then), not to the moment a later instance found
them, which would count the downtime.

The store also keeps the idempotency keys of executes (:mod:`rlm.tasks.idempotency`), each
written in the transaction that first records its task.

An instance also records the address of the Ray cluster it runs in (its GCS address), so a
command started later on the same state directory can join that cluster, and so the engine,
instead of starting a second one (:meth:`TaskStore.live_instances`).

A :class:`TerminalHook` (the webhook outbox) is called inside the transaction that writes a
task's final record, so what it writes is committed with the record or not at all.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from rlm.models.tasks import ErrorInfo, ExecuteResponse
from rlm.private_files import private_database
from rlm.tasks import idempotency
from rlm.tasks.event_store import (
    EVENTS_SCHEMA,
    INSERT_EVENT_SQL,
    delete_events,
    event_rows,
    insert_events,
    last_event,
    select_events,
)
from rlm.tasks.events import TaskEvent
from rlm.tasks.idempotency import IdempotencyKey, IdempotentTask
from rlm.tasks.listing import TaskQuery, where
from rlm.tasks.record import TaskRecord

if TYPE_CHECKING:
    from rlm.db.async_pool import AsyncTransaction
    from rlm.db.compat import PgCompatConnection

__all__ = ["INTERRUPTED_MESSAGE", "EngineInstance", "TaskStore", "TerminalHook", "open_sqlite"]

#: A list of events (``TaskStore.list`` shadows the builtin inside the class).
_Events = list[TaskEvent]
_Records = list[TaskRecord]

INTERRUPTED_MESSAGE = "interrupted: the service stopped while the task was running"

#: Writes a task's record (a new one, or over its previous one).
_WRITE_SQL = "INSERT OR REPLACE INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

#: A new task's pending record, unless its id is taken, and with it (on PostgreSQL, in one
#: statement: one round trip, atomic without a transaction) the idempotency key naming it.
#: Answers 1 when the record was written, 0 when the id was taken (then no key is written).
_START_PG = (
    "WITH task AS (INSERT INTO tasks VALUES"
    " (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (task_id) DO NOTHING RETURNING task_id)"
    "{key} SELECT count(*) FROM task"
)
_START_KEY_PG = (
    ", idem AS (INSERT INTO idempotency (owner, key, fingerprint, task_id, created_at)"
    " SELECT %s, %s, %s, task_id, %s FROM task ON CONFLICT (owner, key) DO UPDATE SET"
    " fingerprint = EXCLUDED.fingerprint, task_id = EXCLUDED.task_id,"
    " created_at = EXCLUDED.created_at)"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    type TEXT NOT NULL,
    description TEXT NOT NULL,
    priority TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    org_id TEXT,
    team_id TEXT,
    request_json TEXT NOT NULL,
    planned_calls INTEGER NOT NULL,
    completed_calls INTEGER NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    result_json TEXT,
    instance_id TEXT NOT NULL,
    stored_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner_id, created_at);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE INDEX IF NOT EXISTS tasks_team ON tasks (team_id);
-- An admin lists its org's tasks, newest first.
CREATE INDEX IF NOT EXISTS tasks_org ON tasks (org_id, created_at);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    ray_address TEXT
);
CREATE TABLE IF NOT EXISTS task_cancels (
    task_id TEXT PRIMARY KEY,
    requested_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class EngineInstance:
    """An engine instance registered in the store.

    Attributes:
        instance_id: The instance's id (task records name it).
        pid: The process id of its core.
        host: The host it runs on.
        heartbeat_at: When it last said it was alive (epoch seconds).
        ray_address: The GCS address of its Ray cluster, when it recorded one.
    """

    instance_id: str
    pid: int
    host: str
    heartbeat_at: float
    ray_address: str | None


class TerminalHook(Protocol):
    """Writes that belong with a task's final record (the webhook outbox)."""

    def prepare(self, conn: sqlite3.Connection) -> None:
        """Create the hook's tables (called once, when the store opens)."""
        ...

    def task_ended(self, conn: sqlite3.Connection, record: TaskRecord) -> None:
        """Write what follows from ``record`` having ended, inside the caller's transaction
        (an error rolls the record back too)."""
        ...

    async def task_ended_async(self, tx: AsyncTransaction, record: TaskRecord) -> None:
        """:meth:`task_ended` in a transaction of the asynchronous path (PostgreSQL)."""
        ...


def open_sqlite(
    path: Path, database_url: str | None = None, *, also_locks: tuple[str, ...] = ()
) -> sqlite3.Connection:
    """Open (creating) a SQLite file in WAL mode, safe for several processes.

    With ``database_url``, the state file's tables are in that PostgreSQL database instead:
    the connection speaks this SQL to it (:mod:`rlm.db.compat`), and its transactions lock
    what SQLite's lock of ``path`` (and of the files ``also_locks`` names) would.

    Args:
        path: The database file: created mode 0600 (SQLite gives its ``-wal`` and ``-shm``
            files the same), in a directory of mode 0700 (see :mod:`rlm.private_files`).
        database_url: A migrated PostgreSQL database to use instead of the file.
        also_locks: Other state files a transaction of this connection writes.
    """
    if database_url is not None:
        from rlm.db.compat import open_compat

        return open_compat(database_url, path.name, *also_locks)
    private_database(path)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a process crash; only a power loss may drop the last commits.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _ts(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TaskStore:
    """Task records in a SQLite file.

    Args:
        path: The database file.
        clock: Wall-clock seconds (injected for tests).
        stale_after_s: A heartbeat older than this marks an instance as gone.
        hook: Called in the transaction of every final (terminal) record written.
        database_url: Keep the records in this PostgreSQL database (shared by instances).
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] | None = None,
        stale_after_s: float = 30.0,
        hook: TerminalHook | None = None,
        database_url: str | None = None,
    ) -> None:
        import time

        self._clock = clock or time.time
        self._stale_after_s = stale_after_s
        self._hook = hook
        self._lock = threading.Lock()
        self._conn = open_sqlite(path, database_url)
        self._on_postgres = database_url is not None
        self._database_url = database_url
        with self._lock:
            self._conn.executescript(_SCHEMA + EVENTS_SCHEMA)
            if hook is not None:
                hook.prepare(self._conn)
            self._conn.executescript(idempotency.SCHEMA)
        self._add_stored_bytes()
        self._add_ray_address()

    def _add_ray_address(self) -> None:
        # Files written before instances recorded their Ray get the column (see above).
        if self._has_column(self._conn, "instances", "ray_address"):
            return
        with self._tx() as c:
            if not self._has_column(c, "instances", "ray_address"):
                c.execute("ALTER TABLE instances ADD COLUMN ray_address TEXT")

    @staticmethod
    def _has_column(c: sqlite3.Connection, table: str, column: str) -> bool:
        return any(row[1] == column for row in c.execute(f"PRAGMA table_info({table})"))

    def _add_stored_bytes(self) -> None:
        # Files written before stored_bytes existed get the column, filled in once. Checked
        # again under the write lock: another process may be opening the same file.
        if self._has_stored_bytes(self._conn):
            return
        with self._tx() as c:
            if not self._has_stored_bytes(c):
                c.execute("ALTER TABLE tasks ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0")
                c.execute(
                    "UPDATE tasks SET stored_bytes = LENGTH(CAST(request_json AS BLOB))"
                    " + COALESCE(LENGTH(CAST(result_json AS BLOB)), 0)"
                )

    @staticmethod
    def _has_stored_bytes(c: sqlite3.Connection) -> bool:
        return any(row[1] == "stored_bytes" for row in c.execute("PRAGMA table_info(tasks)"))

    @contextmanager
    def _tx(self, *, batched: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``batched`` (on PostgreSQL) queues its statements and sends
        them together, up to the first result read and with the COMMIT (see
        :func:`rlm.db.compat.pipelined`)."""
        batch: AbstractContextManager[object] = nullcontext()
        if batched and self._on_postgres:
            from rlm.db.compat import pipelined  # PostgreSQL only: psycopg imported lazily

            batch = pipelined(self._conn)
        with self._lock, batch:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- instances ---------------------------------------------------------------------------

    def register_instance(self, instance_id: str, ray_address: str | None = None) -> None:
        """Record this process as a live engine instance.

        Args:
            instance_id: The instance's id.
            ray_address: The GCS address of the Ray cluster it runs in (others join it there).
        """
        now = self._clock()
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO instances"
                " (instance_id, pid, host, started_at, heartbeat_at, ray_address)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (instance_id, os.getpid(), socket.gethostname(), now, now, ray_address),
            )

    def live_instances(self) -> list[EngineInstance]:
        """The instances that are not gone (see the module docstring), freshest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT instance_id, pid, host, heartbeat_at, ray_address FROM instances"
                " ORDER BY heartbeat_at DESC"
            ).fetchall()
        found = [EngineInstance(r[0], int(r[1]), r[2], float(r[3]), r[4]) for r in rows]
        return [i for i in found if not self._instance_gone((i.pid, i.host, i.heartbeat_at))]

    def heartbeat(self, instance_id: str) -> None:
        """Tell other instances this one is alive."""
        with self._tx() as c:
            c.execute(
                "UPDATE instances SET heartbeat_at = ? WHERE instance_id = ?",
                (self._clock(), instance_id),
            )

    def _instance_gone(self, row: tuple[Any, ...] | None) -> bool:
        if row is None:
            return True
        pid, host, heartbeat_at = row
        if host == socket.gethostname() and not _pid_alive(int(pid)):
            return True
        return bool(self._clock() - float(heartbeat_at) > self._stale_after_s)

    def recover_interrupted(self, instance_id: str, *, own: bool = True) -> list[str]:
        """Mark the unfinished tasks of gone instances (and of this one) failed.

        Args:
            instance_id: The instance asking.
            own: Also mark this instance's own unfinished tasks (at its start, when none of
                them can be running); a live instance checking on the others passes False.

        Returns:
            The ids of the tasks marked interrupted.
        """
        now = datetime.now(UTC)
        marked: list[str] = []
        with self._tx() as c:
            rows = c.execute(
                "SELECT task_id, instance_id FROM tasks WHERE status IN ('pending', 'running')"
            ).fetchall()
            gone: dict[str, bool] = {}
            # When each gone instance was last known alive: its tasks ran until then at most.
            alive_until: dict[str, datetime] = {}
            for task_id, owner_instance in rows:
                if owner_instance not in gone:
                    inst = c.execute(
                        "SELECT pid, host, heartbeat_at FROM instances WHERE instance_id = ?",
                        (owner_instance,),
                    ).fetchone()
                    if owner_instance == instance_id:
                        gone[owner_instance] = own
                    else:
                        gone[owner_instance] = self._instance_gone(inst)
                    if inst is not None and owner_instance != instance_id:
                        beat = datetime.fromtimestamp(float(inst[2]), UTC)
                        alive_until[owner_instance] = min(now, beat)
                if not gone[owner_instance]:
                    continue
                record = self._row_to_record(
                    c.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
                )
                started = record.started_at or record.created_at
                # A task of an instance with no heartbeat on record ran for an unknown time:
                # report none rather than the downtime.
                ended = max(started, alive_until.get(owner_instance, started))
                result = ExecuteResponse(
                    task_id=task_id,
                    status="failed",
                    execution_time_ms=round((ended - started).total_seconds() * 1000, 3),
                    agent_calls=record.completed_calls,
                    decomposition_depth=0,
                    success=False,
                    error=ErrorInfo(code="INTERNAL_ERROR", message=INTERRUPTED_MESSAGE),
                )
                self._write_with_hook(
                    c, record.evolve(status="failed", completed_at=ended, result=result)
                )
                marked.append(task_id)
            c.execute(
                "DELETE FROM instances WHERE instance_id != ? AND heartbeat_at < ?",
                (instance_id, self._clock() - 7 * 86400),
            )
        return marked

    # -- tasks run by other instances (a shared PostgreSQL store) ----------------------------

    def unfinished(self) -> set[str]:
        """The ids of every pending or running task, whichever instance runs it."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT task_id FROM tasks WHERE status IN ('pending', 'running')"
            ).fetchall()
        return {str(r[0]) for r in rows}

    def mark_running(self, started: Sequence[tuple[str, datetime | None]]) -> None:
        """Store "running" and the start time of tasks still stored "pending" (one transaction).

        A task's record says "pending" from its admission until its final record (no write per
        start on the execute path); on a shared store the instance running it calls this on its
        poll, so another instance answers "running". A task that ended meanwhile keeps its
        final status (only "pending" rows change).

        Args:
            started: ``(task id, started at)`` of each task that started.
        """
        with self._tx(batched=True) as c:
            c.executemany(
                "UPDATE tasks SET status = 'running', started_at = ?"
                " WHERE task_id = ? AND status = 'pending'",
                [(_ts(at), task_id) for task_id, at in started],
            )

    def request_cancel(self, task_id: str) -> None:
        """Ask the instance running ``task_id`` to cancel it (it polls :meth:`cancel_requests`)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO task_cancels (task_id, requested_at) VALUES (?, ?)",
                (task_id, self._clock()),
            )

    def cancel_requests(self, instance_id: str) -> list[str]:
        """Unfinished tasks of ``instance_id`` another instance was asked to cancel."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT c.task_id FROM task_cancels c JOIN tasks t ON t.task_id = c.task_id"
                " WHERE t.instance_id = ? AND t.status IN ('pending', 'running')",
                (instance_id,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def forget_cancels(self) -> int:
        """Drop the cancel requests of tasks that have ended; how many."""
        with self._lock:
            cursor = self._conn.execute(
                "DELETE FROM task_cancels WHERE task_id NOT IN"
                " (SELECT task_id FROM tasks WHERE status IN ('pending', 'running'))"
            )
        return int(cursor.rowcount)

    # -- records -----------------------------------------------------------------------------

    def put(
        self,
        record: TaskRecord,
        events: Sequence[TaskEvent] = (),
        key: IdempotencyKey | None = None,
    ) -> None:
        """Insert or replace a record, with new events of its task and, with ``key``, that the
        key names this task: all in one transaction (a crash leaves all or none)."""
        # The hot path of every execute: its statements travel together (one or two round
        # trips on PostgreSQL rather than one each).
        with self._tx(batched=True) as c:
            self._write_with_hook(c, record)
            if events:
                insert_events(c, record.task_id, events)
            if key is not None:
                c.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                    (key.owner, key.key, key.fingerprint, record.task_id, self._clock()),
                )

    # -- the engine core's hot path: awaited on PostgreSQL -----------------------------------

    async def start_async(
        self, record: TaskRecord, key: IdempotencyKey | None = None, *, flush: bool = True
    ) -> bool:
        """Write a new task's record and, with ``key``, that the key names it; unless a task
        with its id exists already.

        On PostgreSQL this is awaited on the asynchronous pool (:mod:`rlm.db.async_pool`), as
        one statement: the id check, the record and the key in one round trip, during which
        the caller's event loop serves others. On SQLite it is the synchronous :meth:`get`
        and :meth:`put` (a local file: microseconds).

        Args:
            record: The new task's (pending) record.
            key: The idempotency key naming the task, if any.
            flush: Wait for the server to flush the commit to disk (PostgreSQL). ``False``
                only where losing the record in a crash of the *database server* is harmless:
                see :meth:`rlm.runtime.table.TaskTable.start`.

        Returns:
            ``False`` when the id was taken (nothing was written).
        """
        if self._database_url is None:
            if self.get(record.task_id) is not None:
                return False
            self.put(record, key=key)
            return True
        from rlm.db.async_pool import async_pool  # PostgreSQL only: psycopg imported lazily
        from rlm.db.compat import pg_errors

        pool = await async_pool(self._database_url)
        sql, args = _START_PG.format(key=""), list(self._row(record))
        if key is not None:
            sql = _START_PG.format(key=_START_KEY_PG)
            args += [key.owner, key.key, key.fingerprint, self._clock()]
        with pg_errors():
            async with pool.connection() as conn:
                if flush:
                    cursor = await conn.execute(sql.encode(), args)
                    row = await cursor.fetchone()
                else:
                    # One round trip still: the four statements travel in one pipeline.
                    async with conn.pipeline():
                        await conn.execute(b"BEGIN")
                        await conn.execute(b"SET LOCAL synchronous_commit = off")
                        cursor = await conn.execute(sql.encode(), args)
                        await conn.execute(b"COMMIT")
                    row = await cursor.fetchone()
        return row is not None and int(str(row[0])) == 1

    async def put_async(self, record: TaskRecord, events: Sequence[TaskEvent] = ()) -> None:
        """:meth:`put` (without a key), awaited on PostgreSQL: the transaction (the record, its
        events, the hook's rows, the ``COMMIT``) is one pipeline on the asynchronous pool, two
        round trips when the hook reads. On SQLite, :meth:`put`.

        Without the state files' advisory locks that the synchronous ``BEGIN`` takes: this
        transaction holds its locks while its caller's event loop serves others (between its
        round trips), and the same loop also runs synchronous transactions (the heartbeat, the
        events writer, the poll that stores "running"), which would block the loop waiting for
        a lock only the loop can release — the core would hang. Nothing here reads and then
        writes what those serialise: the record is an upsert of a task no one else writes
        while it ends (its events writer has let go of it, and it is no longer "running"), its
        events and the outbox row are inserts with unique keys.
        """
        if self._database_url is None:
            self.put(record, events)
            return
        from rlm.db.async_pool import async_pool, transaction

        compat = cast("PgCompatConnection", self._conn)
        pool = await async_pool(self._database_url)
        async with transaction(pool, [b"BEGIN"], compat.plan_statement) as tx:
            await tx.execute(_WRITE_SQL, self._row(record))
            if events:
                await tx.executemany(INSERT_EVENT_SQL, event_rows(record.task_id, events))
            if self._hook is not None and record.terminal:
                await self._hook.task_ended_async(tx, record)

    # -- idempotency keys --------------------------------------------------------------------

    def idempotent(
        self, owner: str, key: str, ttl_s: float = idempotency.IDEMPOTENCY_TTL_S
    ) -> IdempotentTask | None:
        """The task ``owner``'s ``key`` names, if it was used within ``ttl_s``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT task_id, fingerprint, created_at FROM idempotency"
                " WHERE owner = ? AND key = ? AND created_at > ?",
                (owner, key, self._clock() - ttl_s),
            ).fetchone()
        return None if row is None else IdempotentTask(row[0], row[1], float(row[2]))

    def purge_idempotency(self, ttl_s: float = idempotency.IDEMPOTENCY_TTL_S) -> int:
        """Forget keys older than ``ttl_s``; how many were forgotten."""
        with self._tx() as c:
            cursor = c.execute(
                "DELETE FROM idempotency WHERE created_at <= ?", (self._clock() - ttl_s,)
            )
        return int(cursor.rowcount)

    def get(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``, if any."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else self._row_to_record(row)

    def list(
        self, *, owner_id: str | None = None, org_id: str | None = None, limit: int = 100
    ) -> list[TaskRecord]:
        """The newest records, optionally only an owner's or an org's."""
        query, args = "SELECT * FROM tasks", []
        clauses = []
        if owner_id is not None:
            clauses.append("owner_id = ?")
            args.append(owner_id)
        if org_id is not None:
            clauses.append("org_id = ?")
            args.append(org_id)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY created_at DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(query, (*args, limit)).fetchall()
        return [self._row_to_record(r) for r in rows]

    def find(
        self, query: TaskQuery, *, owner_id: str | None = None, org_id: str | None = None
    ) -> _Records:
        """The records ``query`` selects, newest first, one more than its ``limit`` when
        there are (so the caller knows a next page exists).

        Args:
            query: Filters and the page (see :mod:`rlm.tasks.listing`).
            owner_id: Only this user's tasks; with ``org_id``, this user's *or* this org's
                (what an org admin sees).
            org_id: Only this org's tasks (see ``owner_id``).
        """
        sql, args = where(query, owner_id=owner_id, org_id=org_id, on_postgres=self._on_postgres)
        with self._lock:
            rows = self._conn.execute("SELECT * FROM tasks " + sql, args).fetchall()
        return [self._row_to_record(r) for r in rows]

    def delete(self, task_ids: Sequence[str]) -> int:
        """Delete tasks' records and their events; how many records were deleted."""
        with self._tx() as c:
            delete_events(c, task_ids)
            return sum(
                c.execute("DELETE FROM tasks WHERE task_id = ?", (t,)).rowcount for t in task_ids
            )

    def prune(self, completed_before: datetime) -> int:
        """Delete the tasks that ended before ``completed_before``, with their events.

        Returns:
            How many tasks were deleted.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT task_id FROM tasks WHERE completed_at IS NOT NULL AND completed_at < ?"
                " AND status IN ('completed', 'failed', 'cancelled')",
                (_ts(completed_before.astimezone(UTC)),),
            ).fetchall()
        return self.delete([r[0] for r in rows]) if rows else 0

    # -- events ------------------------------------------------------------------------------

    def write_events(self, batch: Mapping[str, Sequence[TaskEvent]]) -> None:
        """Write new events of running tasks, ``{task_id: events}``, in one transaction."""
        with self._tx() as c:
            for task_id, events in batch.items():
                insert_events(c, task_id, events)

    def events(
        self,
        task_id: str,
        after: int = 0,
        limit: int | None = None,
        *,
        trajectory: bool = False,
    ) -> _Events:
        """A task's stored events numbered above ``after``, oldest first (see
        :func:`~rlm.tasks.event_store.select_events`)."""
        with self._lock:
            return select_events(self._conn, task_id, after, limit, trajectory=trajectory)

    def last_event(self, task_id: str) -> tuple[int, str] | None:
        """The number and type of the task's newest stored event (``None`` when none is)."""
        with self._lock:
            return last_event(self._conn, task_id)

    def stored_bytes(self, *, team_id: str) -> int:
        """Bytes kept for a team's tasks: their stored requests and results (UTF-8)."""
        with self._lock:
            (total,) = self._conn.execute(
                "SELECT COALESCE(SUM(stored_bytes), 0) FROM tasks WHERE team_id = ?", (team_id,)
            ).fetchone()
        return int(total)

    def _write_with_hook(self, c: sqlite3.Connection, r: TaskRecord) -> None:
        self._write(c, r)
        if self._hook is not None and r.terminal:
            self._hook.task_ended(c, r)

    @staticmethod
    def _write(c: sqlite3.Connection, r: TaskRecord) -> None:
        c.execute(_WRITE_SQL, TaskStore._row(r))

    @staticmethod
    def _row(r: TaskRecord) -> tuple[Any, ...]:
        """The ``tasks`` row of ``r``, in the table's column order."""
        request = json.dumps(r.request)
        result = None if r.result is None else r.result.model_dump_json(by_alias=True)
        # Counted once here, so a team's storage is a SUM over an integer column on reads.
        stored = len(request.encode()) + (0 if result is None else len(result.encode()))
        return (
            r.task_id,
            r.status,
            _ts(r.created_at),
            r.type,
            r.description,
            r.priority,
            r.owner_id,
            r.org_id,
            r.team_id,
            request,
            r.planned_calls,
            r.completed_calls,
            _ts(r.started_at),
            _ts(r.completed_at),
            result,
            r.instance_id,
            stored,
        )

    @staticmethod
    def _row_to_record(row: tuple[Any, ...]) -> TaskRecord:
        created = _dt(row[2])
        assert created is not None
        return TaskRecord(
            task_id=row[0],
            status=row[1],
            created_at=created,
            type=row[3],
            description=row[4],
            priority=row[5],
            owner_id=row[6],
            org_id=row[7],
            team_id=row[8],
            request=json.loads(row[9]),
            planned_calls=row[10],
            completed_calls=row[11],
            started_at=_dt(row[12]),
            completed_at=_dt(row[13]),
            result=None if row[14] is None else ExecuteResponse.model_validate_json(row[14]),
            instance_id=row[15],
        )

"""The SQLite-shaped stores on PostgreSQL: a connection that speaks their SQL to a server.

The task table, its events and idempotency keys, the LM memo cache, the rate-limit journal, the
webhook outbox and deliveries, and the security audit log and policies are written against the
small part of :class:`sqlite3.Connection` they use (``execute``, ``executemany``, explicit
``BEGIN``/``COMMIT``). :class:`PgCompatConnection` offers that part over one psycopg
connection, so each store keeps one body of SQL and one set of tests for both databases. It
translates the few places where the dialects differ:

===============================  ==============================================================
SQLite                           PostgreSQL
===============================  ==============================================================
``?``, ``:name``                 ``%s``, ``%(name)s`` (a literal ``%`` is doubled)
``INSERT OR IGNORE``             ``INSERT ... ON CONFLICT DO NOTHING``
``INSERT OR REPLACE``            ``INSERT ... ON CONFLICT (primary key) DO UPDATE SET ...``
``BEGIN [IMMEDIATE|DEFERRED]``   ``BEGIN`` + ``pg_advisory_xact_lock`` per state file, sent in
                                 one pipeline with the transaction's first statement: writers
                                 of one file are serialised across instances, as SQLite's
                                 file lock serialises them across processes
``LIMIT -1``                     ``LIMIT NULL`` (no limit)
``PRAGMA table_info(t)``         the table's columns from ``information_schema``
other ``PRAGMA``, ``ATTACH``,    nothing: the schema is the migrations' (:mod:`rlm.db.migrations`),
DDL, ``executescript``           not the stores'
===============================  ==============================================================

A connection is borrowed from the process's pool (:mod:`rlm.db.pool`) for each statement
outside a transaction, and held from a transaction's ``BEGIN`` to its ``COMMIT`` (or for a
:meth:`~PgCompatConnection.pipelined` block): the stores of a process share a few connections.

Errors are raised as subclasses of :mod:`sqlite3`'s, so a store's ``except sqlite3.Error``
handles a PostgreSQL failure the same way. NUMERIC results (``SUM`` of integers) load as
floats or ints, as SQLite returns them.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, cast

from rlm.db.pool import shared_pool

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = [
    "PgCompatConnection",
    "PgIntegrityError",
    "PgOperationalError",
    "bind",
    "open_compat",
    "pg_errors",
    "pipelined",
    "translate",
]


class PgOperationalError(sqlite3.OperationalError):
    """A PostgreSQL failure, as a store written for SQLite expects to catch it."""


class PgIntegrityError(sqlite3.IntegrityError):
    """A PostgreSQL constraint (or append-only trigger) violation."""


_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)", re.IGNORECASE)
_IGNORED = re.compile(
    r"^\s*(PRAGMA\s+(?!table_info)|ATTACH\s|DETACH\s|CREATE\s|DROP\s|ALTER\s|VACUUM)",
    re.IGNORECASE,
)
_TABLE_INFO = re.compile(r"^\s*PRAGMA\s+table_info\((\w+)\)\s*$", re.IGNORECASE)
_BEGIN = re.compile(
    r"^\s*BEGIN(\s+(IMMEDIATE|DEFERRED|EXCLUSIVE))?\s*(TRANSACTION)?\s*;?\s*$", re.I
)
_END = re.compile(r"^\s*(COMMIT|ROLLBACK|END)\s*(TRANSACTION)?\s*;?\s*$", re.IGNORECASE)
_COLUMNS = re.compile(r"^\s*INSERT\s+INTO\s+\w+\s*\(([^)]*)\)", re.IGNORECASE)


def translate(sql: str) -> tuple[str, list[int]]:
    """SQLite placeholders and literals rewritten for psycopg.

    Returns:
        The statement, and the positions of the parameters that are a ``LIMIT``'s (SQLite's
        ``LIMIT -1`` means no limit; PostgreSQL's is ``LIMIT NULL``).
    """
    out: list[str] = []
    limits: list[int] = []
    index = 0
    i = 0
    quote: str | None = None
    while i < len(sql):
        ch = sql[i]
        if quote is not None:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?":
            if re.search(r"LIMIT\s*$", "".join(out[-8:]), re.IGNORECASE):
                limits.append(index)
            out.append("%s")
            index += 1
        elif (
            ch == ":"
            and i + 1 < len(sql)
            and (sql[i + 1].isalpha() or sql[i + 1] == "_")
            and (i == 0 or sql[i - 1] != ":")  # a ``::type`` cast, not a parameter
        ):
            match = re.match(r":(\w+)", sql[i:])
            assert match is not None  # the character after ':' is a name's first
            out.append(f"%({match[1]})s")
            i += len(match[0])
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out), limits


#: Translated statements kept per connection.
_MAX_PLANS = 1024


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(b"rlm-state:" + name.encode()).digest()[:8], "big") >> 1


class _Empty:
    """The cursor of a statement that does nothing on PostgreSQL."""

    rowcount = 0
    description = None

    def fetchone(self) -> None:
        return None

    def fetchmany(self, size: int = 1) -> list[Any]:
        return []

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class _Rows:
    """A cursor over rows already read (``PRAGMA table_info``, or a statement whose
    connection went back to the pool)."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int | None = None) -> None:
        self._rows = rows
        self._next = 0  # an index, not pop(0): reading n rows one by one stays O(n)
        self.rowcount = len(rows) if rowcount is None else rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        rows = self._rows[self._next : self._next + size]
        self._next += len(rows)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._rows[self._next :]
        self._next = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class _Queued:
    """A cursor whose statement may still be queued in a pipeline: reading its rows or its
    ``rowcount`` sends what is queued first."""

    def __init__(self, cursor: Any, pipeline: psycopg.Pipeline) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    @property
    def rowcount(self) -> int:
        self._pipeline.sync()
        return int(self._cursor.rowcount)

    def fetchone(self) -> Any:
        self._pipeline.sync()
        return self._cursor.fetchone()

    def fetchmany(self, size: int = 1) -> list[Any]:
        self._pipeline.sync()
        return list(self._cursor.fetchmany(size))

    def fetchall(self) -> list[Any]:
        self._pipeline.sync()
        return list(self._cursor.fetchall())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgCompatConnection:
    """The part of :class:`sqlite3.Connection` the stores use, over PostgreSQL.

    Args:
        pool: The process's pool of autocommit connections to a migrated database.
        locks: The state files this connection stands for (``state.db``...): every ``BEGIN``
            takes their advisory transaction locks, in a fixed order.
    """

    def __init__(self, pool: ConnectionPool, locks: Sequence[str]) -> None:
        self._pool = pool
        # The connection borrowed for the open transaction or pipelined block, if any.
        self._held: psycopg.Connection[tuple[object, ...]] | None = None
        # A BEGIN is sent with the transaction's first statement (one pipeline, one round
        # trip): BEGIN, then the advisory locks of the state files, in a fixed order.
        self._begin = [b"BEGIN"] + [
            f"SELECT pg_advisory_xact_lock({key})".encode()
            for key in sorted({_lock_key(name) for name in locks})
        ]
        self._pending_begin = False
        self._pipelined: psycopg.Pipeline | None = None
        self._keys: dict[str, tuple[list[str], list[str]]] = {}
        # What each SQL text becomes (the stores' statements are a few hundred constants).
        self._plans: dict[str, tuple[str, Any]] = {}
        self._mutex = threading.RLock()

    @property
    def in_transaction(self) -> bool:
        """A ``BEGIN`` is open (as :attr:`sqlite3.Connection.in_transaction`)."""
        held = self._held
        return self._pending_begin or (held is not None and held.info.transaction_status != 0)

    @property
    def begin_statements(self) -> list[bytes]:
        """What a ``BEGIN`` of this connection sends: ``BEGIN`` and its state files' advisory
        locks, in their fixed order (the asynchronous path sends the same)."""
        return list(self._begin)

    def plan_statement(self, sql: str) -> tuple[bytes, list[int]]:
        """A statement of the stores' SQL as PostgreSQL's (bound with :func:`bind`).

        Raises:
            ValueError: ``sql`` is transaction control, a ``PRAGMA`` or DDL (not a statement
                another connection could send as it is).
        """
        with self._mutex, self._errors():
            kind, plan = self._plan(sql)
        if kind != "stmt":
            raise ValueError(f"not a plain statement: {sql[:40]!r}")
        text, limits = plan
        return text, limits

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """Run one statement; returns a cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        with self._mutex, self._errors():
            kind, plan = self._plan(sql)
            if kind == "begin":
                self._pending_begin = True
                return _Empty()
            if kind == "end":
                if self._pending_begin:  # nothing was sent: nothing to end
                    self._pending_begin = False
                    self._give_back()
                    return _Empty()
                if self._held is None:
                    return _Empty()
                try:
                    return self._held.execute(plan)
                finally:
                    self._give_back()
            if kind == "info":
                return _Rows(self._table_info(plan))
            if kind == "ignore":
                return _Empty()
            text, limits = plan
            if self._pending_begin:
                conn = self._hold()
                with self._opening(conn):
                    cursor = conn.execute(text, _params(params, limits))
            elif self._held is not None:
                cursor = self._held.execute(text, _params(params, limits))
            else:
                with self._pool.connection() as conn:
                    return _read(conn.execute(text, _params(params, limits)))
            if self._pipelined is not None:
                return _Queued(cursor, self._pipelined)
            return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        """Run one statement for each parameter row."""
        with self._mutex, self._errors():
            _, (text, limits) = self._plan(sql)
            values = [_params(r, limits) for r in rows]
            if self._pending_begin:
                conn = self._hold()
                cursor = conn.cursor()
                with self._opening(conn):
                    cursor.executemany(text, values)
                return cursor
            if self._held is not None:
                cursor = self._held.cursor()
                cursor.executemany(text, values)
                return cursor
            with self._pool.connection() as conn:
                cursor = conn.cursor()
                cursor.executemany(text, values)
                return _Rows([], cursor.rowcount)

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Queue the statements of the block and send them together: reading a result sends
        what is queued, the end of the block sends the rest (a transaction whose only read is
        its last statement's costs one round trip, COMMIT included)."""
        with self._mutex, self._errors():
            conn = self._hold()
            try:
                with conn.pipeline() as pipeline:
                    self._pipelined = pipeline
                    yield
            finally:
                self._pipelined = None
                self._give_back()

    def _hold(self) -> psycopg.Connection[tuple[object, ...]]:
        """The held connection, borrowing one from the pool if none is."""
        if self._held is None:
            self._held = self._pool.getconn()
        return self._held

    def _give_back(self) -> None:
        """Return the held connection to the pool once no transaction or pipeline needs it
        (a connection still in a failed transaction is rolled back by the pool)."""
        held = self._held
        if held is None or self._pipelined is not None or self._pending_begin:
            return
        if not held.broken and held.info.transaction_status not in (0, 3):  # IDLE, INERROR
            return
        self._held = None
        self._pool.putconn(held)

    @contextmanager
    def _opening(self, conn: psycopg.Connection[tuple[object, ...]]) -> Iterator[None]:
        """Send the pending BEGIN and its locks in one pipeline with what the body sends."""
        self._pending_begin = False
        if self._pipelined is not None:  # the enclosing pipeline sends them together
            for statement in self._begin:
                conn.execute(statement)
            yield
            return
        with conn.pipeline():
            for statement in self._begin:
                conn.execute(statement)
            yield

    def executescript(self, script: str) -> _Empty:
        """Nothing: the stores' scripts create their schema, which migrations own here."""
        return _Empty()

    def commit(self) -> None:
        """Commit an open transaction (statements outside one are committed already)."""
        with self._mutex, self._errors():
            try:
                if self._pending_begin:
                    self._pending_begin = False
                elif self.in_transaction and self._held is not None:
                    self._held.execute("COMMIT")
            finally:
                self._give_back()

    def rollback(self) -> None:
        """Roll an open transaction back."""
        with self._mutex, self._errors():
            try:
                if self._pending_begin:
                    self._pending_begin = False
                elif self.in_transaction and self._held is not None:
                    self._held.execute("ROLLBACK")
            finally:
                self._give_back()

    def close(self) -> None:
        """Give the held connection (if any) back to the pool, its transaction rolled back;
        the pool stays open for the process's other stores."""
        with self._mutex:
            self._pending_begin = False
            held, self._held = self._held, None
            if held is not None:
                self._pool.putconn(held)

    def __enter__(self) -> PgCompatConnection:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # As sqlite3's: commit on success, roll back on an error (the connection stays open).
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def _plan(self, sql: str) -> tuple[str, Any]:
        plan = self._plans.get(sql)
        if plan is None:
            if _BEGIN.match(sql):
                plan = ("begin", None)
            elif (end := _END.match(sql)) is not None:
                plan = ("end", end[1].upper().encode())
            elif (info := _TABLE_INFO.match(sql)) is not None:
                plan = ("info", info[1])
            elif _IGNORED.match(sql):
                plan = ("ignore", None)
            else:
                text, limits = self._statement(sql)
                plan = ("stmt", (text.encode(), limits))
            if len(self._plans) >= _MAX_PLANS:  # statements built with IN (?, ?, ...) lists
                self._plans.clear()
            self._plans[sql] = plan
        return plan

    def _statement(self, sql: str) -> tuple[str, list[int]]:
        match = _INSERT_OR.match(sql)
        if match is None:
            return translate(sql)
        mode, table = match[1].upper(), match[2]
        plain = sql[: match.start()] + "INSERT INTO " + table + sql[match.end() :]
        text, limits = translate(plain.rstrip().rstrip(";"))
        if mode == "IGNORE":
            return text + " ON CONFLICT DO NOTHING", limits
        key, columns = self._key_of(table)
        listed = _COLUMNS.match(plain)
        if listed is not None:
            columns = [c.strip() for c in listed[1].split(",")]
        updates = [c for c in columns if c not in key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)
            if updates
            else "DO NOTHING"
        )
        return f"{text} ON CONFLICT ({', '.join(key)}) {action}", limits

    def _key_of(self, table: str) -> tuple[list[str], list[str]]:
        if table not in self._keys:
            columns = [str(row[1]) for row in self._table_info(table)]
            with self._pool.connection() as conn:
                found = conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = %s::regclass AND i.indisprimary",
                    (table,),
                ).fetchall()
            key = [str(r[0]) for r in found]
            self._keys[table] = (key, columns)
        return self._keys[table]

    def _table_info(self, table: str) -> list[tuple[Any, ...]]:
        # Catalogue reads: on another connection than an open transaction's, which is fine
        # (the schema is the migrations', fixed while the process runs).
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT ordinal_position - 1, column_name, data_type, is_nullable = 'NO',"
                " column_default, 0 FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = %s"
                " ORDER BY ordinal_position",
                (table,),
            ).fetchall()
        return [tuple(r) for r in rows]

    def _errors(self) -> AbstractContextManager[None]:
        return pg_errors()


@contextmanager
def pg_errors() -> Iterator[None]:
    """Raise psycopg's errors as :mod:`sqlite3`'s (see the module docstring)."""
    import psycopg

    try:
        yield
    except psycopg.errors.IntegrityError as err:
        raise PgIntegrityError(str(err)) from err
    except psycopg.errors.RaiseException as err:  # the audit log's append-only trigger
        raise PgIntegrityError(str(err)) from err
    except psycopg.Error as err:
        raise PgOperationalError(str(err)) from err


def bind(
    params: Sequence[Any] | Mapping[str, Any], limits: list[int]
) -> Sequence[Any] | Mapping[str, Any]:
    """``params`` for a statement of :meth:`PgCompatConnection.plan_statement` (SQLite's
    ``LIMIT -1`` made ``LIMIT NULL``)."""
    return _params(params, limits)


def _params(
    params: Sequence[Any] | Mapping[str, Any], limits: list[int]
) -> Sequence[Any] | Mapping[str, Any]:
    if isinstance(params, Mapping):
        return params
    values = list(params)
    for index in limits:
        if index < len(values) and values[index] is not None and values[index] < 0:
            values[index] = None
    return values


def pipelined(conn: sqlite3.Connection) -> AbstractContextManager[object]:
    """:meth:`PgCompatConnection.pipelined` for a PostgreSQL connection; nothing for SQLite's
    (its statements are calls into this process)."""
    method = getattr(conn, "pipelined", None)
    return nullcontext() if method is None else cast(AbstractContextManager[object], method())


def open_compat(url: str, *locks: str) -> sqlite3.Connection:
    """A :class:`PgCompatConnection` to ``url`` standing for the state files ``locks``, on
    the process's shared pool.

    Typed as :class:`sqlite3.Connection` for the stores that take one: it implements the part
    of that interface they use (see the module docstring), no more.

    Raises:
        InternalError: The server is unreachable or its schema is not this code's.
    """
    return cast(sqlite3.Connection, PgCompatConnection(shared_pool(url), locks))


def _read(cursor: Any) -> _Rows:
    """A finished statement's rows and row count, read before its connection goes back."""
    rows = [tuple(r) for r in cursor.fetchall()] if cursor.description is not None else []
    return _Rows(rows, cursor.rowcount)

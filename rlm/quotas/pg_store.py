"""The quota ledger's state in PostgreSQL, shared by every service instance on the database.

Each instance keeps the whole ledger in memory (admission is a dict lookup, not a query) and the
database is the one truth. A mutating call is applied to the in-memory ledger (a reservation
checks and charges the user, team and org together), then :meth:`PostgresQuotaStore.commit`
sends the entities it changed to ``quota_commit`` (migration 0001), one statement that locks
the ledger's revision row (``FOR UPDATE``) and

- if the revision is the one this instance made its call on, writes the entities at the next
  revision: the call is stored, in one round trip;
- otherwise writes nothing and returns the rows written since (``rev > known``): the service
  rebuilds its ledger from them and applies the call again.

Calls from all instances are thus stored one at a time, each made on the state every earlier
one left: a reservation is all or nothing across instances and two instances can never both
spend the last unit of a limit (an empty change is checked the same way, so a refusal is never
made on a stale ledger either). A batch of admissions (:meth:`QuotaLedgerService.batch`) is one
statement: group commit, as the SQLite store does with its journal. Deleted entities stay as
tombstones (``data`` NULL) so a catching-up instance sees the delete.

Example:
    >>> with PostgresQuotaStore("postgresql://rlm@127.0.0.1/rlm") as store:   # doctest: +SKIP
    ...     ledger = store.load_ledger(SystemClock())
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from rlm.db.pool import shared_pool
from rlm.db.url import redact
from rlm.errors import InternalError
from rlm.quotas.changes import KINDS, ChangeSet, Snapshot
from rlm.quotas.clock import Clock
from rlm.quotas.ledger import QuotaLedger
from rlm.quotas.settings import QuotaSettings

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresQuotaStore"]

_log = logging.getLogger(__name__)

_BEGIN_LOCKED = b"BEGIN; SELECT rev FROM quota_meta WHERE id = 1 FOR UPDATE"

# The rows travel as one JSON document, [[kind, key, data-or-null], ...]: one string for the
# driver to send (encoded by orjson) instead of three arrays it would escape element by element.
_UPSERT = """INSERT INTO quota_entities (kind, key, data, rev)
SELECT r->>0, r->>1, NULLIF(r->2, 'null'::jsonb), %s FROM jsonb_array_elements(%s::jsonb) AS r
ON CONFLICT (kind, key) DO UPDATE SET data = EXCLUDED.data, rev = EXCLUDED.rev"""


class PostgresQuotaStore:
    """The ledger's entities in a PostgreSQL database (schema migrated beforehand).

    Args:
        url: The ``postgresql://`` URL (``RLM_DATABASE_URL``).

    Raises:
        InternalError: The server cannot be reached or its schema is not this code's.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        # Connections are borrowed from the process's pool for each read, commit or
        # exclusive() block; opening it checks the server and the schema now.
        self._pool: ConnectionPool | None = shared_pool(url)
        # The ledger as of revision self._rev: kept so a catch-up reads only newer rows.
        self._snap: Snapshot = {kind: {} for kind in KINDS}
        self._rev = -1
        self._in_txn = False
        # The connection of the open exclusive() block.
        self._txn_conn: psycopg.Connection[tuple[object, ...]] | None = None
        # Writes of the open exclusive() block, sent with its COMMIT.
        self._queued: list[tuple[str, tuple[object, ...]]] = []

    @property
    def path(self) -> str:
        """Where the state lives (the URL without its password)."""
        return redact(self._url)

    @property
    def revision(self) -> int:
        """The ledger revision this store has seen (each committed write adds one)."""
        return self._rev

    def journal_length(self) -> int:
        """Always 0: every call is committed to its rows (the SQLite store's journal twin)."""
        return 0

    def load(self) -> Snapshot:
        """Every stored entity, read afresh, as ``{kind: {key: data}}`` (all kinds present)."""
        with self._errors(), self._connection() as conn, conn.transaction():
            row = conn.execute("SELECT rev FROM quota_meta WHERE id = 1").fetchone()
            rows = conn.execute(
                "SELECT kind, key, data FROM quota_entities WHERE data IS NOT NULL"
            ).fetchall()
        with self._errors():
            snap: Snapshot = {kind: {} for kind in KINDS}
            for kind, key, data in rows:
                snap.setdefault(str(kind), {})[str(key)] = _as_dict(data)
            self._snap = snap
            self._rev = int(str(row[0])) if row else 0
        return _copy(self._snap)

    def load_ledger(self, clock: Clock, settings: QuotaSettings | None = None) -> QuotaLedger:
        """A ledger with the stored state (an empty one for a new database)."""
        return QuotaLedger.restore(self.load(), clock, settings)

    def refresh(self) -> Snapshot | None:
        """The whole state if other instances changed it since this store last looked, else
        ``None`` (one cheap query when nothing changed)."""
        if self._in_txn:
            return None
        with self._errors(), self._connection() as conn:
            row = conn.execute("SELECT rev FROM quota_meta WHERE id = 1").fetchone()
            return self._catch_up(conn, row)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Snapshot | None]:
        """Hold the ledger's lock across all instances for one transaction.

        Yields the whole state when other instances changed it since this store last looked
        (the caller rebuilds its ledger from it), else ``None``. :meth:`apply` calls inside
        join the transaction, committed on exit (rolled back if the body raises).

        Raises:
            InternalError: The database failed; nothing of the transaction is stored.
        """
        with self._errors(), self._connection() as conn:
            # One round trip to open the transaction and lock the revision row; the writes
            # apply() queues and the COMMIT go in one more (a pipeline), whatever their number.
            cursor = conn.execute(_BEGIN_LOCKED)
            cursor.nextset()
            row = cursor.fetchone()
            self._in_txn = True
            self._txn_conn = conn
            self._queued.clear()
            try:
                yield self._catch_up(conn, row)
                with conn.pipeline():
                    for query, params in self._queued:
                        conn.execute(query, params)
                    conn.execute("COMMIT")
            except BaseException:
                self._rev = -1  # rolled back: the mirror may hold what was not stored
                if not conn.broken and conn.info.transaction_status != 0:
                    with contextlib.suppress(Exception):
                        conn.execute("ROLLBACK")
                raise
            finally:
                self._in_txn = False
                self._txn_conn = None
                self._queued.clear()

    def commit(self, changes: ChangeSet) -> Snapshot | None:
        """Store ``changes`` if this store's revision is the ledger's, in one round trip
        (``quota_commit``: the revision row locked, checked, the rows written at the next
        revision); else store nothing and return the whole current state, caught up from the
        rows this store missed, for the caller to make its changes on again.

        Raises:
            InternalError: The database failed; nothing of ``changes`` is stored.
        """
        rows = [*changes.upserts, *((k, n, None) for k, n in changes.deletes)]
        with self._errors():
            with self._connection() as conn:
                found = conn.execute(
                    "SELECT quota_commit(%s, %s::jsonb)",
                    (self._rev, orjson.dumps(rows).decode()),
                ).fetchone()
            answer = _as_dict(found[0] if found else None)
            rev = int(answer["rev"])
            if "rows" not in answer:
                if rev != self._rev:
                    self._fold(rows)
                self._rev = rev
                return None
            if answer.get("full"):
                self._snap = {kind: {} for kind in KINDS}
            self._fold([(str(k), str(n), d) for k, n, d in answer["rows"]])
            self._rev = rev
            return _copy(self._snap)

    def apply(self, changes: ChangeSet) -> None:
        """Write ``changes`` at the next revision (in the open :meth:`exclusive` transaction,
        else in one of its own).

        Raises:
            InternalError: The write failed; nothing of ``changes`` is stored.
        """
        if not changes:
            return
        if not self._in_txn:
            with self.exclusive():
                self.apply(changes)
            return
        with self._errors():
            rev = self._rev + 1
            rows = orjson.dumps([*changes.upserts, *((k, n, None) for k, n in changes.deletes)])
            # Sent with the COMMIT that ends the exclusive() block.
            self._queued.append((_UPSERT, (rev, rows.decode())))
            self._queued.append(("UPDATE quota_meta SET rev = %s WHERE id = 1", (rev,)))
            self._rev = rev
            self._fold([*changes.upserts, *((k, n, None) for k, n in changes.deletes)])

    def compact(self) -> None:
        """Nothing to fold: rows are written per call (kept for the store interface)."""

    def replace(self, snapshot: Snapshot) -> None:
        """Overwrite the whole state with ``snapshot`` (one transaction, for every instance)."""
        with self.exclusive(), self._errors(), self._connection() as conn:
            rev = self._rev + 1
            # Tombstones for what disappears, so other instances' catch-up sees it.
            conn.execute(
                "UPDATE quota_entities SET data = NULL, rev = %s WHERE data IS NOT NULL",
                (rev,),
            )
            rows = [(k, n, d) for k, entities in snapshot.items() for n, d in entities.items()]
            conn.execute(_UPSERT, (rev, orjson.dumps(rows).decode()))
            conn.execute("UPDATE quota_meta SET rev = %s WHERE id = 1", (rev,))
            self._rev = rev
            self._snap = {kind: {} for kind in KINDS}
            self._fold(rows)

    def close(self) -> None:
        """Stop using the pool (it stays open for the process's other stores)."""
        self._pool = None

    def __enter__(self) -> PostgresQuotaStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """The open exclusive() block's connection, else one borrowed from the pool for the
        body (given back, rolled back if the body left a transaction open)."""
        if self._txn_conn is not None:
            yield self._txn_conn
            return
        if self._pool is None:
            raise InternalError("the quota store is closed")
        with self._pool.connection() as conn:
            yield conn

    def _catch_up(
        self, conn: psycopg.Connection[tuple[object, ...]], row: tuple[object, ...] | None
    ) -> Snapshot | None:
        rev = int(str(row[0])) if row else 0
        if rev == self._rev:
            return None
        if self._rev < 0 or rev < self._rev:
            rows = conn.execute(
                "SELECT kind, key, data FROM quota_entities WHERE data IS NOT NULL"
            ).fetchall()
            self._snap = {kind: {} for kind in KINDS}
        else:
            rows = conn.execute(
                "SELECT kind, key, data FROM quota_entities WHERE rev > %s", (self._rev,)
            ).fetchall()
        self._fold([(str(k), str(n), None if d is None else _as_dict(d)) for k, n, d in rows])
        self._rev = rev
        return _copy(self._snap)

    def _fold(self, rows: Sequence[tuple[str, str, dict[str, Any] | None]]) -> None:
        for kind, key, data in rows:
            if data is None:
                self._snap.get(kind, {}).pop(key, None)
            else:
                self._snap.setdefault(kind, {})[key] = orjson.loads(orjson.dumps(data))

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.Error as err:
            self._rev = -1  # the mirror may be ahead of the database now: reload next time
            raise InternalError(
                "the quota state database failed", {"cause": type(err).__name__}
            ) from err


def _as_dict(data: object) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if isinstance(data, str | bytes):
        loaded = orjson.loads(data)
        if isinstance(loaded, dict):
            return loaded
    raise InternalError("a quota entity row is not a JSON object")


def _copy(snap: Snapshot) -> Snapshot:
    # Round-trip so a caller's ledger never shares a dict with the mirror.
    loaded: Snapshot = orjson.loads(orjson.dumps(snap))
    for kind in KINDS:
        loaded.setdefault(kind, {})
    return loaded

"""The quota ledger's state on disk: SQLite entity rows plus a journal of recent changes.

Each mutating ledger call touches a handful of entities (a user, a membership, a team, the orgs
of one branch, a reservation). The store appends those entities, as one record, to a
:class:`~rlm.quotas.journal.ChangeJournal` next to the database (``<file>.journal``): one small
``write`` per call, with the durability of SQLite's WAL at ``synchronous=NORMAL`` (a committed
call survives a crash of the process; a power loss may drop the last few calls, never tear the
state). Every ``compact_every`` records the latest version of each entity is written to the
``quota_entities`` table in one transaction, the WAL is checkpointed (fsync), and only then is
the journal emptied. Loading reads the entity rows and replays the journal over them; replay is
idempotent (records hold whole entities), so a crash at any point of a compaction is harmless.

Why not a row per call in SQLite: a commit rewrites whole 4 KiB pages into the WAL (about
6 KiB per call), and fsyncing that at each checkpoint cost more than everything else a call
does; the journal writes about 500 bytes per call.

The SQLite file runs in WAL mode with an exclusive lock held for the store's lifetime: the store
is the only reader and writer of the file and of its journal (a second opener is refused).

Example:
    >>> with QuotaStore("/tmp/quota-doc.db") as store:               # doctest: +SKIP
    ...     ledger = store.load_ledger(SystemClock())
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from rlm.errors import InternalError
from rlm.private_files import private_database
from rlm.quotas.changes import KINDS, ChangeSet, EntityKey, Snapshot
from rlm.quotas.clock import Clock
from rlm.quotas.journal import ChangeJournal
from rlm.quotas.ledger import QuotaLedger
from rlm.quotas.settings import QuotaSettings

__all__ = ["QuotaStore", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

_log = logging.getLogger(__name__)

_SCHEMA = """CREATE TABLE IF NOT EXISTS quota_entities (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID"""


class QuotaStore:
    """A SQLite file (and its journal) holding one ledger's entities.

    Args:
        path: The database file (created mode 0600 if missing, with its directory, 0700).
        compact_every: Journal records kept before they are folded into entity rows.
        busy_timeout_ms: How long to wait for a lock another process holds before refusing.

    Raises:
        InternalError: The file was written by a newer schema, or another process holds it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        compact_every: int = 10_000,
        busy_timeout_ms: int = 5_000,
    ) -> None:
        self._path = Path(path)
        # Mode 0600 in a 0700 directory: the ledger is every tenant's usage and limits.
        private_database(self._path)
        self._compact_every = max(1, compact_every)
        self._lock = threading.Lock()
        # Autocommit mode: compaction opens its own explicit transaction.
        self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            # The exclusive lock taken here guards the journal too: open it only after.
            self._open_database(busy_timeout_ms)
        except sqlite3.OperationalError as err:
            self._conn.close()
            raise InternalError(
                f"quota store {self._path} cannot be opened (is another process using it?)",
                {"cause": str(err)},
            ) from err
        except BaseException:
            self._conn.close()
            raise
        self._journal = ChangeJournal(self._path.with_name(self._path.name + ".journal"))
        # Latest version of every entity journalled since the last compaction (None: deleted).
        self._pending: dict[EntityKey, dict[str, Any] | None] = {}
        for record in self._journal.read():
            upserts, deletes = orjson.loads(record)
            self._fold(upserts, deletes)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def journal_mode(self) -> str:
        """SQLite's journal mode for the database file (``wal``)."""
        with self._lock:
            return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    def journal_length(self) -> int:
        """Journal records not yet compacted."""
        return self._journal.records

    def load(self) -> Snapshot:
        """Every stored entity, journal applied, as ``{kind: {key: data}}`` (all kinds present)."""
        snap: Snapshot = {kind: {} for kind in KINDS}
        with self._lock:
            rows = self._conn.execute("SELECT kind, key, data FROM quota_entities").fetchall()
            for kind, key, data in rows:
                snap.setdefault(kind, {})[key] = orjson.loads(data)
            for (kind, key), value in self._pending.items():
                if value is None:
                    snap.get(kind, {}).pop(key, None)
                else:
                    # Round-trip so the caller never shares a dict with the pending map.
                    snap.setdefault(kind, {})[key] = orjson.loads(orjson.dumps(value))
        return snap

    def load_ledger(self, clock: Clock, settings: QuotaSettings | None = None) -> QuotaLedger:
        """A ledger with the stored state (an empty one for a new file)."""
        return QuotaLedger.restore(self.load(), clock, settings)

    def refresh(self) -> Snapshot | None:
        """Always ``None``: this process is the file's only writer (the lock says so)."""
        return None

    def commit(self, changes: ChangeSet) -> Snapshot | None:
        """:meth:`apply`; always ``None``: the file has one writer, so no ledger is stale."""
        self.apply(changes)
        return None

    def apply(self, changes: ChangeSet) -> None:
        """Make ``changes`` durable (one journal record); compact now and then.

        Raises:
            OSError: The journal write failed; nothing of ``changes`` is stored.
        """
        if not changes:
            return
        # Tuples encode as JSON arrays: [[[kind, key, data], ...], [[kind, key], ...]].
        record = orjson.dumps([changes.upserts, changes.deletes])
        with self._lock:
            self._journal.append(record)
            self._fold(changes.upserts, changes.deletes)
            if self._journal.records >= self._compact_every:
                try:
                    self._compact()
                except (sqlite3.Error, OSError):
                    # The call is already durable in the journal; failing it now would tell
                    # the caller "not done" about something done. Compaction retries later.
                    _log.warning("quota store compaction failed; will retry", exc_info=True)

    def compact(self) -> None:
        """Fold the journal into entity rows now."""
        with self._lock:
            self._compact()

    def replace(self, snapshot: Snapshot) -> None:
        """Overwrite the whole state with ``snapshot``."""
        rows = [
            (kind, key, orjson.dumps(data))
            for kind, entities in snapshot.items()
            for key, data in entities.items()
        ]
        with self._lock:
            with self._transaction():
                self._conn.execute("DELETE FROM quota_entities")
                self._conn.executemany(
                    "INSERT INTO quota_entities (kind, key, data) VALUES (?, ?, ?)", rows
                )
            self._checkpoint()
            self._journal.reset()
            self._pending.clear()

    def close(self) -> None:
        """Compact the journal and close the files."""
        with self._lock:
            try:
                if self._journal.records:
                    self._compact()
            finally:
                self._journal.close()
                self._conn.close()

    def __enter__(self) -> QuotaStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_database(self, busy_timeout_ms: int) -> None:
        # Set first: switching to WAL needs a lock as well.
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints happen at compaction, where their fsync is wanted, not mid-call.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise InternalError(
                f"quota store {self._path} has schema {version}; this code knows {SCHEMA_VERSION}"
            )
        # A write transaction takes the exclusive lock, held until the connection closes.
        with self._transaction():
            self._conn.execute(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _fold(self, upserts: list[Any], deletes: list[Any]) -> None:
        for kind, key, data in upserts:
            self._pending[(kind, key)] = data
        for kind, key in deletes:
            self._pending[(kind, key)] = None

    def _compact(self) -> None:
        upserts = [
            (kind, key, orjson.dumps(data))
            for (kind, key), data in self._pending.items()
            if data is not None
        ]
        deletes = [(kind, key) for (kind, key), data in self._pending.items() if data is None]
        with self._transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO quota_entities (kind, key, data) VALUES (?, ?, ?)",
                upserts,
            )
            self._conn.executemany("DELETE FROM quota_entities WHERE kind = ? AND key = ?", deletes)
        # The rows must be on disk before the journal that also holds them is emptied.
        self._checkpoint()
        self._journal.reset()
        self._pending.clear()

    def _checkpoint(self) -> None:
        busy, frames, done = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy or frames != done:
            raise sqlite3.OperationalError(f"incomplete WAL checkpoint ({done} of {frames})")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

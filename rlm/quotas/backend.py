"""What the quota ledger service needs of a state store, and how to open the configured one.

Two stores implement :class:`QuotaStateStore`: :class:`~rlm.quotas.store.QuotaStore` (a SQLite
file and its journal, one process) and :class:`~rlm.quotas.pg_store.PostgresQuotaStore`
(PostgreSQL, shared by several instances). The service stores every change with
:meth:`QuotaStateStore.commit` (which may answer "made on a stale ledger: here is the current
one, apply the call again") and runs every read after :meth:`QuotaStateStore.refresh`; for
SQLite the ledger is never stale (the file has one writer), for PostgreSQL this is what keeps
instances in step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from rlm.quotas.changes import ChangeSet, Snapshot
from rlm.quotas.clock import Clock
from rlm.quotas.ledger import QuotaLedger
from rlm.quotas.settings import QuotaSettings

__all__ = ["QuotaStateStore", "open_quota_store"]


class QuotaStateStore(Protocol):
    """A durable home for the ledger's entities."""

    def load(self) -> Snapshot:
        """Every stored entity as ``{kind: {key: data}}``."""
        ...

    def load_ledger(self, clock: Clock, settings: QuotaSettings | None = None) -> QuotaLedger:
        """A ledger with the stored state."""
        ...

    def refresh(self) -> Snapshot | None:
        """The whole state if someone else changed it since this store last looked."""
        ...

    def commit(self, changes: ChangeSet) -> Snapshot | None:
        """Make ``changes`` durable if the ledger they were made on is current, and return
        ``None``; else store nothing and return the current state to make them on again."""
        ...

    def apply(self, changes: ChangeSet) -> None:
        """Make ``changes`` durable."""
        ...

    def compact(self) -> None:
        """Fold whatever the store buffers into its tables now."""
        ...

    def replace(self, snapshot: Snapshot) -> None:
        """Overwrite the whole state."""
        ...

    def journal_length(self) -> int:
        """Records written but not yet folded into tables."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


def open_quota_store(
    path: str | os.PathLike[str] | None,
    database_url: str | None = None,
    *,
    compact_every: int = 10_000,
) -> QuotaStateStore:
    """The PostgreSQL store when ``database_url`` is given, else the SQLite file ``path``.

    Raises:
        InvalidInput: Neither is given.
        InternalError: The store cannot be opened.
    """
    if database_url is not None:
        from rlm.quotas.pg_store import PostgresQuotaStore

        return PostgresQuotaStore(database_url)
    if path is None:
        from rlm.errors import InvalidInput

        raise InvalidInput("a quota store needs a SQLite path or a database URL", field="path")
    from rlm.quotas.store import QuotaStore

    return QuotaStore(Path(path), compact_every=compact_every)

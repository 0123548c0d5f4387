"""Versioned schema migrations for the PostgreSQL state store.

Migrations are the files ``rlm/db/migrations/NNNN_name.sql``, applied in order, each in its own
transaction together with its row in ``schema_migrations``. :func:`migrate` holds a
session-level advisory lock while it works, so two instances starting at once apply each
migration once: the second waits, then finds nothing left to do. A database whose schema is
newer than the code (:func:`check_schema`) is refused rather than written with old assumptions.

Example:
    >>> with psycopg.connect(url, autocommit=True) as conn:             # doctest: +SKIP
    ...     migrate(conn)
    ...     status(conn).current
    1
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rlm.errors import InternalError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ADVISORY_LOCK",
    "Migration",
    "SchemaStatus",
    "check_schema",
    "known_migrations",
    "migrate",
    "status",
]

#: The advisory lock key migrations hold (a fixed 64-bit number: "rlm-migr" in ASCII).
ADVISORY_LOCK = int.from_bytes(b"rlm-migr", "big") & 0x7FFF_FFFF_FFFF_FFFF

_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOKKEEPING = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step.

    Attributes:
        version: Its number (1, 2, ...; no gaps).
        name: What it does, from the file name.
        sql: The statements.
    """

    version: int
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database stands against the code.

    Attributes:
        current: The highest version applied (0 for an empty database).
        latest: The highest version this code knows.
        applied: ``(version, name, applied_at)`` of every applied migration.
        pending: The migrations this code would apply.
    """

    current: int
    latest: int
    applied: tuple[tuple[int, str, datetime], ...]
    pending: tuple[Migration, ...]

    @property
    def newer_than_code(self) -> bool:
        """The database was migrated by a newer release than this one."""
        return self.current > self.latest


def known_migrations(directory: Path = _DIR) -> tuple[Migration, ...]:
    """The migrations shipped with the code, in order.

    Raises:
        InternalError: A file is misnamed or the versions have a gap or a repeat.
    """
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise InternalError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise InternalError(f"migration versions must be 1..N without gaps, found {versions}")
    return tuple(found)


def status(
    conn: psycopg.Connection[tuple[object, ...]],
    migrations: tuple[Migration, ...] | None = None,
) -> SchemaStatus:
    """Read which migrations a database has (creating nothing)."""
    known = known_migrations() if migrations is None else migrations
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    applied: list[tuple[int, str, datetime]] = []
    if exists is not None and exists[0]:
        rows = conn.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
        applied = [(int(str(v)), str(n), a) for v, n, a in rows if isinstance(a, datetime)]
    if conn.info.transaction_status != 0:  # leave the connection as found (idle)
        conn.rollback()
    current = max((v for v, _, _ in applied), default=0)
    return SchemaStatus(
        current=current,
        latest=len(known),
        applied=tuple(applied),
        pending=tuple(m for m in known if m.version > current),
    )


def check_schema(
    conn: psycopg.Connection[tuple[object, ...]],
    migrations: tuple[Migration, ...] | None = None,
) -> SchemaStatus:
    """The database's status, refusing one newer than the code or not yet migrated.

    Raises:
        InternalError: The schema is newer than this code knows, or migrations are pending.
    """
    found = status(conn, migrations)
    if found.newer_than_code:
        raise InternalError(
            f"the database schema is version {found.current}, newer than this release knows "
            f"({found.latest}); upgrade rlm-hypervisor before starting it on this database",
            {"schemaVersion": found.current, "knownVersion": found.latest},
        )
    if found.pending:
        raise InternalError(
            f"the database schema is version {found.current}; run `rlm db migrate` "
            f"(version {found.latest} expected)",
            {"schemaVersion": found.current, "knownVersion": found.latest},
        )
    return found


def migrate(
    conn: psycopg.Connection[tuple[object, ...]],
    migrations: tuple[Migration, ...] | None = None,
) -> list[Migration]:
    """Apply the pending migrations under the advisory lock; returns those this call applied.

    ``conn`` must be in autocommit mode: each migration runs in its own transaction.

    Raises:
        InternalError: The schema is newer than this code, or ``conn`` is not autocommit.
    """
    if not conn.autocommit:
        raise InternalError("migrate needs an autocommit connection")
    known = known_migrations() if migrations is None else migrations
    conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK,))
    try:
        conn.execute(_BOOKKEEPING)
        found = status(conn, known)
        if found.newer_than_code:
            raise InternalError(
                f"the database schema is version {found.current}, newer than this release "
                f"knows ({found.latest}); refusing to migrate it",
                {"schemaVersion": found.current, "knownVersion": found.latest},
            )
        done: list[Migration] = []
        for step in found.pending:
            with conn.transaction():
                conn.execute(step.sql.encode("utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (step.version, step.name),
                )
            done.append(step)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK,))

"""The audit log: append-only, hash-chained security events in SQLite or PostgreSQL.

Each record carries the digest of the record before it, and its own digest covers every field
and that link: HMAC-SHA256 under the log's key (``<state dir>/audit-key``, mode 0600), so
whoever edits the database file without the key cannot forge a record, and cannot re-chain the
records after one they edited or deleted. The newest record's place and digest are kept in a
``head`` row, itself MAC'd, so deleting the newest records is detected too. Triggers refuse
``UPDATE`` and ``DELETE`` on the records (append-only even for a careless program; an attacker
with the file can drop them, which is what the chain is for).

:meth:`AuditLog.verify` walks the whole chain and names the first bad record.

What is *not* detected: an attacker holding both the file and the key, or one who saves the
whole file and later puts it back (a rollback); ship ``rlm security verify``'s head digest off
the machine to catch those.
"""

from __future__ import annotations

import hmac
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any, Final

from rlm.errors import InvalidInput
from rlm.models.security import SecurityEvent
from rlm.security.events import SecurityEventIn

__all__ = [
    "CURSOR_PATTERN",
    "ALL_ORGS",
    "GENESIS",
    "AuditLog",
    "ChainReport",
    "decode_cursor",
    "encode_cursor",
]

GENESIS: Final = "0" * 64
"""The ``prev`` of the first record."""

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    org_id TEXT,
    user_id TEXT,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    prev TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_org ON events (org_id, seq);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    digest TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

_COLUMNS: Final = (
    "seq, event_id, ts, type, category, severity, org_id, user_id, message, details, prev, digest"
)
ALL_ORGS: Final = object()
"""``org_id`` for an operator's query across every org (the CLI; never the HTTP API)."""


def _canonical(values: Sequence[Any]) -> bytes:
    return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False).encode()


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: A cursor: the sequence number of the record a page starts below, in decimal. Plain, so the
#: API document can say exactly which cursors there are (``CURSOR_PATTERN``); any number is a
#: meaningful place in the log, and pages only ever show the caller's own org.
CURSOR_PATTERN = r"^[0-9]{1,18}$"
_CURSOR = re.compile(CURSOR_PATTERN.strip("^$"))


def encode_cursor(seq: int) -> str:
    """The cursor of the page that starts below record ``seq``."""
    return str(seq)


def decode_cursor(cursor: str) -> int:
    """The record a cursor points below. Raises :class:`InvalidInput` if malformed."""
    if _CURSOR.fullmatch(cursor) is None:
        raise InvalidInput("cursor is not one this service gave", field="cursor")
    return int(cursor)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :meth:`AuditLog.verify` found.

    Attributes:
        ok: Every record is intact, in order, and the head matches the newest.
        records: Records checked.
        head_seq: The newest record's place (0: empty).
        head_digest: Its digest (``GENESIS`` when empty).
        first_bad_seq: The first record that is edited, missing or out of place.
        first_bad_event_id: Its event id, when the record is there.
        reason: What is wrong, for a person.
    """

    ok: bool
    records: int
    head_seq: int
    head_digest: str
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """camelCase, for the CLI's JSON."""
        return {
            "ok": self.ok,
            "records": self.records,
            "headSeq": self.head_seq,
            "headDigest": self.head_digest,
            "firstBadSeq": self.first_bad_seq,
            "firstBadEventId": self.first_bad_event_id,
            "reason": self.reason,
        }


class AuditLog:
    """The hash chain over one SQLite connection (or PostgreSQL's, through
    :mod:`rlm.db.compat`). Not thread-safe: one writer per process owns it; writers in several
    processes are serialised by the write transaction :meth:`append` runs in.

    Args:
        conn: An open connection.
        key: The HMAC key of the chain.
        create: Create the schema if missing (not on a read-only connection).
    """

    def __init__(self, conn: sqlite3.Connection, key: bytes, *, create: bool = True) -> None:
        self._conn = conn
        self._key = key
        if create:
            conn.executescript(SCHEMA)
        row = conn.execute("SELECT seq, digest FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        self._seq, self._last = (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, sha256).hexdigest()

    def _digest(self, seq: int, e: SecurityEventIn, ts: str, details: str, prev: str) -> str:
        return self._mac(
            _canonical(
                [
                    seq,
                    e.event_id,
                    ts,
                    e.type,
                    e.category,
                    e.severity,
                    e.org_id,
                    e.user_id,
                    e.message,
                    details,
                    prev,
                ]
            )
        )

    def _head_mac(self, seq: int, digest: str) -> str:
        return self._mac(_canonical(["head", seq, digest]))

    # -- writing ------------------------------------------------------------------------------

    def append(self, events: Iterable[SecurityEventIn]) -> int:
        """Append events in order, inside the caller's write transaction (the caller commits).

        The newest record is read again first, inside that transaction: another writer (an
        instance on the same PostgreSQL, holding the same lock before us) may have appended
        since, and the new records must link to its last one, not to ours.

        Returns:
            How many were appended.
        """
        events = list(events)
        if not events:
            return 0
        self.rollback_to_committed()
        rows = []
        seq, last = self._seq, self._last
        for e in events:
            seq += 1
            ts = _ts(e.timestamp)
            details = json.dumps(e.details, separators=(",", ":"), ensure_ascii=False)
            digest = self._digest(seq, e, ts, details, last)
            rows.append(
                (
                    seq,
                    e.event_id,
                    ts,
                    e.type,
                    e.category,
                    e.severity,
                    e.org_id,
                    e.user_id,
                    e.message,
                    details,
                    last,
                    digest,
                )
            )
            last = digest
        self._conn.executemany(
            f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows
        )
        self._conn.execute(
            "INSERT INTO head (id, seq, digest, mac) VALUES (1, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, digest = excluded.digest, "
            "mac = excluded.mac",
            (seq, last, self._head_mac(seq, last)),
        )
        self._seq, self._last = seq, last
        return len(rows)

    def rollback_to_committed(self) -> None:
        """Re-read the newest record (after a rollback, or before appending)."""
        row = self._conn.execute(
            "SELECT seq, digest FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        self._seq, self._last = (int(row[0]), str(row[1])) if row else (0, GENESIS)

    # -- reading ------------------------------------------------------------------------------

    def page(
        self,
        org_id: str | object | None,
        *,
        limit: int,
        severities: Sequence[str] | None = None,
        since: datetime | None = None,
        before_seq: int | None = None,
        types: Sequence[str] | None = None,
    ) -> tuple[list[SecurityEvent], str | None]:
        """Events newest first, and the cursor of the next (older) page, if any.

        Args:
            org_id: Only this org's events (``None``: events of no org);
                :data:`ALL_ORGS` for every org (operators only).
            limit: Most events in the page.
            severities: Only these severities.
            since: Only events at or after this time.
            before_seq: Only records older than this one (a cursor's).
            types: Only these event types.
        """
        where: list[str] = []
        args: list[Any] = []
        if org_id is None:
            where.append("org_id IS NULL")
        elif org_id is not ALL_ORGS:
            where.append("org_id = ?")
            args.append(org_id)
        if severities:
            where.append(f"severity IN ({','.join('?' * len(severities))})")
            args.extend(severities)
        if types:
            where.append(f"type IN ({','.join('?' * len(types))})")
            args.extend(types)
        if since is not None:
            where.append("ts >= ?")
            args.append(_ts(since))
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self._conn.execute(sql, [*args, limit + 1]).fetchall()
        events = [_event(r) for r in rows[:limit]]
        more = len(rows) > limit
        return events, (encode_cursor(int(rows[limit - 1][0])) if more and limit > 0 else None)

    def verify(self) -> ChainReport:
        """Walk the chain from the first record; name the first bad one."""
        expected, prev, count = 1, GENESIS, 0
        cursor = self._conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq")
        while True:
            batch = cursor.fetchmany(1000)
            if not batch:
                break
            for r in batch:
                seq = int(r[0])
                bad = self._check(r, expected, prev)
                if bad is not None:
                    return ChainReport(False, count, expected - 1, prev, *bad)
                expected, prev, count = seq + 1, str(r[11]), count + 1
        head = self._conn.execute("SELECT seq, digest, mac FROM head WHERE id = 1").fetchone()
        if head is None:
            if count:
                return ChainReport(False, count, count, prev, None, None, "the head is missing")
            return ChainReport(True, 0, 0, GENESIS)
        head_seq, head_digest, head_mac = int(head[0]), str(head[1]), str(head[2])
        if not hmac.compare_digest(head_mac, self._head_mac(head_seq, head_digest)):
            return ChainReport(False, count, count, prev, None, None, "the head was altered")
        if head_seq != count or head_digest != prev:
            return ChainReport(
                False,
                count,
                count,
                prev,
                count + 1,
                None,
                f"records {count + 1}..{head_seq} are missing (the newest were deleted)",
            )
        return ChainReport(True, count, count, prev)

    def _check(
        self, r: Sequence[Any], expected: int, prev: str
    ) -> tuple[int, str | None, str] | None:
        seq, event_id = int(r[0]), str(r[1])
        if seq != expected:
            return expected, None, f"record {expected} is missing (deleted)"
        if r[10] != prev:
            return seq, event_id, f"record {seq} does not link to record {seq - 1}"
        recomputed = self._mac(_canonical([*r[:10], r[10]]))
        # r[:10] are the fields as stored (seq first), in the order they were digested.
        if not hmac.compare_digest(recomputed, str(r[11])):
            return seq, event_id, f"record {seq} was edited"
        return None


def _event(r: Sequence[Any]) -> SecurityEvent:
    return SecurityEvent(
        seq=int(r[0]),
        event_id=str(r[1]),
        timestamp=datetime.strptime(str(r[2]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        type=str(r[3]),
        category=str(r[4]),
        severity=r[5],
        org_id=r[6],
        user_id=r[7],
        message=str(r[8]),
        details=json.loads(r[9]),
        digest=str(r[11]),
    )

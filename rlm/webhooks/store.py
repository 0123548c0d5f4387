"""Webhooks and their durable outbox in SQLite (WAL), in two files.

``state.db`` (beside the task records; written by the engine):

- ``webhooks``: registrations (URL, events, owner, scope, signing secrets, status).
- ``webhook_messages``: the outbox — one row per event (its id, type, exact body, and the ids of
  the webhooks it is for), written in the transaction of its cause (:func:`enqueue`, called by
  :class:`~rlm.webhooks.outbox.WebhookOutbox` inside the task's final transaction). Its ``seq``
  only grows, so the worker knows what it has fanned out.

``webhooks.db`` (the delivery worker's alone; it attaches ``state.db`` and only reads it on its
hot path, so the engine's task writes never wait for the worker's):

- ``webhook_deliveries``: one row per event and webhook — status (``pending`` / ``succeeded`` /
  ``failed``), attempts made, when the next one is due, until when it is retried. Its id is
  derived from the webhook and the event, so an event reaches a webhook once.
- ``webhook_attempts``: one row per attempt (status, latency, error).
- ``webhook_health``: each webhook's run of failures.
- ``webhook_meta``: the ``seq`` of the last message fanned out.

Each round of the worker is one transaction on ``webhooks.db`` (:meth:`WebhookStore.step`):
record finished attempts, fan new messages out into deliveries, lease the due ones
(``leased = 1``, the next attempt time pushed to the lease's end). A worker that dies mid-send
leaves them pending; the next one (:meth:`WebhookStore.release_leases`) sends them again. Writes
to ``state.db`` (registrations, disabling a webhook, pings, pruning) are rare and short.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rlm.models.webhooks import Delivery, DeliveryAttempt, Webhook
from rlm.tasks.store import open_sqlite
from rlm.webhooks.lifecycle import AttemptResult, Decision, Health, disable_reason
from rlm.webhooks.payloads import TEST_EVENT
from rlm.webhooks.settings import WebhookSettings
from rlm.webhooks.signing import SigningSecret

__all__ = [
    "Job",
    "Outcome",
    "Step",
    "WebhookRow",
    "WebhookStore",
    "delivery_id",
    "enqueue",
    "prepare",
    "subscribers",
]

#: The tables in the state file; ``{db}`` prefixes their names when it is attached.
_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS {db}webhooks (
    webhook_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    org_id TEXT,
    scope TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    secrets TEXT NOT NULL,
    status TEXT NOT NULL,
    disabled_reason TEXT,
    disabled_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS {db}webhooks_owner ON webhooks (owner_id);
CREATE INDEX IF NOT EXISTS {db}webhooks_org ON webhooks (org_id);
CREATE TABLE IF NOT EXISTS {db}webhook_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    owner_id TEXT,
    org_id TEXT,
    targets TEXT,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
);
"""

#: The worker's own tables (``webhooks.db``).
_WORKER_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_attempt_at REAL,
    expires_at REAL NOT NULL,
    last_attempt_at REAL,
    last_status_code INTEGER,
    last_error TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook
    ON webhook_deliveries (webhook_id, created_at);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    status_code INTEGER,
    latency_ms REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_health (
    webhook_id TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    failing_since REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

#: Attempts shown per delivery (the newest).
_ATTEMPT_LOG = 50

#: Messages fanned out per round.
_FAN_OUT = 500


def prepare(conn: sqlite3.Connection, db: str = "") -> None:
    """Create the state file's webhook tables if they are missing (idempotent).

    Args:
        conn: A connection to the state file (``db`` empty), or one it is attached to as ``db``.
        db: The schema name it is attached under.
    """
    conn.executescript(_STATE_SCHEMA.format(db=f"{db}." if db else ""))


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _error_text(error: str | None) -> str | None:
    return None if error is None else error[:500]


@dataclass(frozen=True, slots=True)
class WebhookRow:
    """One registration as stored, with its health."""

    webhook_id: str
    owner_id: str
    org_id: str | None
    scope: str
    url: str
    events: tuple[str, ...]
    description: str | None
    secrets: tuple[SigningSecret, ...]
    status: str
    disabled_reason: str | None
    disabled_at: float | None
    created_at: float
    updated_at: float
    consecutive_failures: int = 0
    failing_since: float | None = None

    def evolve(self, **changes: Any) -> WebhookRow:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_public(self) -> Webhook:
        """The API's view (no secrets)."""
        created = _dt(self.created_at)
        updated = _dt(self.updated_at)
        assert created is not None and updated is not None
        return Webhook(
            webhook_id=self.webhook_id,
            url=self.url,
            events=list(self.events),  # type: ignore[arg-type]
            description=self.description,
            scope=self.scope,  # type: ignore[arg-type]
            owner_id=self.owner_id,
            org_id=self.org_id,
            status=self.status,  # type: ignore[arg-type]
            disabled_reason=self.disabled_reason,
            disabled_at=_dt(self.disabled_at),
            consecutive_failures=self.consecutive_failures,
            failing_since=_dt(self.failing_since),
            created_at=created,
            updated_at=updated,
        )


_COLUMNS = (
    "webhook_id, owner_id, org_id, scope, url, events, description, secrets, status,"
    " disabled_reason, disabled_at, created_at, updated_at"
)
_SELECT_WEBHOOK = (
    "SELECT w.webhook_id, w.owner_id, w.org_id, w.scope, w.url, w.events, w.description,"
    " w.secrets, w.status, w.disabled_reason, w.disabled_at, w.created_at, w.updated_at,"
    " COALESCE(h.consecutive_failures, 0), h.failing_since"
    " FROM webhooks w LEFT JOIN webhook_health h ON h.webhook_id = w.webhook_id"
)


def _row_to_webhook(row: Sequence[Any]) -> WebhookRow:
    return WebhookRow(
        webhook_id=row[0],
        owner_id=row[1],
        org_id=row[2],
        scope=row[3],
        url=row[4],
        events=tuple(json.loads(row[5])),
        description=row[6],
        secrets=tuple(SigningSecret(s, e) for s, e in json.loads(row[7])),
        status=row[8],
        disabled_reason=row[9],
        disabled_at=row[10],
        created_at=float(row[11]),
        updated_at=float(row[12]),
        consecutive_failures=int(row[13]),
        failing_since=row[14],
    )


def _webhook_values(w: WebhookRow) -> tuple[Any, ...]:
    return (
        w.webhook_id,
        w.owner_id,
        w.org_id,
        w.scope,
        w.url,
        json.dumps(list(w.events)),
        w.description,
        json.dumps([[s.secret, s.expires_at] for s in w.secrets]),
        w.status,
        w.disabled_reason,
        w.disabled_at,
        w.created_at,
        w.updated_at,
    )


def subscribers(
    conn: sqlite3.Connection, event: str, owner_id: str | None, org_id: str | None
) -> list[str]:
    """The active webhooks that get ``event`` of ``owner_id`` (in ``org_id``).

    A ``user`` webhook gets its owner's events; an ``org`` webhook every event of its org.
    """
    rows = conn.execute(SUBSCRIBERS_SQL, (owner_id, org_id)).fetchall()
    return subscribed(rows, event)


#: The active webhooks of an owner (``?`` 1) or an org (``?`` 2): their ids and events.
SUBSCRIBERS_SQL = (
    "SELECT webhook_id, events FROM webhooks WHERE status = 'active' AND"
    " ((scope = 'user' AND owner_id = ?) OR (scope = 'org' AND org_id = ?))"
)


def subscribed(rows: Sequence[Sequence[Any]], event: str) -> list[str]:
    """The ids among :data:`SUBSCRIBERS_SQL`'s ``rows`` whose webhooks get ``event``."""
    return [str(webhook_id) for webhook_id, events in rows if event in json.loads(events)]


def delivery_id(webhook_id: str, event_id: str) -> str:
    """The id of the delivery of ``event_id`` to ``webhook_id`` (the same every time)."""
    digest = hashlib.sha256(f"{webhook_id}\x00{event_id}".encode()).hexdigest()
    return f"dlv_{digest[:32]}"


def enqueue(
    conn: sqlite3.Connection,
    *,
    event_id: str,
    event: str,
    body: bytes,
    owner_id: str | None,
    org_id: str | None,
    webhook_ids: Sequence[str],
    now: float,
    keep: bool = False,
) -> int:
    """Write one event for ``webhook_ids`` into the outbox, in the caller's transaction.

    The delivery worker fans it out into one delivery per webhook. Writing the same event
    again (same ``event_id``) adds nothing: each webhook gets an event once.

    Args:
        conn: A connection inside a write transaction on the state file.
        event_id: The event's id (``webhook-id``).
        event: Its type.
        body: The exact bytes to send.
        owner_id: Whose event it is.
        org_id: The org it belongs to.
        webhook_ids: The webhooks to deliver it to.
        now: Epoch seconds.
        keep: Store the event even without a webhook to deliver it to.

    Returns:
        Deliveries queued (0 when the event was there already).
    """
    if not webhook_ids and not keep:
        return 0
    targets = json.dumps(list(webhook_ids)) if webhook_ids else None
    cursor = conn.execute(ENQUEUE_SQL, (event_id, event, owner_id, org_id, targets, body, now))
    return len(webhook_ids) if cursor.rowcount > 0 else 0


#: Writes one outbox event unless its id is there (see :func:`enqueue`).
ENQUEUE_SQL = (
    "INSERT OR IGNORE INTO webhook_messages"
    " (event_id, event, owner_id, org_id, targets, body, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed delivery: everything needed to send one attempt.

    Attributes:
        delivery_id: The delivery.
        webhook_id: Its webhook.
        event_id: The event's id (``webhook-id``).
        event: The event's type.
        body: The exact bytes to send.
        url: Where to send them.
        secrets: The webhook's secrets (those that sign are chosen at sending time).
        attempts: Attempts made before this one.
        expires_at: No attempt is scheduled after this.
        failures: The webhook's failed attempts in a row when this was claimed.
    """

    delivery_id: str
    webhook_id: str
    event_id: str
    event: str
    body: bytes
    url: str
    secrets: tuple[SigningSecret, ...]
    attempts: int
    expires_at: float
    failures: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt and what follows it, to record."""

    job: Job
    result: AttemptResult
    decision: Decision
    at: float


@dataclass(frozen=True, slots=True)
class Step:
    """What one round of the delivery worker did and found.

    Attributes:
        jobs: Deliveries leased to send now.
        next_due: When the next pending delivery is due (or a lease ends), if any.
        disabled: ``(webhook_id, reason)`` of each webhook the recorded attempts disabled.
    """

    jobs: list[Job]
    next_due: float | None
    disabled: list[tuple[str, str]]


class WebhookStore:
    """The webhook tables: the state file's (attached) and the worker's own file.

    Args:
        path: The SQLite state file (``state.db``); the worker's file is ``webhooks.db`` beside.
        settings: Retry horizon and disabling rules.
        clock: Epoch seconds (injected by tests).
        database_url: Keep both files' tables in this PostgreSQL database instead.
    """

    def __init__(
        self,
        path: Path,
        settings: WebhookSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        database_url: str | None = None,
    ) -> None:
        self._settings = settings or WebhookSettings()
        self._clock = clock
        self._lock = threading.Lock()
        # On PostgreSQL both files' tables are in one database; a transaction locks both, as
        # an IMMEDIATE one locks both SQLite files.
        self._conn = open_sqlite(
            path.with_name("webhooks.db"), database_url, also_locks=(path.name,)
        )
        with self._lock:
            self._conn.executescript(_WORKER_SCHEMA)
            self._conn.execute("ATTACH DATABASE ? AS s", (str(path),))
            self._conn.execute("PRAGMA s.journal_mode=WAL")
            self._conn.execute("PRAGMA s.synchronous=NORMAL")
            prepare(self._conn, "s")

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """A transaction. ``IMMEDIATE`` locks both files from the start (for writes to the
        state file); ``DEFERRED`` (the worker's rounds) locks only the file it writes."""
        with self._lock:
            self._conn.execute(f"BEGIN {mode}")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(query, args).fetchall()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    # -- registrations ---------------------------------------------------------------------

    def insert_webhook(self, row: WebhookRow) -> None:
        """Add a registration."""
        with self._tx() as c:
            c.execute(
                f"INSERT INTO webhooks ({_COLUMNS}) VALUES ({','.join('?' * 13)})",
                _webhook_values(row),
            )

    def put_webhook(self, row: WebhookRow) -> None:
        """Replace a registration (it must exist) and its health."""
        with self._tx() as c:
            c.execute(
                f"INSERT OR REPLACE INTO webhooks ({_COLUMNS}) VALUES ({','.join('?' * 13)})",
                _webhook_values(row),
            )
            if row.consecutive_failures == 0 and row.failing_since is None:
                c.execute("DELETE FROM webhook_health WHERE webhook_id = ?", (row.webhook_id,))
            if row.status == "disabled":
                self._fail_pending(c, row.webhook_id, f"webhook disabled: {row.disabled_reason}")

    def webhook(self, webhook_id: str) -> WebhookRow | None:
        """A registration by id."""
        rows = self._read(f"{_SELECT_WEBHOOK} WHERE w.webhook_id = ?", (webhook_id,))
        return _row_to_webhook(rows[0]) if rows else None

    def webhooks(self, owner_id: str, org_id: str | None = None) -> list[WebhookRow]:
        """``owner_id``'s registrations, and every one in ``org_id`` when it is given."""
        rows = self._read(
            f"{_SELECT_WEBHOOK} WHERE w.owner_id = ? OR w.org_id = ? ORDER BY w.created_at",
            (owner_id, org_id),
        )
        return [_row_to_webhook(r) for r in rows]

    def count_webhooks(self, scope: str, owner: str) -> int:
        """How many ``user`` webhooks ``owner`` has, or ``org`` webhooks org ``owner`` has."""
        column = "owner_id" if scope == "user" else "org_id"
        (count,) = self._read(
            f"SELECT COUNT(*) FROM webhooks WHERE scope = ? AND {column} = ?", (scope, owner)
        )[0]
        return int(count)

    def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a registration with its deliveries, their attempts and its health."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM webhook_attempts WHERE delivery_id IN"
                " (SELECT delivery_id FROM webhook_deliveries WHERE webhook_id = ?)",
                (webhook_id,),
            )
            c.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
            c.execute("DELETE FROM webhook_health WHERE webhook_id = ?", (webhook_id,))
            gone = c.execute("DELETE FROM webhooks WHERE webhook_id = ?", (webhook_id,))
            return gone.rowcount > 0

    def disable(self, webhook_id: str, reason: str) -> None:
        """Disable a webhook (if it is active) and end its pending deliveries."""
        now = self._clock()
        with self._tx() as c:
            changed = c.execute(
                "UPDATE webhooks SET status = 'disabled', disabled_reason = ?, disabled_at = ?,"
                " updated_at = ? WHERE webhook_id = ? AND status = 'active'",
                (reason, now, now, webhook_id),
            ).rowcount
            if changed:
                self._fail_pending(c, webhook_id, f"webhook disabled: {reason}")

    # -- the outbox ------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        event_id: str,
        event: str,
        body: bytes,
        owner_id: str | None,
        org_id: str | None,
        keep: bool = False,
        only: str | None = None,
    ) -> int:
        """Write an event for its subscribers in one transaction; with ``only``, for that
        webhook alone, its delivery created at once (a test ping).

        Returns:
            Deliveries queued.
        """
        now = self._clock()
        with self._tx() as c:
            targets = [only] if only is not None else subscribers(c, event, owner_id, org_id)
            queued = enqueue(
                c,
                event_id=event_id,
                event=event,
                body=body,
                owner_id=owner_id,
                org_id=org_id,
                webhook_ids=[] if only is not None else targets,
                now=now,
                keep=keep or only is not None,
            )
            if only is None:
                return queued
            return self._add_delivery(c, only, event_id, event, now, now)

    def release_leases(self) -> int:
        """Make every claimed delivery due now (the worker that claimed them is gone).

        Returns:
            How many were released.
        """
        with self._tx("DEFERRED") as c:
            return c.execute(
                "UPDATE webhook_deliveries SET leased = 0, next_attempt_at = ?"
                " WHERE status = 'pending' AND leased = 1",
                (self._clock(),),
            ).rowcount

    def step(
        self,
        finished: Sequence[Outcome],
        limit: int,
        lease_s: float,
        room: dict[str, int],
        default_room: int,
    ) -> Step:
        """One round of the delivery worker, in one transaction on the worker's file: record
        ``finished``, fan new messages out, lease up to ``limit`` due deliveries (see
        :meth:`claim`). Webhooks that must be disabled are disabled after it."""
        with self._tx("DEFERRED") as c:
            disabled = self._record(c, finished)
            now = self._clock()
            self._fan_out(c, now)
            jobs = self._claim(c, now, limit, lease_s, room, default_room)
            next_due = self._next_due(c)
        for webhook_id, reason in disabled:
            self.disable(webhook_id, reason)
        return Step(jobs, next_due, disabled)

    def claim(
        self, limit: int, lease_s: float, room: dict[str, int], default_room: int
    ) -> list[Job]:
        """Fan new messages out, then lease up to ``limit`` due deliveries, at most
        ``room[w]`` (else ``default_room``) of webhook ``w``.

        A webhook with no room is not even read, so a backlog behind a receiver that hangs
        never hides the deliveries of others.
        """
        return self.step([], limit, lease_s, room, default_room).jobs

    def record(self, outcomes: Sequence[Outcome]) -> list[tuple[str, str]]:
        """Record attempts and their consequences.

        Returns:
            ``(webhook_id, reason)`` of each webhook this disabled.
        """
        with self._tx("DEFERRED") as c:
            disabled = self._record(c, outcomes)
        for webhook_id, reason in disabled:
            self.disable(webhook_id, reason)
        return disabled

    def next_due(self) -> float | None:
        """When the next delivery is due (or a lease ends), if any: now, while messages wait
        to be fanned out."""
        with self._lock:
            return self._next_due(self._conn)

    def _fanned(self, c: sqlite3.Connection) -> int:
        row = c.execute("SELECT value FROM webhook_meta WHERE key = 'fanned_seq'").fetchone()
        return 0 if row is None else int(row[0])

    def _next_due(self, c: sqlite3.Connection) -> float | None:
        row = c.execute(
            "SELECT EXISTS (SELECT 1 FROM webhook_messages WHERE seq > ?),"
            " (SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending')",
            (self._fanned(c),),
        ).fetchone()
        if row[0]:
            return self._clock()
        return None if row[1] is None else float(row[1])

    def _add_delivery(
        self,
        c: sqlite3.Connection,
        webhook_id: str,
        event_id: str,
        event: str,
        created_at: float,
        now: float,
    ) -> int:
        # Only for a webhook that still exists (and is active, but for a test ping).
        return c.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, webhook_id, event_id,"
            " status, created_at, next_attempt_at, expires_at)"
            " SELECT ?, ?, ?, 'pending', ?, ?, ? FROM webhooks"
            " WHERE webhook_id = ? AND (status = 'active' OR ?)",
            (
                delivery_id(webhook_id, event_id),
                webhook_id,
                event_id,
                now,
                min(created_at, now),  # due since the event: older events go first
                created_at + self._settings.retry_horizon_s,
                webhook_id,
                event == TEST_EVENT,
            ),
        ).rowcount

    def _fan_out(self, c: sqlite3.Connection, now: float) -> int:
        """Turn new messages into one delivery per target webhook; returns deliveries created."""
        rows = c.execute(
            "SELECT seq, event_id, event, targets, created_at FROM webhook_messages"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._fanned(c), _FAN_OUT),
        ).fetchall()
        if not rows:
            return 0
        created = 0
        for _, event_id, event, targets, created_at in rows:
            for webhook_id in json.loads(targets) if targets else ():
                created += self._add_delivery(c, webhook_id, event_id, event, created_at, now)
        c.execute(
            "INSERT OR REPLACE INTO webhook_meta (key, value) VALUES ('fanned_seq', ?)",
            (rows[-1][0],),
        )
        return created

    def _claim(
        self,
        c: sqlite3.Connection,
        now: float,
        limit: int,
        lease_s: float,
        room: dict[str, int],
        default_room: int,
    ) -> list[Job]:
        if limit <= 0:
            return []
        full = [w for w, n in room.items() if n <= 0]
        skip = f" AND d.webhook_id NOT IN ({','.join('?' * len(full))})" if full else ""
        rows = c.execute(
            "SELECT d.delivery_id, d.webhook_id, d.event_id, m.event, m.body, w.url,"
            " w.secrets, d.attempts, d.expires_at, w.status,"
            " COALESCE(h.consecutive_failures, 0) FROM webhook_deliveries d"
            " JOIN webhook_messages m ON m.event_id = d.event_id"
            " JOIN webhooks w ON w.webhook_id = d.webhook_id"
            " LEFT JOIN webhook_health h ON h.webhook_id = d.webhook_id"
            f" WHERE d.status = 'pending' AND d.next_attempt_at <= ?{skip}"
            " ORDER BY d.next_attempt_at LIMIT ?",
            (now, *full, limit),
        ).fetchall()
        jobs: list[Job] = []
        taken: dict[str, int] = {}
        for row in rows:
            webhook_id, event, status = row[1], row[3], row[9]
            if status != "active" and event != TEST_EVENT:
                continue  # disabled: only its test pings go out
            if taken.get(webhook_id, 0) >= room.get(webhook_id, default_room):
                continue
            taken[webhook_id] = taken.get(webhook_id, 0) + 1
            secrets = tuple(SigningSecret(s, e) for s, e in json.loads(row[6]))
            jobs.append(
                Job(row[0], webhook_id, row[2], event, bytes(row[4]), row[5], secrets,
                    int(row[7]), float(row[8]), int(row[10]))
            )  # fmt: skip
        c.executemany(
            "UPDATE webhook_deliveries SET leased = 1, next_attempt_at = ? WHERE delivery_id = ?",
            [(now + lease_s, j.delivery_id) for j in jobs],
        )
        return jobs

    def _record(self, c: sqlite3.Connection, outcomes: Sequence[Outcome]) -> list[tuple[str, str]]:
        disabled: list[tuple[str, str]] = []
        for o in outcomes:
            d, r, j = o.decision, o.result, o.job
            done = c.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1,"
                " leased = 0, next_attempt_at = ?, last_attempt_at = ?,"
                " last_status_code = ?, last_error = ?"
                " WHERE delivery_id = ? AND status = 'pending'",
                (
                    d.status,
                    d.next_attempt_at,
                    o.at,
                    r.status_code,
                    _error_text(d.error or r.error),
                    j.delivery_id,
                ),
            ).rowcount
            if not done:
                continue  # deleted, or ended by a disable meanwhile
            c.execute(
                "INSERT OR REPLACE INTO webhook_attempts"
                " (delivery_id, attempt, at, status_code, latency_ms, error)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (j.delivery_id, j.attempts + 1, o.at, r.status_code, r.latency_ms,
                 _error_text(r.error)),
            )  # fmt: skip
            if r.ok and j.failures == 0 and d.disable is None:
                continue  # a healthy webhook stays healthy: nothing to write
            reason = self._health(c, j.webhook_id, r, d, o.at)
            if reason is not None and all(w != j.webhook_id for w, _ in disabled):
                disabled.append((j.webhook_id, reason))
        return disabled

    def _health(
        self,
        c: sqlite3.Connection,
        webhook_id: str,
        result: AttemptResult,
        decision: Decision,
        now: float,
    ) -> str | None:
        """Update the webhook's run of failures; why it is to be disabled, if it is."""
        row = c.execute(
            "SELECT w.status, COALESCE(h.consecutive_failures, 0), h.failing_since"
            " FROM webhooks w LEFT JOIN webhook_health h ON h.webhook_id = w.webhook_id"
            " WHERE w.webhook_id = ?",
            (webhook_id,),
        ).fetchone()
        if row is None:
            return None
        health = Health(int(row[1]), row[2]).after(result.ok, now)
        if health == Health():
            c.execute("DELETE FROM webhook_health WHERE webhook_id = ?", (webhook_id,))
        else:
            c.execute(
                "INSERT OR REPLACE INTO webhook_health"
                " (webhook_id, consecutive_failures, failing_since) VALUES (?, ?, ?)",
                (webhook_id, health.consecutive_failures, health.failing_since),
            )
        if row[0] != "active":
            return None
        return decision.disable or disable_reason(health, now, self._settings)

    @staticmethod
    def _fail_pending(c: sqlite3.Connection, webhook_id: str, why: str) -> None:
        c.execute(
            "UPDATE webhook_deliveries SET status = 'failed', leased = 0, next_attempt_at = NULL,"
            " last_error = ? WHERE webhook_id = ? AND status = 'pending'",
            (_error_text(why), webhook_id),
        )

    def retry(self, webhook_id: str, delivery: str) -> bool:
        """Queue a delivery again, due now, with a new retry horizon (a no-op while it is
        being sent).

        Returns:
            Whether the delivery exists.
        """
        now = self._clock()
        with self._tx("DEFERRED") as c:
            row = c.execute(
                "SELECT leased FROM webhook_deliveries WHERE delivery_id = ? AND webhook_id = ?",
                (delivery, webhook_id),
            ).fetchone()
            if row is None:
                return False
            if not row[0]:
                c.execute(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?,"
                    " expires_at = ? WHERE delivery_id = ?",
                    (now, now + self._settings.retry_horizon_s, delivery),
                )
        return True

    def prune(self, older_than_s: float) -> int:
        """Forget finished deliveries (and their attempts), and events fanned out, older than
        ``older_than_s`` that no pending delivery needs.

        Returns:
            Deliveries forgotten.
        """
        cutoff = self._clock() - older_than_s
        finished = (
            "SELECT delivery_id FROM webhook_deliveries WHERE status != 'pending'"
            " AND COALESCE(last_attempt_at, created_at) < ?"
        )
        with self._tx() as c:
            c.execute(f"DELETE FROM webhook_attempts WHERE delivery_id IN ({finished})", (cutoff,))
            gone = c.execute(
                f"DELETE FROM webhook_deliveries WHERE delivery_id IN ({finished})", (cutoff,)
            ).rowcount
            # NOT IN (subquery): SQLite reads the pending deliveries once into a temporary index.
            c.execute(
                "DELETE FROM webhook_messages WHERE created_at < ? AND seq <= ?"
                " AND event_id NOT IN"
                " (SELECT event_id FROM webhook_deliveries WHERE status = 'pending')",
                (cutoff, self._fanned(c)),
            )
        return gone

    # -- reads -----------------------------------------------------------------------------

    def deliveries(
        self,
        webhook_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        delivery_id: str | None = None,
    ) -> list[Delivery]:
        """A webhook's deliveries, newest first, each with its newest attempts."""
        where, args = "d.webhook_id = ?", [webhook_id]
        if status is not None:
            where += " AND d.status = ?"
            args.append(status)
        if delivery_id is not None:
            where += " AND d.delivery_id = ?"
            args.append(delivery_id)
        rows = self._read(
            "SELECT d.delivery_id, d.webhook_id, d.event_id, m.event, d.status, d.attempts,"
            " d.created_at, d.expires_at, d.next_attempt_at, d.last_attempt_at,"
            " d.last_status_code, d.last_error FROM webhook_deliveries d"
            " JOIN webhook_messages m ON m.event_id = d.event_id"
            f" WHERE {where} ORDER BY d.created_at DESC, d.delivery_id LIMIT ?",
            (*args, limit),
        )
        ids = [r[0] for r in rows]
        log: dict[str, list[DeliveryAttempt]] = {i: [] for i in ids}
        if ids:
            attempts = self._read(
                "SELECT delivery_id, attempt, at, status_code, latency_ms, error"
                f" FROM webhook_attempts WHERE delivery_id IN ({','.join('?' * len(ids))})"
                " ORDER BY delivery_id, attempt",
                ids,
            )
            for a in attempts:
                at = _dt(a[2])
                assert at is not None
                log[a[0]].append(
                    DeliveryAttempt(
                        attempt=a[1], at=at, status_code=a[3], latency_ms=a[4], error=a[5]
                    )
                )
        out = []
        for r in rows:
            created, expires = _dt(r[6]), _dt(r[7])
            assert created is not None and expires is not None
            out.append(
                Delivery(
                    delivery_id=r[0],
                    webhook_id=r[1],
                    event_id=r[2],
                    event=r[3],
                    status=r[4],
                    attempts=r[5],
                    created_at=created,
                    expires_at=expires,
                    next_attempt_at=_dt(r[8]) if r[4] == "pending" else None,
                    last_attempt_at=_dt(r[9]),
                    last_status_code=r[10],
                    last_error=r[11],
                    attempt_log=log[r[0]][-_ATTEMPT_LOG:],
                )
            )
        return out

    def events(self, event: str, limit: int = 50) -> list[tuple[str, bytes, int, int]]:
        """The newest stored events of a type: ``(event_id, body, pending, delivered)``.

        For the command line (``rlm quota events``): it reads the deliveries table whole.
        """
        rows = self._read(
            "SELECT event_id, body FROM webhook_messages WHERE event = ? ORDER BY seq DESC LIMIT ?",
            (event, limit),
        )
        counts: dict[tuple[str, str], int] = {}
        if rows:
            marks = ",".join("?" * len(rows))
            for event_id, status, n in self._read(
                "SELECT event_id, status, COUNT(*) FROM webhook_deliveries"
                f" WHERE event_id IN ({marks}) GROUP BY event_id, status",
                [r[0] for r in rows],
            ):
                counts[(event_id, status)] = int(n)
        return [
            (e, bytes(b), counts.get((e, "pending"), 0), counts.get((e, "succeeded"), 0))
            for e, b in rows
        ]

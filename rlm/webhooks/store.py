"""Webhooks and their durable outbox in the state file (SQLite, WAL), beside the task records.

Four tables:

- ``webhooks``: registrations (URL, events, owner, scope, signing secrets, health).
- ``webhook_messages``: one row per event to send (its id, type and exact body).
- ``webhook_deliveries``: one row per event and subscribed webhook — the outbox proper: status
  (``pending`` / ``succeeded`` / ``failed``), attempts made, when the next one is due, and until
  when it is retried. ``UNIQUE(webhook_id, event_id)``: an event reaches a webhook once.
- ``webhook_attempts``: one row per attempt (status, latency, error).

Messages and deliveries are written by :func:`enqueue` on the connection of the caller's
transaction, so a ``task.completed`` event is committed with the task's final record or not at
all (see :class:`~rlm.webhooks.outbox.WebhookOutbox`). The delivery worker claims due
deliveries with a lease (``leased = 1``, the next attempt time pushed to the lease's end): a
worker that dies mid-send leaves them pending, and the next one (:meth:`release_leases`) sends
them again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
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

__all__ = ["Job", "Outcome", "WebhookRow", "WebhookStore", "enqueue", "prepare", "subscribers"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
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
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    failing_since REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_owner ON webhooks (owner_id);
CREATE INDEX IF NOT EXISTS webhooks_org ON webhooks (org_id);
CREATE TABLE IF NOT EXISTS webhook_messages (
    event_id TEXT PRIMARY KEY,
    event TEXT NOT NULL,
    owner_id TEXT,
    org_id TEXT,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_messages_event ON webhook_messages (event, created_at);
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
    last_error TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook
    ON webhook_deliveries (webhook_id, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    status_code INTEGER,
    latency_ms REAL NOT NULL,
    error TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
"""

#: Attempts shown per delivery (the newest).
_ATTEMPT_LOG = 50


def prepare(conn: sqlite3.Connection) -> None:
    """Create the webhook tables if they are missing (idempotent)."""
    conn.executescript(_SCHEMA)


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _error_text(error: str | None) -> str | None:
    return None if error is None else error[:500]


@dataclass(frozen=True, slots=True)
class WebhookRow:
    """One registration as stored."""

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
    consecutive_failures: int
    failing_since: float | None
    created_at: float
    updated_at: float

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


_WEBHOOK_COLUMNS = (
    "webhook_id, owner_id, org_id, scope, url, events, description, secrets, status,"
    " disabled_reason, disabled_at, consecutive_failures, failing_since, created_at, updated_at"
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
        consecutive_failures=int(row[11]),
        failing_since=row[12],
        created_at=float(row[13]),
        updated_at=float(row[14]),
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
        w.consecutive_failures,
        w.failing_since,
        w.created_at,
        w.updated_at,
    )


def subscribers(
    conn: sqlite3.Connection, event: str, owner_id: str | None, org_id: str | None
) -> list[str]:
    """The active webhooks that get ``event`` of ``owner_id`` (in ``org_id``).

    A ``user`` webhook gets its owner's events; an ``org`` webhook every event of its org.
    """
    rows = conn.execute(
        "SELECT webhook_id, events FROM webhooks WHERE status = 'active' AND"
        " ((scope = 'user' AND owner_id = ?) OR (scope = 'org' AND org_id = ?))",
        (owner_id, org_id),
    ).fetchall()
    return [webhook_id for webhook_id, events in rows if event in json.loads(events)]


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
    horizon_s: float,
    keep: bool = False,
) -> int:
    """Write one event and a delivery per webhook, in the caller's transaction.

    Writing the same event again (same ``event_id``) adds nothing: each webhook gets an event
    once.

    Args:
        conn: A connection inside a write transaction.
        event_id: The event's id (``webhook-id``).
        event: Its type.
        body: The exact bytes to send.
        owner_id: Whose event it is.
        org_id: The org it belongs to.
        webhook_ids: The webhooks to deliver it to.
        now: Epoch seconds.
        horizon_s: Deliveries are retried until ``now + horizon_s``.
        keep: Store the event even without a webhook to deliver it to.

    Returns:
        Deliveries created.
    """
    if not webhook_ids and not keep:
        return 0
    conn.execute(
        "INSERT OR IGNORE INTO webhook_messages"
        " (event_id, event, owner_id, org_id, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (event_id, event, owner_id, org_id, body, now),
    )
    created = 0
    for webhook_id in webhook_ids:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, webhook_id, event_id, status,"
            " created_at, next_attempt_at, expires_at) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
            (f"dlv_{uuid.uuid4().hex}", webhook_id, event_id, now, now, now + horizon_s),
        )
        created += cursor.rowcount
    return created


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt and what follows it, to record."""

    job: Job
    result: AttemptResult
    decision: Decision
    at: float


class WebhookStore:
    """The webhook tables of one state file.

    Args:
        path: The SQLite state file (``state.db``).
        settings: Retry horizon and disabling rules.
        clock: Epoch seconds (injected by tests).
    """

    def __init__(
        self,
        path: Path,
        settings: WebhookSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings or WebhookSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = open_sqlite(path)
        with self._lock:
            prepare(self._conn)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
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
                f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES ({','.join('?' * 15)})",
                _webhook_values(row),
            )

    def put_webhook(self, row: WebhookRow) -> None:
        """Replace a registration (it must exist)."""
        with self._tx() as c:
            c.execute(
                f"INSERT OR REPLACE INTO webhooks ({_WEBHOOK_COLUMNS})"
                f" VALUES ({','.join('?' * 15)})",
                _webhook_values(row),
            )
            if row.status == "disabled":
                self._fail_pending(c, row.webhook_id, f"webhook disabled: {row.disabled_reason}")

    def webhook(self, webhook_id: str) -> WebhookRow | None:
        """A registration by id."""
        rows = self._read(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE webhook_id = ?", (webhook_id,)
        )
        return _row_to_webhook(rows[0]) if rows else None

    def webhooks(self, owner_id: str, org_id: str | None = None) -> list[WebhookRow]:
        """``owner_id``'s registrations, and every one in ``org_id`` when it is given."""
        rows = self._read(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE owner_id = ? OR org_id = ?"
            " ORDER BY created_at",
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
        """Remove a registration with its deliveries and their attempts."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM webhook_attempts WHERE delivery_id IN"
                " (SELECT delivery_id FROM webhook_deliveries WHERE webhook_id = ?)",
                (webhook_id,),
            )
            c.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?", (webhook_id,))
            gone = c.execute("DELETE FROM webhooks WHERE webhook_id = ?", (webhook_id,))
            return gone.rowcount > 0

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
        """Write an event for its subscribers (or for webhook ``only``) in one transaction.

        Returns:
            Deliveries created.
        """
        with self._tx() as c:
            targets = [only] if only is not None else subscribers(c, event, owner_id, org_id)
            return enqueue(
                c,
                event_id=event_id,
                event=event,
                body=body,
                owner_id=owner_id,
                org_id=org_id,
                webhook_ids=targets,
                now=self._clock(),
                horizon_s=self._settings.retry_horizon_s,
                keep=keep,
            )

    def delivery_of(self, webhook_id: str, event_id: str) -> str | None:
        """The id of the delivery of ``event_id`` to ``webhook_id``, if there is one."""
        rows = self._read(
            "SELECT delivery_id FROM webhook_deliveries WHERE webhook_id = ? AND event_id = ?",
            (webhook_id, event_id),
        )
        return str(rows[0][0]) if rows else None

    def release_leases(self) -> int:
        """Make every claimed delivery due now (the worker that claimed them is gone).

        Returns:
            How many were released.
        """
        with self._tx() as c:
            return c.execute(
                "UPDATE webhook_deliveries SET leased = 0, next_attempt_at = ?"
                " WHERE status = 'pending' AND leased = 1",
                (self._clock(),),
            ).rowcount

    def claim(
        self, limit: int, lease_s: float, room: dict[str, int], default_room: int
    ) -> list[Job]:
        """Lease up to ``limit`` due deliveries, at most ``room[w]`` (else ``default_room``)
        of webhook ``w``.

        A webhook with no room is not even read, so a backlog behind a receiver that hangs
        never hides the deliveries of others.
        """
        if limit <= 0:
            return []
        now = self._clock()
        full = [w for w, n in room.items() if n <= 0]
        skip = f" AND d.webhook_id NOT IN ({','.join('?' * len(full))})" if full else ""
        with self._tx() as c:
            rows = c.execute(
                "SELECT d.delivery_id, d.webhook_id, d.event_id, m.event, m.body, w.url,"
                " w.secrets, d.attempts, d.expires_at, w.status FROM webhook_deliveries d"
                " JOIN webhook_messages m ON m.event_id = d.event_id"
                " JOIN webhooks w ON w.webhook_id = d.webhook_id"
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
                        int(row[7]), float(row[8]))
                )  # fmt: skip
            c.executemany(
                "UPDATE webhook_deliveries SET leased = 1, next_attempt_at = ?"
                " WHERE delivery_id = ?",
                [(now + lease_s, j.delivery_id) for j in jobs],
            )
        return jobs

    def next_due(self) -> float | None:
        """When the earliest pending delivery is due (or its lease ends), if any."""
        (when,) = self._read(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'"
        )[0]
        return None if when is None else float(when)

    def record(self, outcomes: Sequence[Outcome]) -> list[tuple[str, str]]:
        """Record attempts and their consequences, all in one transaction.

        Returns:
            ``(webhook_id, reason)`` of each webhook this disabled.
        """
        disabled: list[tuple[str, str]] = []
        with self._tx() as c:
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
                    (
                        j.delivery_id,
                        j.attempts + 1,
                        o.at,
                        r.status_code,
                        r.latency_ms,
                        _error_text(r.error),
                    ),
                )
                reason = self._health(c, j.webhook_id, r, d, o.at)
                if reason is not None:
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
        """Update the webhook's run of failures; disable it when it has failed too long."""
        row = c.execute(
            "SELECT consecutive_failures, failing_since, status FROM webhooks WHERE webhook_id = ?",
            (webhook_id,),
        ).fetchone()
        if row is None:
            return None
        health = Health(int(row[0]), row[1]).after(result.ok, now)
        reason = None
        if row[2] == "active":
            reason = decision.disable or disable_reason(health, now, self._settings)
        c.execute(
            "UPDATE webhooks SET consecutive_failures = ?, failing_since = ? WHERE webhook_id = ?",
            (health.consecutive_failures, health.failing_since, webhook_id),
        )
        if reason is not None:
            c.execute(
                "UPDATE webhooks SET status = 'disabled', disabled_reason = ?, disabled_at = ?,"
                " updated_at = ? WHERE webhook_id = ?",
                (reason, now, now, webhook_id),
            )
            self._fail_pending(c, webhook_id, f"webhook disabled: {reason}")
        return reason

    @staticmethod
    def _fail_pending(c: sqlite3.Connection, webhook_id: str, why: str) -> None:
        c.execute(
            "UPDATE webhook_deliveries SET status = 'failed', leased = 0, next_attempt_at = NULL,"
            " last_error = ? WHERE webhook_id = ? AND status = 'pending'",
            (_error_text(why), webhook_id),
        )

    def retry(self, webhook_id: str, delivery_id: str) -> bool:
        """Queue a delivery again, due now, with a new retry horizon (a no-op while it is
        being sent).

        Returns:
            Whether the delivery exists.
        """
        now = self._clock()
        with self._tx() as c:
            row = c.execute(
                "SELECT leased FROM webhook_deliveries WHERE delivery_id = ? AND webhook_id = ?",
                (delivery_id, webhook_id),
            ).fetchone()
            if row is None:
                return False
            if not row[0]:
                c.execute(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?,"
                    " expires_at = ? WHERE delivery_id = ?",
                    (now, now + self._settings.retry_horizon_s, delivery_id),
                )
        return True

    def prune(self, older_than_s: float) -> int:
        """Forget finished deliveries (and their attempts) and unreferenced events older than
        ``older_than_s``.

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
            c.execute(
                "DELETE FROM webhook_messages WHERE created_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM webhook_deliveries d"
                " WHERE d.event_id = webhook_messages.event_id)",
                (cutoff,),
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
        """The newest stored events of a type: ``(event_id, body, pending, delivered)``."""
        return [
            (r[0], bytes(r[1]), int(r[2]), int(r[3]))
            for r in self._read(
                "SELECT m.event_id, m.body,"
                " (SELECT COUNT(*) FROM webhook_deliveries d"
                "  WHERE d.event_id = m.event_id AND d.status = 'pending'),"
                " (SELECT COUNT(*) FROM webhook_deliveries d"
                "  WHERE d.event_id = m.event_id AND d.status = 'succeeded')"
                " FROM webhook_messages m WHERE m.event = ? ORDER BY m.created_at DESC LIMIT ?",
                (event, limit),
            )
        ]

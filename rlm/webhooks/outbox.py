"""The engine's side of the outbox: events written where their cause is written.

``task.completed``: the task store calls :meth:`WebhookOutbox.task_ended` inside the very
transaction that writes a task's final record (an engine's own ending, or a task of a gone
engine marked interrupted at start-up). The event — one row naming the webhooks subscribed to
it — is committed with the record or not at all: no event for a task that did not end, no
ended task without its event. A task with no subscribed webhook costs one indexed ``SELECT``;
one with subscribers, one more row: the delivery worker fans it out into a delivery per
webhook in its own transaction, off the engine's path.

``quota.threshold_exceeded``: the quota ledger queues these in its own store (another SQLite
file, with its own journal), in the same change set as the usage that crossed the threshold.
Two files cannot share a transaction, so they are moved over at least once instead:
:meth:`WebhookOutbox.quota_events` writes each one here under an id derived from its ledger key
and content (``INSERT OR IGNORE``), and only then does the caller acknowledge it in the ledger.
A crash in between leaves it queued in the ledger; moving it again finds the same id and adds
nothing, so each webhook still gets it once, under one ``webhook-id``.

After the transaction, :meth:`WebhookOutbox.flush` wakes the delivery worker when something
was queued (the worker also polls, so a lost wake-up only delays a delivery).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm.tasks.record import TaskRecord
from rlm.tasks.store import open_sqlite
from rlm.webhooks import store as _store
from rlm.webhooks.payloads import (
    QUOTA_THRESHOLD,
    TASK_COMPLETED,
    encode,
    quota_alert_id,
    task_completed,
)
from rlm.webhooks.settings import WebhookSettings

if TYPE_CHECKING:
    from rlm.db.async_pool import AsyncTransaction

__all__ = ["QuotaEvent", "WebhookOutbox"]

#: A threshold event the ledger queued: its key, its payload, and the org of its user.
QuotaEvent = tuple[str, dict[str, Any], str | None]


class WebhookOutbox:
    """Writes events into the outbox tables of the state file.

    Args:
        path: The state file (``state.db``).
        settings: The retry horizon and the result size cap.
        clock: Epoch seconds.
        database_url: Write into this PostgreSQL database instead (the task store's).
    """

    def __init__(
        self,
        path: Path,
        settings: WebhookSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        database_url: str | None = None,
    ) -> None:
        self._path = path
        self._database_url = database_url
        self._settings = settings or WebhookSettings()
        self._clock = clock
        self._notify: Callable[[], object] | None = None
        self._queued = 0
        self._conn: sqlite3.Connection | None = None

    def on_queued(self, notify: Callable[[], object]) -> None:
        """Call ``notify`` from :meth:`flush` when deliveries were queued."""
        self._notify = notify

    # -- the task store's hook (inside its transaction) ---------------------------------------

    def prepare(self, conn: sqlite3.Connection) -> None:
        """Create the outbox tables (the task store calls this when it opens)."""
        _store.prepare(conn)

    def task_ended(self, conn: sqlite3.Connection, record: TaskRecord) -> None:
        """Queue ``task.completed`` for the task's subscribers, in the caller's transaction."""
        targets = _store.subscribers(conn, TASK_COMPLETED, record.owner_id, record.org_id)
        if not targets:
            return
        event_id, body = task_completed(record, self._settings.max_result_bytes)
        self._queued += _store.enqueue(
            conn,
            event_id=event_id,
            event=TASK_COMPLETED,
            body=body,
            owner_id=record.owner_id,
            org_id=record.org_id,
            webhook_ids=targets,
            now=self._clock(),
        )

    async def task_ended_async(self, tx: AsyncTransaction, record: TaskRecord) -> None:
        """:meth:`task_ended` in a transaction of the asynchronous path (PostgreSQL, the
        engine core's loop): the same rows, awaited instead of blocking the loop."""
        rows = await tx.fetchall(_store.SUBSCRIBERS_SQL, (record.owner_id, record.org_id))
        targets = _store.subscribed(rows, TASK_COMPLETED)
        if not targets:
            return
        event_id, body = task_completed(record, self._settings.max_result_bytes)
        row = (event_id, TASK_COMPLETED, record.owner_id, record.org_id)
        written = await tx.rowcount(
            _store.ENQUEUE_SQL, (*row, json.dumps(targets), body, self._clock())
        )
        self._queued += len(targets) if written > 0 else 0

    # -- quota events (moved over from the ledger) --------------------------------------------

    def quota_events(self, events: Sequence[QuotaEvent]) -> None:
        """Write the ledger's threshold events (idempotent: see the module docstring)."""
        if self._conn is None:
            self._conn = open_sqlite(self._path, self._database_url)
            _store.prepare(self._conn)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for key, payload, org_id in events:
                user_id = payload.get("data", {}).get("userId")
                self._queued += _store.enqueue(
                    conn,
                    event_id=quota_alert_id(key, payload),
                    event=QUOTA_THRESHOLD,
                    body=encode(payload),
                    owner_id=user_id,
                    org_id=org_id,
                    webhook_ids=_store.subscribers(conn, QUOTA_THRESHOLD, user_id, org_id),
                    now=self._clock(),
                    keep=True,  # kept for `rlm quota events` even when nobody subscribed
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def flush(self) -> int:
        """Wake the delivery worker if deliveries were queued since the last flush.

        Returns:
            Deliveries queued since the last flush.
        """
        queued, self._queued = self._queued, 0
        if queued and self._notify is not None:
            self._notify()
        return queued

    def close(self) -> None:
        """Close the connection used for quota events."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

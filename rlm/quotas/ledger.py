"""The quota ledger: admission, reconciliation and the views of users, teams and orgs.

One plain object holds every user, team and org; time comes from an injected
:class:`~rlm.quotas.clock.Clock`. Nothing here knows about Ray or SQLite: the runtime wraps
:class:`~rlm.quotas.service.QuotaLedgerService` (this ledger plus a store) as an actor.

Admission reserves a task's planned agent calls on every level at once — the user's daily,
weekly and monthly windows, the team pool (and the member's allocation, if it has one), the
user's org and every ancestor — or on none. A refusal raises :class:`~rlm.errors.QuotaExceeded`
and changes no counter. Reconciliation replaces the hold with actual usage exactly once.

Language-model requests hold their worst-case tokens and settle to the reported usage (tokens
and cost on the same levels), refused only by a user's ``dailyTokenLimit``; see
:mod:`rlm.quotas.tokens`.

Overspend rule: when a task's actual usage exceeds what it reserved, the actual amount is
charged (the work was done), which may push a window past its limit; the window then reports
``exceeded`` and refuses admissions until it resets. Compute hours are charged the same way,
since they are only known afterwards.

Layout: :class:`QuotaLedger` is composed of one part per concept, each a subclass of
:class:`~rlm.quotas.ledger_core.LedgerCore` (the shared state, clock and tier defaults):

* :mod:`rlm.quotas.ledger_users` — user configs, org placement, ``user_status``;
* :mod:`rlm.quotas.ledger_reservations` — ``check``, ``reserve``, ``reconcile``, ``release``,
  ``reap_expired`` and the open reservations;
* :mod:`rlm.quotas.ledger_batch` — ``apply_batch``: a batch of admission calls at one
  instant, runs of alike reserves and reconciles as one hold per counter;
* :mod:`rlm.quotas.ledger_tokens` — language-model token holds;
* :mod:`rlm.quotas.ledger_teams` — teams, members, allocations, transfers;
* :mod:`rlm.quotas.ledger_orgs` — the org tree and ``governing_orgs``;
* :mod:`rlm.quotas.ledger_tenancy` — what a tenant's manager may change, checked and applied
  in one call (``managed_*``);

and this module adds what spans them: history pruning, usage over time
(:mod:`rlm.quotas.usage`), events, snapshot and restore.

Example:
    >>> from datetime import UTC, datetime
    >>> from rlm.quotas.clock import FrozenClock
    >>> ledger = QuotaLedger(FrozenClock(datetime(2028, 2, 29, tzinfo=UTC)))
    >>> r = ledger.reserve("ada", 40, tier="user", task_id="t1")
    >>> ledger.reconcile(r.reservation_id, 25, 0.5).agent_calls
    25
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from rlm.errors import InvalidInput
from rlm.models.usage import UsageHistory, UsagePoint
from rlm.quotas.changes import ChangeSet, Snapshot
from rlm.quotas.clock import Clock
from rlm.quotas.counters import from_micro, from_nano
from rlm.quotas.ledger_batch import LedgerBatch
from rlm.quotas.ledger_tenancy import LedgerTenancy
from rlm.quotas.ledger_tokens import LedgerTokens
from rlm.quotas.settings import QuotaSettings
from rlm.quotas.state import LedgerState
from rlm.quotas.usage import (
    BUCKETS,
    LEVELS,
    USAGE_RETENTION,
    UsageBucket,
    hour_of,
)
from rlm.quotas.windows import PERIODS

__all__ = ["QuotaLedger"]


class QuotaLedger(LedgerTenancy, LedgerBatch, LedgerTokens):
    """Users, teams and the org tree, with all-or-nothing admission.

    Not thread-safe: one caller at a time (an actor, or a lock in the service).

    Args:
        clock: Where time comes from; must return timezone-aware datetimes.
        settings: Tier defaults and alert thresholds.
    """

    # -- history ---------------------------------------------------------------------------
    # Here rather than in a part: one retention cut spans reservations, token holds and
    # transfer receipts alike.

    def prune_history(self, max_age: timedelta, max_count: int | None = None) -> int:
        """Forget settlements (token ones too) and transfer receipts older than ``max_age``,
        and of each kind all but the ``max_count`` newest.

        After this, a repeated reconcile or transfer with a forgotten id is no longer
        recognised as a repeat (reconcile then raises ``InvalidInput``). The engine calls it
        on its heartbeat, so the history (one settlement per task) stays bounded.

        Returns:
            How many records were forgotten.
        """
        now = self._starts().now
        cutoff = now - max_age
        forgotten = 0
        for records, kind, when in (
            (self._state.settled, "reservation", _settled_at),
            (self._state.token_settled, "token_hold", _settled_at),
            (self._state.teams.receipts, "transfer", _transferred_at),
        ):
            old = _oldest(records, when, cutoff, max_count)
            for key in old:
                del records[key]
                self._state.changed.add((kind, key))
            forgotten += len(old)
        # Usage buckets have their own, longer retention: the console draws whole months.
        return forgotten + self._state.usage.prune(hour_of(now - USAGE_RETENTION))

    # -- usage over time -------------------------------------------------------------------

    def usage_history(
        self, level: str, entity_id: str, period: str = "daily", bucket: str = "hour"
    ) -> UsageHistory:
        """What ``level`` (``user``, ``team``, ``org``) ``entity_id`` was charged in the
        current ``period`` window, per ``bucket`` (``hour`` or ``day``), oldest first.

        An id with no usage yet answers zeros (whether it exists is the caller's check).

        Raises:
            InvalidInput: Unknown level, period or bucket.
        """
        if level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}", field="level")
        if period not in PERIODS:
            raise InvalidInput(f"period must be one of {', '.join(PERIODS)}", field="period")
        if bucket not in BUCKETS:
            raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}", field="bucket")
        starts = self._starts()
        start, reset = starts.start(period), starts.reset(period)
        # Up to the end of the bucket holding now: the future has no usage to draw.
        size = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
        end = min(reset, start + ((starts.now - start) // size + 1) * size)
        series = self._state.usage.series(level, entity_id, start, end, bucket)
        total = UsageBucket(start)
        for used in series:
            total.add(used)
        return UsageHistory(
            level=level,
            id=entity_id,
            period=period,
            bucket=bucket,
            start=start,
            reset_time=reset,
            buckets=[_point(b) for b in series],
            total=_point(total),
        )

    # -- events ----------------------------------------------------------------------------

    def pending_events(self) -> list[dict[str, Any]]:
        """Undelivered webhook payloads, oldest first, without removing them."""
        return [copy.deepcopy(e) for e in self._state.events.values()]

    def drain_events(self) -> list[dict[str, Any]]:
        """Take every undelivered webhook payload, oldest first."""
        return self._state.drain_events()

    def pending_event_count(self) -> int:
        """How many webhook payloads are queued (cheap: for a check on every task's end)."""
        return len(self._state.events)

    def pending_event_items(self) -> list[tuple[str, dict[str, Any]]]:
        """Queued webhook payloads with their keys, oldest first, without removing them."""
        return [(k, copy.deepcopy(e)) for k, e in self._state.events.items()]

    def ack_events(self, keys: Sequence[str]) -> int:
        """Remove the queued payloads ``keys`` names, once the outbox holds them.

        Unlike :meth:`drain_events`, an event queued after the caller read the queue stays.

        Returns:
            How many were removed.
        """
        return self._state.remove_events(keys)

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The full state as JSON-ready dicts, ``{kind: {key: data}}``."""
        return self._state.snapshot()

    @classmethod
    def restore(
        cls, snapshot: Snapshot, clock: Clock, settings: QuotaSettings | None = None
    ) -> QuotaLedger:
        """Rebuild a ledger from :meth:`snapshot` output (or the rows of a store).

        Raises:
            InvalidInput: The snapshot is of an unknown version or its org tree is broken.
        """
        ledger = cls(clock, settings)
        ledger._state = LedgerState.from_snapshot(snapshot)
        return ledger

    def pop_changes(self) -> ChangeSet:
        """The rows changed since the last call (upserts and deletes), then forget them."""
        return self._state.pop_changes()


def _point(bucket: UsageBucket) -> UsagePoint:
    return UsagePoint(
        start=bucket.start,
        agents_used=bucket.agent_calls,
        compute_hours_used=from_micro(bucket.compute_micro),
        tokens_used=bucket.tokens,
        cost_usd=from_nano(bucket.cost_nano),
    )


def _settled_at(record: Any) -> datetime:
    return record.settled_at  # type: ignore[no-any-return]


def _transferred_at(record: Any) -> datetime:
    return record.transferred_at  # type: ignore[no-any-return]


def _oldest(
    records: dict[str, Any],
    when: Callable[[Any], datetime],
    cutoff: datetime,
    max_count: int | None,
) -> list[str]:
    """Keys of ``records`` (oldest first, as they are kept) older than ``cutoff`` or beyond
    the ``max_count`` newest. Stops at the first record to keep: linear in what is dropped."""
    excess = 0 if max_count is None else max(0, len(records) - max_count)
    old: list[str] = []
    for key, record in records.items():
        if len(old) < excess or when(record) <= cutoff:
            old.append(key)
        else:
            break
    return old

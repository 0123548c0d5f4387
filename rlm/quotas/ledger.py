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
* :mod:`rlm.quotas.ledger_tokens` — language-model token holds;
* :mod:`rlm.quotas.ledger_teams` — teams, members, allocations, transfers;
* :mod:`rlm.quotas.ledger_orgs` — the org tree and ``governing_orgs``;
* :mod:`rlm.quotas.ledger_tenancy` — what a tenant's manager may change, checked and applied
  in one call (``managed_*``);

and this module adds what spans them: history pruning, events, snapshot and restore.

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
from datetime import timedelta
from typing import Any

from rlm.quotas.changes import ChangeSet, Snapshot
from rlm.quotas.clock import Clock
from rlm.quotas.ledger_reservations import LedgerReservations
from rlm.quotas.ledger_tenancy import LedgerTenancy
from rlm.quotas.ledger_tokens import LedgerTokens
from rlm.quotas.settings import QuotaSettings
from rlm.quotas.state import LedgerState

__all__ = ["QuotaLedger"]


class QuotaLedger(LedgerTenancy, LedgerReservations, LedgerTokens):
    """Users, teams and the org tree, with all-or-nothing admission.

    Not thread-safe: one caller at a time (an actor, or a lock in the service).

    Args:
        clock: Where time comes from; must return timezone-aware datetimes.
        settings: Tier defaults and alert thresholds.
    """

    # -- history ---------------------------------------------------------------------------
    # Here rather than in a part: one retention cut spans reservations, token holds and
    # transfer receipts alike.

    def prune_history(self, max_age: timedelta) -> int:
        """Forget settlements (token ones too) and transfer receipts older than ``max_age``.

        After this, a repeated reconcile or transfer with a forgotten id is no longer
        recognised as a repeat (reconcile then raises ``InvalidInput``).

        Returns:
            How many records were forgotten.
        """
        cutoff = self._starts().now - max_age
        old = [k for k, s in self._state.settled.items() if s.settled_at <= cutoff]
        for key in old:
            del self._state.settled[key]
            self._state.changed.add(("reservation", key))
        tokens = self._state.token_settled
        old_tokens = [k for k, t in tokens.items() if t.settled_at <= cutoff]
        for key in old_tokens:
            del tokens[key]
            self._state.changed.add(("token_hold", key))
        old += old_tokens
        receipts = self._state.teams.receipts
        old_keys = [k for k, r in receipts.items() if r.transferred_at <= cutoff]
        for key in old_keys:
            del receipts[key]
            self._state.changed.add(("transfer", key))
        return len(old) + len(old_keys)

    # -- events ----------------------------------------------------------------------------

    def pending_events(self) -> list[dict[str, Any]]:
        """Undelivered webhook payloads, oldest first, without removing them."""
        return [copy.deepcopy(e) for e in self._state.events.values()]

    def drain_events(self) -> list[dict[str, Any]]:
        """Take every undelivered webhook payload, oldest first."""
        return self._state.drain_events()

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

"""Quotas: the pure ledger of users, teams and the enterprise org tree (no Ray here).

* :class:`QuotaLedger` — admission (all or nothing on user windows, team pool, member
  allocation and every ancestor org), reconciliation, language-model token holds and their
  usage and cost, teams, orgs, threshold alerts.
* :class:`QuotaStore` — the ledger's entities in SQLite (WAL) plus a journal of recent calls.
* :class:`QuotaLedgerService` — ledger + store; the class the runtime makes an actor.

Example:
    >>> from datetime import UTC, datetime
    >>> ledger = QuotaLedger(FrozenClock(datetime(2028, 2, 29, tzinfo=UTC)))
    >>> ledger.check("ada", 5, tier="user").allowed
    True
"""

from __future__ import annotations

from rlm.quotas.changes import ChangeSet, Snapshot
from rlm.quotas.clock import Clock, FrozenClock, SystemClock
from rlm.quotas.ledger import QuotaLedger
from rlm.quotas.ledger_tenancy import Manager
from rlm.quotas.records import (
    Reservation,
    Settlement,
    TokenHold,
    TokenSettlement,
    TransferReceipt,
)
from rlm.quotas.service import QuotaLedgerService
from rlm.quotas.settings import TIERS, QuotaSettings, Tier, TierQuota
from rlm.quotas.store import QuotaStore
from rlm.quotas.windows import PERIODS, Period, window_reset, window_start

__all__ = [
    "ChangeSet",
    "Clock",
    "FrozenClock",
    "Manager",
    "PERIODS",
    "Period",
    "QuotaLedger",
    "QuotaLedgerService",
    "QuotaSettings",
    "QuotaStore",
    "Reservation",
    "Settlement",
    "Snapshot",
    "SystemClock",
    "TIERS",
    "Tier",
    "TierQuota",
    "TokenHold",
    "TokenSettlement",
    "TransferReceipt",
    "window_reset",
    "window_start",
]

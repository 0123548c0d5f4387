"""What every part of :class:`~rlm.quotas.ledger.QuotaLedger` shares: state, clock, defaults.

The ledger is composed of one part per concept (users, reservations, token holds, teams,
orgs), each a subclass of :class:`LedgerCore` in its own ``ledger_*`` module, so each part
sees the same state and the same window starts without holding a reference to the others.
"""

from __future__ import annotations

from rlm.quotas.accounts import UserLimits
from rlm.quotas.clock import Clock, utc_now_from
from rlm.quotas.settings import QuotaSettings
from rlm.quotas.state import LedgerState
from rlm.quotas.windows import WindowStarts

__all__ = ["LedgerCore"]


class LedgerCore:
    """The state, clock and tier defaults under every part of the ledger.

    Use :class:`~rlm.quotas.ledger.QuotaLedger`; this class only carries what its parts share.

    Args:
        clock: Where time comes from; must return timezone-aware datetimes.
        settings: Tier defaults and alert thresholds.
    """

    def __init__(self, clock: Clock, settings: QuotaSettings | None = None) -> None:
        self._clock = clock
        self._settings = settings or QuotaSettings()
        self._defaults = UserLimits.defaults(self._settings)
        self._state = LedgerState()
        self._last_starts: WindowStarts | None = None
        # Set while a batch is applied: every call of the batch happens at one instant.
        self._pinned: WindowStarts | None = None

    @property
    def settings(self) -> QuotaSettings:
        """The tier defaults in force."""
        return self._settings

    def _starts(self) -> WindowStarts:
        if self._pinned is not None:
            return self._pinned
        self._last_starts = WindowStarts.at(utc_now_from(self._clock), self._last_starts)
        return self._last_starts

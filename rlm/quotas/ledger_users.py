"""The ledger's users: explicit limits, org placement and the status the API shows."""

from __future__ import annotations

from rlm.models.base import parse_model
from rlm.models.quotas import QuotaConfig, UserQuotaStatus
from rlm.quotas.accounts import UserAccount, UserLimits
from rlm.quotas.inputs import check_id
from rlm.quotas.ledger_core import LedgerCore
from rlm.quotas.settings import Tier, parse_tier
from rlm.quotas.windows import WindowStarts

__all__ = ["LedgerUsers"]


class LedgerUsers(LedgerCore):
    """User configs and status: the user part of :class:`~rlm.quotas.ledger.QuotaLedger`."""

    def set_user_config(self, config: QuotaConfig, *, tier: Tier = "user") -> QuotaConfig:
        """Give ``config.user_id`` explicit limits replacing its tier's defaults.

        Lowering a limit below current usage is allowed: the window then reports ``exceeded``.

        Args:
            config: The limits.
            tier: The tier recorded if the user is new.

        Returns:
            The config now in force.
        """
        config = parse_model(QuotaConfig, config)
        user_id = check_id(config.user_id, "userId")
        account = self._account(user_id, parse_tier(tier), self._starts())
        account.config = config.model_copy()
        self._state.changed.add(("config", user_id))
        return account.config.model_copy()

    def clear_user_config(self, user_id: str) -> None:
        """Return ``user_id`` to its tier's default limits."""
        account = self._state.users.get(user_id)
        if account is not None and account.config is not None:
            account.config = None
            self._state.changed.add(("config", user_id))

    def user_config(self, user_id: str, *, tier: Tier | None = None) -> QuotaConfig:
        """The limits in force for ``user_id`` (``tier`` overrides the recorded tier)."""
        return self._limits_of(user_id, tier).to_config(user_id)

    def set_user_org(self, user_id: str, org_id: str | None, *, tier: Tier = "user") -> None:
        """Place ``user_id`` in ``org_id`` (``None``: in no org).

        Open reservations keep charging the orgs they were made against.
        """
        check_id(user_id, "userId")
        if org_id is not None:
            self._state.orgs.get(org_id)
        account = self._account(user_id, parse_tier(tier), self._starts())
        account.org_id = org_id
        self._state.changed.add(("user", user_id))

    def user_status(self, user_id: str, *, tier: Tier | None = None) -> UserQuotaStatus:
        """The API's ``UserQuotaStatus`` (reservations in flight count as used).

        Args:
            user_id: The user; an unknown user shows empty windows.
            tier: The caller's tier, if known; else the recorded tier (``user`` when new).
        """
        starts = self._starts()
        tier = None if tier is None else parse_tier(tier)
        account = self._state.users.get(user_id) or UserAccount.new(user_id, tier or "user", starts)
        held = self._state.tokens_held.get(user_id, 0)
        return account.status(account.limits(self._defaults, tier), starts, held)

    def _account(self, user_id: str, tier: Tier, starts: WindowStarts) -> UserAccount:
        account = self._state.users.get(user_id)
        if account is None:
            account = self._state.users[user_id] = UserAccount.new(user_id, tier, starts)
            self._state.changed.add(("user", user_id))
        return account

    def _limits_of(self, user_id: str, tier: Tier | None) -> UserLimits:
        account = self._state.users.get(user_id)
        if account is None:
            return self._defaults[parse_tier(tier or "user")]
        return account.limits(self._defaults, None if tier is None else parse_tier(tier))

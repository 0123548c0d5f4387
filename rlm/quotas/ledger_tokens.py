"""The ledger's language-model token holds; the rules live in :mod:`rlm.quotas.tokens`."""

from __future__ import annotations

from datetime import timedelta

from rlm.errors import InvalidInput
from rlm.quotas.counters import to_nano
from rlm.quotas.inputs import check_count
from rlm.quotas.ledger_core import LedgerCore
from rlm.quotas.records import TokenHold, TokenSettlement
from rlm.quotas.settings import Tier
from rlm.quotas.tokens import MAX_TOKENS, hold_tokens, settle_token_hold, stale_token_holds

__all__ = ["LedgerTokens"]


class LedgerTokens(LedgerCore):
    """Token holds: the language-model part of :class:`~rlm.quotas.ledger.QuotaLedger`."""

    def reserve_tokens(
        self,
        user_id: str,
        tokens: int,
        *,
        tier: Tier = "user",
        team_id: str | None = None,
        org_id: str | None = None,
        task_id: str | None = None,
    ) -> TokenHold:
        """Hold a language-model request's worst-case ``tokens`` before it is sent.

        Team and org default as for :meth:`reserve`; nothing is charged until
        :meth:`settle_tokens`. Without a ``dailyTokenLimit`` the hold is not even stored.

        Args:
            user_id: Who is charged.
            tokens: The request's worst case, input plus maximum output (>= 1).
            tier: The user's tier (its ``daily_token_limit`` applies without an explicit
                config).
            team_id: The team charged on settlement; default: the user's only team.
            org_id: The org charged on settlement; default: the org recorded for the user.
            task_id: The task the request belongs to (the reaper spares running tasks' holds).

        Returns:
            The hold to settle or release.

        Raises:
            QuotaExceeded: Tokens settled today + open holds + ``tokens`` would pass the daily
                limit; ``details`` as for :meth:`reserve` (``resource`` ``tokens``). Nothing
                changed.
            InvalidInput: Malformed request, unknown team or org, or not a team member.
        """
        return hold_tokens(
            self._state,
            self._defaults,
            self._starts(),
            user_id,
            tokens,
            tier=tier,
            team_id=team_id,
            org_id=org_id,
            task_id=task_id,
        )

    def settle_tokens(
        self, hold_id: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> TokenSettlement:
        """Replace a token hold with the usage the provider reported, on every level.

        Exactly once, like :meth:`reconcile`: a repeat (or a call after :meth:`release_tokens`)
        changes nothing and returns the first settlement. Usage above the hold is charged.

        Raises:
            InvalidInput: Unknown hold, or negative (or absurd) usage or cost.
        """
        done = self._state.token_settled.get(hold_id)
        if done is not None:
            return done
        hold = self._open_token_hold(hold_id)
        inputs = check_count(input_tokens, "inputTokens", maximum=MAX_TOKENS)
        outputs = check_count(output_tokens, "outputTokens", maximum=MAX_TOKENS)
        cost = to_nano(cost_usd, field="costUsd")
        return settle_token_hold(self._state, hold, inputs, outputs, cost, self._starts())

    def release_tokens(self, hold_id: str) -> TokenSettlement:
        """Drop a token hold, charging nothing (the request was never answered).

        Idempotent like :meth:`settle_tokens`.
        """
        done = self._state.token_settled.get(hold_id)
        if done is not None:
            return done
        hold = self._open_token_hold(hold_id)
        return settle_token_hold(self._state, hold, 0, 0, 0, self._starts(), released=True)

    def reap_expired_tokens(self, max_age: timedelta) -> list[TokenSettlement]:
        """Release token holds older than ``max_age`` (made at or before ``now - max_age``),
        oldest first; see :meth:`reap_expired`."""
        starts = self._starts()
        stale = stale_token_holds(self._state, starts.now - max_age)
        return [settle_token_hold(self._state, h, 0, 0, 0, starts, released=True) for h in stale]

    def token_hold(self, hold_id: str) -> TokenHold | None:
        """The open token hold ``hold_id``, or ``None`` once settled or unknown."""
        return self._state.token_holds.get(hold_id)

    def open_token_holds(self, user_id: str | None = None) -> list[TokenHold]:
        """Open token holds (of ``user_id``, if given), oldest first."""
        holds = self._state.token_holds.values()
        return sorted(
            (h for h in holds if user_id is None or h.user_id == user_id),
            key=lambda h: h.created_at,
        )

    def _open_token_hold(self, hold_id: str) -> TokenHold:
        hold = self._state.token_holds.get(hold_id)
        if hold is None:
            raise InvalidInput(
                f"token hold {hold_id!r} does not exist", {"holdId": hold_id}, field="holdId"
            )
        return hold

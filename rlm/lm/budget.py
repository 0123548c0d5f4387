"""A task's LM budget: calls, tokens and dollars, reserved before a call is sent.

``options.budget = {"lmCalls"?, "tokens"?, "costUsd"?}``. Before each call the service
reserves its worst case (estimated prompt tokens + ``max_tokens``, priced); a call that would
cross any limit is not sent. After the call the hold is replaced by the provider's reported
usage. Because holds count until settled, concurrent calls of one task can never overshoot
together; the one way a task ends above a token or cost budget is a provider reporting more
tokens than the worst case allowed (e.g. a tokenizer that cuts text finer than the estimate).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from rlm.errors import QuotaExceeded
from rlm.models.budget import Budget  # the wire model, kept with the others (rlm.models)

__all__ = ["Budget", "BudgetHold", "TaskBudget"]


@dataclass(frozen=True, slots=True)
class BudgetHold:
    """One call's reservation."""

    hold_id: int
    tokens: int
    cost_usd: float


class TaskBudget:
    """The running account of one task's LM budget.

    Args:
        budget: The limits (``None`` or an empty budget: nothing is limited, all is counted).
    """

    def __init__(self, budget: Budget | None = None) -> None:
        self._budget = budget or Budget()
        self._ids = itertools.count(1)
        self._holds: dict[int, BudgetHold] = {}
        # What the open holds add up to, kept as they open and close (a task may have
        # hundreds in flight; summing them on every reservation would be quadratic).
        self._held_tokens = 0
        self._held_cost = 0.0
        self.calls = 0
        self.tokens = 0
        self.cost_usd = 0.0

    @property
    def budget(self) -> Budget:
        """The limits."""
        return self._budget

    def _held(self) -> tuple[int, int, float]:
        return len(self._holds), self._held_tokens, self._held_cost

    def _close(self, hold: BudgetHold) -> bool:
        if self._holds.pop(hold.hold_id, None) is None:
            return False
        self._held_tokens -= hold.tokens
        self._held_cost = max(0.0, self._held_cost - hold.cost_usd) if self._holds else 0.0
        return True

    def reserve(self, tokens: int, cost_usd: float) -> BudgetHold:
        """Hold one call's worst case, or refuse it.

        Raises:
            QuotaExceeded: the call would cross a limit; ``details`` name the budget
                (``budget``: ``lmCalls``, ``tokens`` or ``costUsd``), its ``limit``, what is
                ``used`` (settled) and ``held`` (in flight), and what this call ``needs``.
        """
        calls, held_tokens, held_cost = self._held()
        b = self._budget
        if b.lm_calls is not None and self.calls + calls + 1 > b.lm_calls:
            raise self._refusal("lmCalls", b.lm_calls, self.calls, calls, 1)
        if b.tokens is not None and self.tokens + held_tokens + tokens > b.tokens:
            raise self._refusal("tokens", b.tokens, self.tokens, held_tokens, tokens)
        if b.cost_usd is not None and self.cost_usd + held_cost + cost_usd > b.cost_usd + 1e-12:
            raise self._refusal("costUsd", b.cost_usd, self.cost_usd, held_cost, cost_usd)
        hold = BudgetHold(next(self._ids), tokens, cost_usd)
        self._holds[hold.hold_id] = hold
        self._held_tokens += tokens
        self._held_cost += cost_usd
        return hold

    def settle(self, hold: BudgetHold, tokens: int, cost_usd: float, *, counted: bool) -> None:
        """Replace a hold by what the call really used (once; a second settle does nothing).

        Args:
            hold: The call's hold.
            tokens: Tokens the provider reported.
            cost_usd: What they cost.
            counted: Whether the call counts against ``lmCalls`` (an answered call does; a
                call that was never answered, or was answered from the memo cache, does not).
        """
        if not self._close(hold):
            return
        if counted:
            self.calls += 1
        self.tokens += tokens
        self.cost_usd += cost_usd

    def release(self, hold: BudgetHold) -> None:
        """Drop a hold: the call was never answered; nothing is charged."""
        self._close(hold)

    @staticmethod
    def _refusal(name: str, limit: float, used: float, held: float, needs: float) -> QuotaExceeded:
        details: dict[str, Any] = {
            "resource": "budget",
            "budget": name,
            "limit": limit,
            "used": used,
            "held": held,
            "needs": needs,
        }
        return QuotaExceeded(
            f"the task's {name} budget of {limit} would be exceeded "
            f"(used {used}, in flight {held}, this call needs {needs})",
            details,
        )

"""A user's account: limits (tier defaults or an explicit config), window counters, the
concurrency lease and the threshold marks already emitted.

Compute limits of the longer windows are derived from ``dailyComputeHours`` (the only compute
limit of a ``QuotaConfig``): weekly = 7 * daily, monthly = days-in-the-month * daily. Tokens
have a daily limit only (``dailyTokenLimit``); every window reports the tokens and cost used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rlm.models.quotas import QuotaConfig, QuotaPeriod, UserQuotaStatus
from rlm.quotas.counters import WindowCounter, from_micro, from_nano, to_micro
from rlm.quotas.settings import TIERS, QuotaSettings, Tier, TierQuota
from rlm.quotas.windows import PERIODS, Period, WindowStarts

__all__ = ["UserAccount", "UserLimits"]


@dataclass(frozen=True, slots=True)
class UserLimits:
    """A user's effective limits, compute in micro-hours.

    Attributes:
        daily_agents: Agent calls per day.
        weekly_agents: Agent calls per ISO week.
        monthly_agents: Agent calls per calendar month.
        daily_compute: Micro-hours per day.
        max_concurrent: Agents at once.
        max_storage_gb: Storage allowance (reported only).
        daily_tokens: Language-model tokens per day; ``None``: unlimited.
    """

    daily_agents: int
    weekly_agents: int
    monthly_agents: int
    daily_compute: int
    max_concurrent: int
    max_storage_gb: float
    daily_tokens: int | None = None

    @classmethod
    def defaults(cls, settings: QuotaSettings) -> dict[Tier, UserLimits]:
        """The limits of every tier's defaults."""
        return {tier: cls.of(settings.for_tier(tier)) for tier in TIERS}

    @classmethod
    def of(cls, quota: TierQuota | QuotaConfig) -> UserLimits:
        """The limits a tier default or an explicit config sets."""
        return cls(
            daily_agents=quota.daily_agent_limit,
            weekly_agents=quota.weekly_agent_limit,
            monthly_agents=quota.monthly_agent_limit,
            daily_compute=to_micro(quota.daily_compute_hours, field="dailyComputeHours"),
            max_concurrent=quota.max_concurrent_agents,
            max_storage_gb=quota.max_storage_gb,
            daily_tokens=quota.daily_token_limit,
        )

    def agents(self, period: Period) -> int:
        """The agent-call limit of ``period``."""
        if period == "daily":
            return self.daily_agents
        if period == "weekly":
            return self.weekly_agents
        return self.monthly_agents

    def compute(self, period: Period, month_days: int) -> int:
        """The compute limit of ``period``, micro-hours (``month_days``: days in this month)."""
        if period == "daily":
            return self.daily_compute
        if period == "weekly":
            return 7 * self.daily_compute
        return month_days * self.daily_compute

    def to_config(self, user_id: str) -> QuotaConfig:
        """These limits as the API's ``QuotaConfig``."""
        return QuotaConfig(
            user_id=user_id,
            daily_agent_limit=self.daily_agents,
            weekly_agent_limit=self.weekly_agents,
            monthly_agent_limit=self.monthly_agents,
            daily_compute_hours=from_micro(self.daily_compute),
            max_concurrent_agents=self.max_concurrent,
            max_storage_gb=self.max_storage_gb,
            daily_token_limit=self.daily_tokens,
        )


@dataclass(slots=True)
class UserAccount:
    """Everything the ledger knows about one user.

    Attributes:
        user_id: The user.
        tier: The tier last presented for this user (its defaults apply without ``config``).
        windows: One counter per period.
        config: Explicit limits replacing the tier's defaults.
        org_id: The org the user belongs to; their charges count toward it and its ancestors.
        concurrent: Agents held by the user's open leases.
        alerts: Per period, the window start and the thresholds already announced in it.
    """

    user_id: str
    tier: Tier
    windows: dict[Period, WindowCounter]
    config: QuotaConfig | None = None
    org_id: str | None = None
    concurrent: int = 0
    alerts: dict[Period, tuple[datetime, list[int]]] = field(default_factory=dict)
    _config_limits: tuple[QuotaConfig, UserLimits] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def new(cls, user_id: str, tier: Tier, starts: WindowStarts) -> UserAccount:
        """A fresh account with empty windows."""
        return cls(user_id, tier, {p: WindowCounter(starts.start(p)) for p in PERIODS})

    def limits(self, defaults: Mapping[Tier, UserLimits], tier: Tier | None = None) -> UserLimits:
        """Effective limits: the explicit config, else the defaults of ``tier`` (or the stored
        tier)."""
        if self.config is None:
            return defaults[tier or self.tier]
        cached = self._config_limits
        if cached is None or cached[0] is not self.config:
            cached = self._config_limits = (self.config, UserLimits.of(self.config))
        return cached[1]

    def period_view(
        self, period: Period, limits: UserLimits, starts: WindowStarts, tokens_held: int = 0
    ) -> QuotaPeriod:
        """One window as the API reports it; reservations in flight count as used.

        Tokens used are those settled; ``tokens_held`` (the user's open token holds) only
        lowers the daily ``tokensRemaining``.
        """
        counter = self.windows[period]
        start = starts.start(period)
        agents, compute = counter.held(start)
        tokens, cost = counter.tokens(start)
        agents_limit = limits.agents(period)
        compute_limit = limits.compute(period, starts.month_days)
        token_limit = limits.daily_tokens if period == "daily" else None
        return QuotaPeriod(
            agents_used=agents,
            agents_limit=agents_limit,
            agents_remaining=max(0, agents_limit - agents),
            compute_hours_used=from_micro(compute),
            compute_hours_limit=from_micro(compute_limit),
            reset_time=starts.reset(period),
            # A window is exceeded when the next admission on it would be refused.
            exceeded=agents >= agents_limit or compute >= compute_limit,
            tokens_used=tokens,
            cost_usd=from_nano(cost),
            token_limit=token_limit,
            tokens_remaining=(
                None if token_limit is None else max(0, token_limit - tokens - tokens_held)
            ),
        )

    def status(
        self, limits: UserLimits, starts: WindowStarts, tokens_held: int = 0
    ) -> UserQuotaStatus:
        """The API's ``UserQuotaStatus`` (``tokens_held``: the user's open token holds)."""
        return UserQuotaStatus(
            user_id=self.user_id,
            daily=self.period_view("daily", limits, starts, tokens_held),
            weekly=self.period_view("weekly", limits, starts),
            monthly=self.period_view("monthly", limits, starts),
            current_concurrent_agents=self.concurrent,
            max_concurrent_agents=limits.max_concurrent,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``config`` is stored as its own, rarely written, entity)."""
        return {
            "userId": self.user_id,
            "tier": self.tier,
            "windows": {p: c.to_row() for p, c in self.windows.items()},
            "orgId": self.org_id,
            "concurrent": self.concurrent,
            "alerts": {p: [s.isoformat(), list(t)] for p, (s, t) in self.alerts.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UserAccount:
        """Rebuild an account written by :meth:`to_dict` (without its ``config``)."""
        return cls(
            user_id=data["userId"],
            tier=data["tier"],
            windows={p: WindowCounter.from_row(data["windows"][p]) for p in PERIODS},
            org_id=data["orgId"],
            concurrent=int(data["concurrent"]),
            alerts={
                p: (datetime.fromisoformat(s), [int(x) for x in t])
                for p, (s, t) in data["alerts"].items()
            },
        )

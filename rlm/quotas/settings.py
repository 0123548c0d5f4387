"""Default quota limits per tier.

``maxConcurrentAgents`` follows the API document's rate-limit table (anonymous 0, user 5,
power user 20, admin 100, enterprise 500). Agent-call and compute defaults are this project's
choice; an explicit :class:`rlm.models.quotas.QuotaConfig` set on a user replaces them.

Example:
    >>> QuotaSettings().for_tier("power_user").max_concurrent_agents
    20
"""

from __future__ import annotations

from typing import Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rlm.errors import InvalidInput

__all__ = [
    "QuotaSettings",
    "TIERS",
    "Tier",
    "TierQuota",
    "parse_tier",
]

Tier = Literal["anonymous", "user", "power_user", "admin", "enterprise"]

TIERS: tuple[Tier, ...] = get_args(Tier)


class TierQuota(BaseModel):
    """The default limits of one tier (the numbers of a ``QuotaConfig``).

    Attributes:
        daily_agent_limit: Agent calls per UTC day.
        weekly_agent_limit: Agent calls per ISO week (Monday 00:00 UTC).
        monthly_agent_limit: Agent calls per calendar month.
        daily_compute_hours: Compute hours per UTC day.
        max_concurrent_agents: Agents running at once across the user's tasks.
        max_storage_gb: Storage allowance (reported, not charged by the ledger).
        daily_token_limit: Language-model tokens (input + output) per UTC day; ``None``:
            unlimited.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily_agent_limit: int = Field(ge=0)
    weekly_agent_limit: int = Field(ge=0)
    monthly_agent_limit: int = Field(ge=0)
    daily_compute_hours: float = Field(ge=0, allow_inf_nan=False)
    max_concurrent_agents: int = Field(ge=0)
    max_storage_gb: float = Field(ge=0, allow_inf_nan=False)
    daily_token_limit: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _windows_nest(self) -> Self:
        # A daily limit above the weekly one could never be reached; it is a typo.
        if not self.daily_agent_limit <= self.weekly_agent_limit <= self.monthly_agent_limit:
            raise ValueError("agent limits must satisfy daily <= weekly <= monthly")
        return self


class QuotaSettings(BaseModel):
    """Tier defaults of the quota ledger (to be nested in :class:`rlm.config.Settings`).

    Attributes:
        anonymous: Unauthenticated callers: nothing may run.
        user: The default tier.
        power_user: Heavier interactive use.
        admin: Operators.
        enterprise: Enterprise tenants (their orgs and teams add their own caps).
        alert_thresholds: Percentages of a window at which ``quota.threshold_exceeded`` fires.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    anonymous: TierQuota = TierQuota(
        daily_agent_limit=0,
        weekly_agent_limit=0,
        monthly_agent_limit=0,
        daily_compute_hours=0.0,
        max_concurrent_agents=0,
        max_storage_gb=0.0,
    )
    user: TierQuota = TierQuota(
        daily_agent_limit=10_000,
        weekly_agent_limit=50_000,
        monthly_agent_limit=200_000,
        daily_compute_hours=24.0,
        max_concurrent_agents=5,
        max_storage_gb=10.0,
    )
    power_user: TierQuota = TierQuota(
        daily_agent_limit=50_000,
        weekly_agent_limit=250_000,
        monthly_agent_limit=1_000_000,
        daily_compute_hours=96.0,
        max_concurrent_agents=20,
        max_storage_gb=100.0,
    )
    admin: TierQuota = TierQuota(
        daily_agent_limit=200_000,
        weekly_agent_limit=1_000_000,
        monthly_agent_limit=4_000_000,
        daily_compute_hours=480.0,
        max_concurrent_agents=100,
        max_storage_gb=1_000.0,
    )
    enterprise: TierQuota = TierQuota(
        daily_agent_limit=1_000_000,
        weekly_agent_limit=5_000_000,
        monthly_agent_limit=20_000_000,
        daily_compute_hours=2_400.0,
        max_concurrent_agents=500,
        max_storage_gb=10_000.0,
    )
    alert_thresholds: tuple[int, ...] = (80, 100)

    @model_validator(mode="after")
    def _thresholds_sorted(self) -> Self:
        t = self.alert_thresholds
        if any(not 0 < x <= 1000 for x in t) or list(t) != sorted(set(t)):
            raise ValueError("alert_thresholds must be increasing percentages in (0, 1000]")
        return self

    def for_tier(self, tier: Tier) -> TierQuota:
        """The default limits of ``tier``."""
        quota: TierQuota = getattr(self, tier)
        return quota


def parse_tier(value: object) -> Tier:
    """Check that ``value`` names a tier.

    Raises:
        InvalidInput: ``value`` is not one of :data:`TIERS`.
    """
    for tier in TIERS:
        if value == tier:
            return tier
    raise InvalidInput(f"unknown tier {value!r}; expected one of {', '.join(TIERS)}", field="tier")

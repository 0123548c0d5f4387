"""Quota shapes: user windows, allocation checks, team pools, transfers, the org tree."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from rlm.models.base import INTEGRAL, Identifier, WireModel

__all__ = [
    "AllocationCheck",
    "AllocationDecision",
    "OrgQuotaUpdate",
    "Organization",
    "OrganizationHierarchy",
    "ProjectAllocation",
    "QuotaConfig",
    "QuotaPeriod",
    "QuotaTransfer",
    "TeamConfig",
    "TeamMember",
    "TeamQuotaStatus",
    "TeamUsage",
    "UserQuotaStatus",
]

# Bounded so that no amount overflows the ledger's integer micro-units or JSON.
NonNegInt = Annotated[int, Field(ge=0, le=10**15), INTEGRAL]
NonNegFloat = Annotated[float, Field(ge=0, le=1e12)]


class QuotaPeriod(WireModel):
    """One window (daily, weekly or monthly) of a user's quota.

    Extensions: ``tokensUsed`` and ``costUsd`` are the language-model tokens (input + output)
    and cost settled in the window; ``tokenLimit`` and ``tokensRemaining`` appear on the daily
    window of a user with a ``dailyTokenLimit`` (remaining also subtracts open token holds).
    ``exceeded`` is about agent calls and compute only, as the API document defines it.
    """

    agents_used: int
    agents_limit: int
    agents_remaining: int
    compute_hours_used: float
    compute_hours_limit: float
    reset_time: datetime
    exceeded: bool
    tokens_used: int = 0
    cost_usd: float = 0.0
    token_limit: int | None = None
    tokens_remaining: int | None = None


class UserQuotaStatus(WireModel):
    """``GET /quotas/user/{userId}``."""

    user_id: str
    daily: QuotaPeriod
    weekly: QuotaPeriod
    monthly: QuotaPeriod
    current_concurrent_agents: int
    max_concurrent_agents: int


class AllocationCheck(WireModel):
    """``POST /quotas/user/{userId}/check``'s body."""

    agents_requested: Annotated[int, Field(ge=1, le=1_000_000), INTEGRAL]
    session_id: Annotated[str, Field(max_length=200)] | None = None


class AllocationDecision(WireModel):
    """The answer of an allocation check (a dry run: nothing is charged)."""

    allowed: bool
    reason: str


class QuotaConfig(WireModel):
    """A user's limits.

    ``dailyTokenLimit`` (extension) caps the language-model tokens (input + output) a user may
    hold and use per UTC day; ``null`` or absent means unlimited, 0 means no tokens at all.
    """

    user_id: Identifier
    daily_agent_limit: NonNegInt
    weekly_agent_limit: NonNegInt
    monthly_agent_limit: NonNegInt
    daily_compute_hours: NonNegFloat
    max_concurrent_agents: NonNegInt
    max_storage_gb: NonNegFloat = Field(alias="maxStorageGB")
    daily_token_limit: NonNegInt | None = None


class TeamConfig(WireModel):
    """A team's pool."""

    team_name: str
    total_agent_pool: NonNegInt
    total_compute_hours: NonNegFloat
    total_storage_gb: NonNegFloat = Field(alias="totalStorageGB")


class TeamUsage(WireModel):
    """A team's usage against its pool; ``tokensUsed`` and ``costUsd`` (extensions) are the
    language-model tokens and cost its members settled this month."""

    agents_used: int
    agents_total: int
    compute_used: float
    compute_total: float
    storage_used: float
    storage_total: float
    tokens_used: int = 0
    cost_usd: float = 0.0


class TeamMember(WireModel):
    """A member of a team and the share of the pool allocated to it.

    ``agentsAllocated`` and ``computeHoursAllocated`` are ``null`` for a member without an
    allocation of its own: it draws on the team pool, capped only by what is left there.
    """

    user_id: str
    role: str = "member"
    agents_allocated: NonNegInt | None = None
    compute_hours_allocated: NonNegFloat | None = None

    def to_wire(self, **kwargs: Any) -> dict[str, Any]:
        """The JSON-ready dict; a missing allocation is an explicit ``null``."""
        kwargs.setdefault("exclude_none", False)
        return super().to_wire(**kwargs)

    agents_used: NonNegInt = 0
    compute_hours_used: NonNegFloat = 0.0


class ProjectAllocation(WireModel):
    """A project's share of a team pool."""

    project_id: str
    name: str = ""
    agents_allocated: NonNegInt = 0
    compute_hours_allocated: NonNegFloat = 0.0


class TeamQuotaStatus(WireModel):
    """``GET /quotas/team/{teamId}``; ``orgId`` (extension) is the org whose managers govern it."""

    team_id: str
    org_id: str | None = None
    config: TeamConfig
    usage: TeamUsage
    members: list[TeamMember]
    projects: list[ProjectAllocation]

    def to_wire(self, **kwargs: Any) -> dict[str, Any]:
        """The JSON-ready dict; members without an allocation show ``null`` allocations."""
        kwargs.setdefault("exclude_none", False)
        return super().to_wire(**kwargs)


class QuotaTransfer(WireModel):
    """``POST /quotas/team/{teamId}/transfers``'s body: something must move (agents or
    compute hours); from a member to itself, nothing does."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["agents"], "properties": {"agents": {"minimum": 1}}},
                {
                    "required": ["computeHours"],
                    "properties": {"computeHours": {"exclusiveMinimum": 0}},
                },
            ]
        }
    )

    from_user_id: Identifier
    to_user_id: Identifier
    agents: NonNegInt = 0
    compute_hours: NonNegFloat = 0.0


class Organization(WireModel):
    """A node of the enterprise org tree; ``tokensUsed`` and ``costUsd`` (extensions) are the
    language-model tokens and cost its subtree settled this month."""

    org_id: str
    name: str = ""
    parent_id: str | None = None
    agents: NonNegInt = 0
    compute_hours: NonNegFloat = 0.0
    storage_gb: NonNegFloat = Field(default=0.0, alias="storageGB")
    agents_used: NonNegInt = 0
    compute_hours_used: NonNegFloat = 0.0
    tokens_used: int = 0
    cost_usd: float = 0.0


class OrganizationHierarchy(WireModel):
    """``GET /quotas/enterprise/org/{orgId}/hierarchy``; ancestors are listed root first."""

    org: Organization
    ancestors: list[Organization]
    descendants: list[Organization]
    siblings: list[Organization]


class OrgQuotaUpdate(WireModel):
    """``PATCH /quotas/enterprise/org/{orgId}``'s body; absent fields stay as they are."""

    agents: NonNegInt | None = None
    compute_hours: NonNegFloat | None = None
    storage_gb: NonNegFloat | None = Field(default=None, alias="storageGB")

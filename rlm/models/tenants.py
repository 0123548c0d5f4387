"""Extension shapes for operators: creating teams and orgs, allocating to members."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rlm.models.base import Identifier, WireModel
from rlm.models.quotas import NonNegFloat, NonNegInt

__all__ = ["MemberAllocation", "OrgCreate", "ProjectCreate", "TeamCreate", "TransferReceiptOut"]

Name = Annotated[str, Field(min_length=1, max_length=200)]


class TeamCreate(WireModel):
    """``POST /quotas/team``: a new team and its pool."""

    team_id: Identifier
    team_name: Name
    total_agent_pool: NonNegInt
    total_compute_hours: NonNegFloat
    total_storage_gb: NonNegFloat = Field(default=0.0, alias="totalStorageGB")
    org_id: Identifier | None = None


class MemberAllocation(WireModel):
    """``PUT /quotas/team/{teamId}/members/{userId}``: membership and its share of the pool."""

    role: Annotated[str, Field(max_length=50)] = "member"
    agents_allocated: NonNegInt | None = None
    compute_hours_allocated: NonNegFloat | None = None


class ProjectCreate(WireModel):
    """``PUT /quotas/team/{teamId}/projects/{projectId}``: a project's share of the pool."""

    name: Annotated[str, Field(max_length=200)] = ""
    agents_allocated: NonNegInt
    compute_hours_allocated: NonNegFloat = 0.0


class OrgCreate(WireModel):
    """``POST /quotas/enterprise/org``: a new org under ``parentId`` (a root when absent)."""

    org_id: Identifier
    name: Annotated[str, Field(max_length=200)] = ""
    parent_id: Identifier | None = None
    agents: NonNegInt = 0
    compute_hours: NonNegFloat = 0.0
    storage_gb: NonNegFloat = Field(default=0.0, alias="storageGB")


class TransferReceiptOut(WireModel):
    """The answer of a transfer: what moved, and both members' allocations afterwards."""

    transfer_id: str
    team_id: str
    from_user_id: str
    to_user_id: str
    agents: int
    compute_hours: float
    from_agents_allocated: int
    to_agents_allocated: int

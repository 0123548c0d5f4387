"""Team pools: members, their allocations, project allocations and transfers between members.

A team's pool is counted over the **calendar month** (UTC): ``usage.agentsUsed`` is what the
team's members held (charged + reserved) this month, and resets on the 1st at 00:00 UTC. A
member's usage against its allocation uses the same monthly window.

A member *with* an allocation can never hold more than it; a member without one draws on the
pool alone. Σ member allocations ≤ pool and Σ project allocations ≤ pool always hold.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rlm.errors import Conflict, InvalidInput
from rlm.models.quotas import (
    ProjectAllocation,
    TeamConfig,
    TeamMember,
    TeamQuotaStatus,
    TeamUsage,
)
from rlm.quotas.changes import EntityKey
from rlm.quotas.counters import WindowCounter, from_micro, from_nano, to_micro
from rlm.quotas.inputs import check_count, check_id
from rlm.quotas.records import TransferReceipt
from rlm.quotas.windows import WindowStarts, marks_from_row, marks_to_row

__all__ = ["Member", "Project", "Team", "TeamBook", "member_key", "split_member_key"]


@functools.lru_cache(maxsize=65_536)
def member_key(team_id: str, user_id: str) -> str:
    """The state-store key of one membership (JSON, so ids may hold any character)."""
    # Cached: every admission that charges a team marks its member's row by this key.
    return json.dumps([team_id, user_id])


@functools.lru_cache(maxsize=65_536)
def split_member_key(key: str) -> tuple[str, str]:
    """The ``(team_id, user_id)`` of a :func:`member_key`."""
    team_id, user_id = json.loads(key)
    return str(team_id), str(user_id)


@dataclass(slots=True)
class Member:
    """One user's membership of a team.

    Attributes:
        user_id: The member.
        role: Free text (``member``, ``lead``, ...).
        allocated: Whether the team capped this member (then ``*_allocated`` apply).
        agents_allocated: Agent calls per month the member may hold.
        compute_allocated: Micro-hours per month.
        usage: The member's monthly usage of the pool.
    """

    user_id: str
    role: str
    allocated: bool
    agents_allocated: int
    compute_allocated: int
    usage: WindowCounter

    def view(self, starts: WindowStarts) -> TeamMember:
        """The API's ``TeamMember`` (an uncapped member shows ``null`` allocations)."""
        agents, compute = self.usage.held(starts.monthly)
        return TeamMember(
            user_id=self.user_id,
            role=self.role,
            agents_allocated=self.agents_allocated if self.allocated else None,
            compute_hours_allocated=from_micro(self.compute_allocated) if self.allocated else None,
            agents_used=agents,
            compute_hours_used=from_micro(compute),
        )

    def to_dict(self, team_id: str) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "teamId": team_id,
            "userId": self.user_id,
            "role": self.role,
            "allocated": self.allocated,
            "agentsAllocated": self.agents_allocated,
            "computeAllocated": self.compute_allocated,
            "usage": self.usage.to_row(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Member:
        """Rebuild a member written by :meth:`to_dict`."""
        return cls(
            user_id=data["userId"],
            role=data["role"],
            allocated=bool(data["allocated"]),
            agents_allocated=int(data["agentsAllocated"]),
            compute_allocated=int(data["computeAllocated"]),
            usage=WindowCounter.from_row(data["usage"]),
        )


@dataclass(slots=True)
class Project:
    """A project's share of the pool (bookkeeping: reservations are not charged to projects)."""

    project_id: str
    name: str
    agents_allocated: int
    compute_allocated: int

    def view(self) -> ProjectAllocation:
        """The API's ``ProjectAllocation``."""
        return ProjectAllocation(
            project_id=self.project_id,
            name=self.name,
            agents_allocated=self.agents_allocated,
            compute_hours_allocated=from_micro(self.compute_allocated),
        )


@dataclass(slots=True)
class Team:
    """A team's pool and members.

    Attributes:
        team_id: The team.
        name: Display name.
        agent_pool: Agent calls per month for the whole team.
        compute_pool: Micro-hours per month.
        storage_pool: Micro-GB (reported only).
        usage: The team's monthly usage.
        org_id: The org the team belongs to (its managers govern it); ``None``: operators only.
        members: Members by user id (persisted as separate rows).
        projects: Project allocations by id.
        alerts: This month's start and the thresholds of the pool already announced in it.
    """

    team_id: str
    name: str
    agent_pool: int
    compute_pool: int
    storage_pool: int
    usage: WindowCounter
    org_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    alerts: tuple[datetime, list[int]] | None = None

    def member(self, user_id: str) -> Member:
        """The membership of ``user_id``.

        Raises:
            InvalidInput: ``user_id`` is not a member.
        """
        found = self.members.get(user_id)
        if found is None:
            raise Conflict(
                f"user {user_id!r} is not a member of team {self.team_id!r}",
                {"teamId": self.team_id, "userId": user_id},
                field="userId",
            )
        return found

    def allocated_totals(self, *, skip: str | None = None) -> tuple[int, int]:
        """Σ agent and micro-hour allocations of capped members, leaving out ``skip``."""
        agents = compute = 0
        for m in self.members.values():
            if m.allocated and m.user_id != skip:
                agents += m.agents_allocated
                compute += m.compute_allocated
        return agents, compute

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (members are stored as their own rows)."""
        return {
            "teamId": self.team_id,
            "name": self.name,
            "agentPool": self.agent_pool,
            "computePool": self.compute_pool,
            "storagePool": self.storage_pool,
            "orgId": self.org_id,
            "usage": self.usage.to_row(),
            "projects": [
                [p.project_id, p.name, p.agents_allocated, p.compute_allocated]
                for p in self.projects.values()
            ],
            "alerts": marks_to_row(self.alerts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Team:
        """Rebuild a team written by :meth:`to_dict` (without members)."""
        return cls(
            team_id=data["teamId"],
            name=data["name"],
            agent_pool=int(data["agentPool"]),
            compute_pool=int(data["computePool"]),
            storage_pool=int(data["storagePool"]),
            usage=WindowCounter.from_row(data["usage"]),
            org_id=data.get("orgId"),  # absent in state written before teams had orgs
            projects={p[0]: Project(p[0], p[1], int(p[2]), int(p[3])) for p in data["projects"]},
            alerts=marks_from_row(data.get("alerts")),  # absent in state written before team alerts
        )


class TeamBook:
    """All teams, with the operations that keep their allocations within their pools.

    Args:
        changed: The ledger's set of entity keys to persist; every mutation adds to it.
    """

    def __init__(self, changed: set[EntityKey]) -> None:
        self.teams: dict[str, Team] = {}
        self.receipts: dict[str, TransferReceipt] = {}
        self._changed = changed
        # user id -> the teams it belongs to, so admission finds a user's team in O(1).
        self._teams_of: dict[str, list[str]] = {}

    def attach(self, team_id: str, member: Member) -> None:
        """Put ``member`` in team ``team_id`` (loading state, or adding a member)."""
        team = self.get(team_id)
        if member.user_id not in team.members:
            self._teams_of.setdefault(member.user_id, []).append(team_id)
        team.members[member.user_id] = member

    def detach(self, team_id: str, user_id: str) -> None:
        """Take ``user_id`` out of team ``team_id`` (undoing a join that could not finish)."""
        team = self.get(team_id)
        if team.members.pop(user_id, None) is not None:
            self._teams_of[user_id].remove(team_id)
            if not self._teams_of[user_id]:
                del self._teams_of[user_id]
            self._changed.add(("member", member_key(team_id, user_id)))

    def teams_of(self, user_id: str) -> list[str]:
        """The teams ``user_id`` is a member of, in the order it joined them."""
        return list(self._teams_of.get(user_id, ()))

    def team_of(self, user_id: str) -> str | None:
        """The team an admission of ``user_id`` charges when the caller names none.

        Returns:
            The user's only team; ``None`` if it belongs to none.

        Raises:
            InvalidInput: The user belongs to several teams (the caller must name one).
        """
        teams = self._teams_of.get(user_id, [])
        if len(teams) > 1:
            raise Conflict(
                f"user {user_id!r} belongs to teams {sorted(teams)}; name the team to charge",
                {"userId": user_id, "teams": sorted(teams)},
                field="teamId",
            )
        return teams[0] if teams else None

    def get(self, team_id: str) -> Team:
        """The team ``team_id``.

        Raises:
            InvalidInput: No such team.
        """
        team = self.teams.get(team_id)
        if team is None:
            raise InvalidInput(f"team {team_id!r} does not exist", field="teamId")
        return team

    def create(
        self,
        team_id: str,
        team_name: str,
        total_agent_pool: int,
        total_compute_hours: float,
        total_storage_gb: float,
        starts: WindowStarts,
        org_id: str | None = None,
    ) -> Team:
        """Create a team with an empty membership (``org_id`` is checked by the caller)."""
        check_id(team_id, "teamId")
        if team_id in self.teams:
            raise Conflict(f"team {team_id!r} already exists", field="teamId")
        team = Team(
            team_id=team_id,
            name=team_name,
            agent_pool=check_count(total_agent_pool, "totalAgentPool"),
            compute_pool=to_micro(total_compute_hours, field="totalComputeHours"),
            storage_pool=to_micro(total_storage_gb, field="totalStorageGB"),
            usage=WindowCounter(starts.monthly),
            org_id=org_id,
        )
        self.teams[team_id] = team
        self._changed.add(("team", team_id))
        return team

    def add_member(self, team_id: str, user_id: str, role: str, starts: WindowStarts) -> Member:
        """Add ``user_id`` to the team (uncapped) or change the role of an existing member."""
        team = self.get(team_id)
        check_id(user_id, "userId")
        member = team.members.get(user_id)
        if member is None:
            member = Member(user_id, role, False, 0, 0, WindowCounter(starts.monthly))
            self.attach(team_id, member)
        else:
            member.role = role
        self._changed.add(("member", member_key(team_id, user_id)))
        return member

    def set_member_allocation(
        self, team_id: str, user_id: str, agents: int, compute_hours: float, starts: WindowStarts
    ) -> Member:
        """Cap a member at ``agents`` calls and ``compute_hours`` per month.

        Raises:
            InvalidInput: Σ allocations would exceed the pool, or the cap is below what the
                member already holds this month; nothing changes.
        """
        team = self.get(team_id)
        member = team.member(user_id)
        agents = check_count(agents, "agents")
        compute = to_micro(compute_hours, field="computeHours")
        others_agents, others_compute = team.allocated_totals(skip=user_id)
        if others_agents + agents > team.agent_pool:
            raise _over_pool(team, "agents", others_agents + agents, team.agent_pool)
        if others_compute + compute > team.compute_pool:
            raise _over_pool(team, "computeHours", others_compute + compute, team.compute_pool)
        held_agents, held_compute = member.usage.held(starts.monthly)
        if agents < held_agents or compute < held_compute:
            raise Conflict(
                f"allocation of {user_id!r} would fall below what it already used this month",
                {"agentsUsed": held_agents, "computeHoursUsed": from_micro(held_compute)},
                field="agents" if agents < held_agents else "computeHours",
            )
        member.allocated = True
        member.agents_allocated = agents
        member.compute_allocated = compute
        self._changed.add(("member", member_key(team_id, user_id)))
        return member

    def set_project_allocation(
        self, team_id: str, project_id: str, name: str, agents: int, compute_hours: float
    ) -> Project:
        """Allocate part of the pool to a project (Σ project allocations ≤ pool).

        Raises:
            InvalidInput: Σ project allocations would exceed the pool; nothing changes.
        """
        team = self.get(team_id)
        check_id(project_id, "projectId")
        agents = check_count(agents, "agents")
        compute = to_micro(compute_hours, field="computeHours")
        others = [p for p in team.projects.values() if p.project_id != project_id]
        total_agents = sum(p.agents_allocated for p in others) + agents
        total_compute = sum(p.compute_allocated for p in others) + compute
        if total_agents > team.agent_pool:
            raise _over_pool(team, "agents", total_agents, team.agent_pool)
        if total_compute > team.compute_pool:
            raise _over_pool(team, "computeHours", total_compute, team.compute_pool)
        project = Project(project_id, name, agents, compute)
        team.projects[project_id] = project
        self._changed.add(("team", team_id))
        return project

    def transfer(
        self,
        team_id: str,
        from_user_id: str,
        to_user_id: str,
        agents: int,
        compute_hours: float,
        idempotency_key: str | None,
        starts: WindowStarts,
    ) -> TransferReceipt:
        """Move allocation from one capped member to another; Σ allocations is unchanged.

        Raises:
            InvalidInput: Unknown team or member, a member without an allocation, nothing to
                move, the giver would fall below its usage, or the idempotency key was used
                with a different body. Nothing changes.
        """
        agents = check_count(agents, "agents")
        compute = to_micro(compute_hours, field="computeHours")
        if idempotency_key is not None:
            earlier = self.receipts.get(idempotency_key)
            if earlier is not None:
                if earlier.same_request(team_id, from_user_id, to_user_id, agents, compute):
                    return earlier
                raise Conflict(
                    "idempotency key was already used with a different transfer",
                    {"idempotencyKey": idempotency_key},
                    field="idempotencyKey",
                )
        team = self.get(team_id)
        giver, taker = team.member(from_user_id), team.member(to_user_id)
        if agents == 0 and compute_hours == 0:
            # (A positive amount too small for a micro-hour moves nothing, but was asked for.)
            raise InvalidInput("a transfer must move agents or compute hours", field="agents")
        if from_user_id == to_user_id:
            # From a member to itself: nothing moves (a receipt says so).
            return self._receipt(team_id, giver, taker, agents, compute, idempotency_key, starts)
        for m, name in ((giver, "fromUserId"), (taker, "toUserId")):
            if not m.allocated:
                # Giving an uncapped member an allocation would silently cap it; refuse.
                raise Conflict(
                    f"member {m.user_id!r} has no allocation; set one before transferring",
                    field=name,
                )
        held_agents, held_compute = giver.usage.held(starts.monthly)
        if giver.agents_allocated - agents < held_agents:
            raise Conflict(
                f"{from_user_id!r} would keep less than the {held_agents} agent calls it used",
                {"agentsAllocated": giver.agents_allocated, "agentsUsed": held_agents},
                field="agents",
            )
        if giver.compute_allocated - compute < held_compute:
            raise Conflict(
                f"{from_user_id!r} would keep less compute than it used",
                {
                    "computeHoursAllocated": from_micro(giver.compute_allocated),
                    "computeHoursUsed": from_micro(held_compute),
                },
                field="computeHours",
            )
        giver.agents_allocated -= agents
        giver.compute_allocated -= compute
        taker.agents_allocated += agents
        taker.compute_allocated += compute
        self._changed.add(("member", member_key(team_id, from_user_id)))
        self._changed.add(("member", member_key(team_id, to_user_id)))
        return self._receipt(team_id, giver, taker, agents, compute, idempotency_key, starts)

    def _receipt(
        self,
        team_id: str,
        giver: Member,
        taker: Member,
        agents: int,
        compute: int,
        idempotency_key: str | None,
        starts: WindowStarts,
    ) -> TransferReceipt:
        receipt = TransferReceipt(
            transfer_id=idempotency_key or f"xfer_{uuid.uuid4().hex}",
            team_id=team_id,
            from_user_id=giver.user_id,
            to_user_id=taker.user_id,
            agents=agents,
            compute_micro=compute,
            from_agents_allocated=giver.agents_allocated,
            from_compute_micro_allocated=giver.compute_allocated,
            to_agents_allocated=taker.agents_allocated,
            to_compute_micro_allocated=taker.compute_allocated,
            transferred_at=starts.now,
        )
        if idempotency_key is not None:
            self.receipts[idempotency_key] = receipt
            self._changed.add(("transfer", idempotency_key))
        return receipt

    def status(self, team_id: str, starts: WindowStarts) -> TeamQuotaStatus:
        """The API's ``TeamQuotaStatus`` (``storageUsed`` is filled in by the engine)."""
        team = self.get(team_id)
        agents, compute = team.usage.held(starts.monthly)
        tokens, cost = team.usage.tokens(starts.monthly)
        return TeamQuotaStatus(
            team_id=team.team_id,
            org_id=team.org_id,
            config=TeamConfig(
                team_name=team.name,
                total_agent_pool=team.agent_pool,
                total_compute_hours=from_micro(team.compute_pool),
                total_storage_gb=from_micro(team.storage_pool),
            ),
            usage=TeamUsage(
                agents_used=agents,
                agents_total=team.agent_pool,
                compute_used=from_micro(compute),
                compute_total=from_micro(team.compute_pool),
                storage_used=0.0,
                storage_total=from_micro(team.storage_pool),
                tokens_used=tokens,
                cost_usd=from_nano(cost),
            ),
            members=[m.view(starts) for m in team.members.values()],
            projects=[p.view() for p in team.projects.values()],
        )


def _over_pool(team: Team, resource: str, total: int, pool: int) -> Conflict:
    scaled = (total, pool) if resource == "agents" else (from_micro(total), from_micro(pool))
    return Conflict(
        f"allocations of team {team.team_id!r} would exceed its {resource} pool",
        {"resource": resource, "allocated": scaled[0], "pool": scaled[1]},
        field=resource,
    )

"""The ledger's teams: pools, members, allocations and transfers; see :mod:`rlm.quotas.teams`."""

from __future__ import annotations

from rlm.errors import InvalidInput
from rlm.models.quotas import TeamMember, TeamQuotaStatus
from rlm.quotas.inputs import check_id
from rlm.quotas.ledger_core import LedgerCore
from rlm.quotas.records import TransferReceipt

__all__ = ["LedgerTeams"]


class LedgerTeams(LedgerCore):
    """Teams: the team part of :class:`~rlm.quotas.ledger.QuotaLedger`."""

    def create_team(
        self,
        team_id: str,
        team_name: str,
        total_agent_pool: int,
        total_compute_hours: float,
        total_storage_gb: float = 0.0,
        org_id: str | None = None,
    ) -> TeamQuotaStatus:
        """Create a team with a monthly pool in ``org_id``; see :mod:`rlm.quotas.teams`.

        Raises:
            InvalidInput: The team exists, bad amounts, or ``org_id`` is unknown.
        """
        if org_id is not None:
            self._state.orgs.get(org_id)
        starts = self._starts()
        self._state.teams.create(
            team_id,
            team_name,
            total_agent_pool,
            total_compute_hours,
            total_storage_gb,
            starts,
            org_id,
        )
        return self._state.teams.status(team_id, starts)

    def add_member(
        self,
        team_id: str,
        user_id: str,
        role: str = "member",
        agents: int | None = None,
        compute_hours: float | None = None,
    ) -> TeamMember:
        """Add ``user_id`` to the team (or change its role), capped if an allocation is given.

        All or nothing: an allocation the pool cannot take leaves a new member out.

        Raises:
            InvalidInput: Unknown team, bad id, or the allocation does not fit.
        """
        starts = self._starts()
        teams = self._state.teams
        earlier = teams.get(team_id).members.get(user_id)
        old_role = None if earlier is None else earlier.role
        member = teams.add_member(team_id, user_id, role, starts)
        if agents is None and compute_hours is None:
            return member.view(starts)
        try:
            teams.set_member_allocation(team_id, user_id, agents or 0, compute_hours or 0.0, starts)
        except InvalidInput:
            if old_role is None:
                teams.detach(team_id, user_id)
            else:
                member.role = old_role
            raise
        return member.view(starts)

    def set_member_allocation(
        self, team_id: str, user_id: str, agents: int, compute_hours: float
    ) -> TeamMember:
        """Cap a member's monthly share of the pool (Σ caps ≤ pool; never below usage)."""
        starts = self._starts()
        member = self._state.teams.set_member_allocation(
            team_id, user_id, agents, compute_hours, starts
        )
        return member.view(starts)

    def set_project_allocation(
        self, team_id: str, project_id: str, agents: int, compute_hours: float, name: str = ""
    ) -> TeamQuotaStatus:
        """Allocate part of the pool to a project (Σ project allocations ≤ pool)."""
        self._state.teams.set_project_allocation(team_id, project_id, name, agents, compute_hours)
        return self._state.teams.status(team_id, self._starts())

    def transfer(
        self,
        team_id: str,
        from_user: str,
        to_user: str,
        agents: int = 0,
        compute_hours: float = 0.0,
        idempotency_key: str | None = None,
    ) -> TransferReceipt:
        """Move allocation between two capped members; see :meth:`TeamBook.transfer`."""
        if idempotency_key is not None:
            check_id(idempotency_key, "idempotencyKey")
        return self._state.teams.transfer(
            team_id, from_user, to_user, agents, compute_hours, idempotency_key, self._starts()
        )

    def team_status(self, team_id: str) -> TeamQuotaStatus:
        """The API's ``TeamQuotaStatus`` for this month."""
        return self._state.teams.status(team_id, self._starts())

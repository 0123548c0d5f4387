"""What a tenant's manager may change, checked and applied in one ledger call.

A manager is a token holding ``rlm:quota:manage`` (or ``rlm:admin``) with an ``org`` claim.
It governs its org and the org's descendants: the users placed in them, the teams created in
them, and those orgs. Every method here checks *and* changes in one call, so one actor call
(and one commit) does both: two orgs' managers racing for the same user can never leave it
configured by one and placed in the other's org, since whoever comes second sees the user
already placed.

The rules, each refusal a :class:`~rlm.errors.Forbidden` whose ``details["rule"]`` names it
(the API's security log can record it):

* ``outside_org`` — the user, team or org is not in the manager's org tree (an unknown team or
  org answers the same, so names cannot be probed). A user in no org yet is taken into the
  manager's org by the change (claimed), in the same call.
* ``no_org`` — the token names no org, or one the ledger does not have: it manages nothing.
* ``self_raise`` — a manager never raises its own limits: its own ``QuotaConfig`` (against
  the limits in force for it now, its tier's defaults when it has none), its own member
  allocation, a transfer to itself, or the caps of an org it is itself charged to (its org
  and every org its own user sits in or under). Lowering them is allowed.
* ``peer_raise`` — nor does a manager raise the limits (``QuotaConfig``, member allocation,
  a transfer to it) of a *peer*: a user the ledger knows as a manager of an org that governs
  the manager itself (its own org or an ancestor), who could raise it in turn. The ledger
  knows a manager from its first managed change that succeeded
  (:attr:`~rlm.quotas.orgs.Org.managers`), so of two managers of one org at most one ever
  raises the other, and neither once both have acted. Lowering is allowed; raising a peer
  is for a manager of a parent org or an operator.
* ``root_org`` — a root org is only created by a manager whose own org it is (bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlm.errors import Forbidden, InvalidInput
from rlm.models.base import parse_model
from rlm.models.quotas import Organization, QuotaConfig, TeamMember, TeamQuotaStatus
from rlm.quotas.counters import to_micro
from rlm.quotas.ledger_orgs import LedgerOrgs
from rlm.quotas.ledger_teams import LedgerTeams
from rlm.quotas.ledger_users import LedgerUsers
from rlm.quotas.records import TransferReceipt
from rlm.quotas.settings import Tier, parse_tier

__all__ = ["LedgerTenancy", "Manager", "TenancyRule"]

#: The ``details["rule"]`` of a tenancy refusal.
TenancyRule = str


@dataclass(frozen=True, slots=True)
class Manager:
    """Who is managing: the token's user, its ``org`` claim and its tier.

    Attributes:
        user_id: The token's ``sub``.
        org_id: The org it manages (its ``org`` claim), or ``None``.
        tier: The token's tier (its limits when the ledger holds none of its own).
    """

    user_id: str
    org_id: str | None
    tier: Tier = "user"


def _refuse(rule: TenancyRule, message: str, **details: Any) -> Forbidden:
    return Forbidden(message, {"rule": rule, **details})


_CONFIG_LIMITS = (
    "daily_agent_limit",
    "weekly_agent_limit",
    "monthly_agent_limit",
    "daily_compute_hours",
    "max_concurrent_agents",
    "max_storage_gb",
)


class LedgerTenancy(LedgerUsers, LedgerTeams, LedgerOrgs):
    """Managed changes: the tenancy part of :class:`~rlm.quotas.ledger.QuotaLedger`."""

    # -- the checks -----------------------------------------------------------------------------

    def _managed_org(self, manager: Manager) -> str:
        org = manager.org_id
        if org is None:
            raise _refuse("no_org", "only your own quota, unless you manage quotas in an org")
        try:
            self._state.orgs.get(org)
        except InvalidInput:
            raise _refuse(
                "no_org", f"the org {org!r} your token names does not exist", orgId=org
            ) from None
        return org

    def _acted(self, manager: Manager) -> None:
        """Remember the manager of a change that succeeded (a refused one changes nothing)."""
        if manager.org_id is not None and manager.org_id in self._state.orgs.orgs:
            self._state.orgs.add_manager(manager.org_id, manager.user_id)

    def _is_peer(self, manager: Manager, user_id: str) -> bool:
        """Whether ``user_id`` is another manager who governs ``manager`` (could raise it)."""
        if user_id == manager.user_id:
            return False
        orgs = self._state.orgs.orgs
        return any(user_id in orgs[o].managers for o in self._own_orgs(manager) if o in orgs)

    def _governs(self, manager: Manager, kind: str, entity_id: str) -> str:
        """The manager's org, if it governs the entity; else refuse."""
        org = self._managed_org(manager)
        try:
            chain = self.governing_orgs(kind, entity_id)
        except InvalidInput:
            chain = []  # unknown answers like another tenant's: names cannot be probed
        if org not in chain:
            raise _refuse(
                "outside_org",
                f"this {kind} is not in an org you manage",
                **{f"{kind}Id": entity_id, "orgId": org},
            )
        return org

    def _claim(self, manager: Manager, user_id: str) -> str | None:
        """Refuse a user outside the manager's tree; the org to place a user in no org in."""
        org = self._managed_org(manager)
        chain = self.governing_orgs("user", user_id)
        if not chain:
            return org
        if org not in chain:
            raise _refuse(
                "outside_org",
                "this user is not in an org you manage",
                userId=user_id,
                orgId=org,
            )
        return None

    def _own_orgs(self, manager: Manager) -> set[str]:
        """Every org whose caps apply to the manager's own usage."""
        own = set(self.governing_orgs("user", manager.user_id))
        if manager.org_id is not None:
            own.add(manager.org_id)
        return own

    def _place(self, user_id: str, org: str | None, tier: Tier) -> None:
        if org is not None:
            self.set_user_org(user_id, org, tier=tier)

    # -- users ----------------------------------------------------------------------------------

    def managed_set_user_config(self, manager: Manager, config: QuotaConfig) -> QuotaConfig:
        """Set a governed user's limits (a user in no org joins the manager's org).

        Raises:
            Forbidden: ``no_org``, ``outside_org`` or ``self_raise``; nothing changed.
        """
        config = parse_model(QuotaConfig, config)
        user_id = config.user_id
        place = self._claim(manager, user_id)
        if user_id == manager.user_id or self._is_peer(manager, user_id):
            self._no_raise_of_config(manager, config)
        tier: Tier = parse_tier(manager.tier) if user_id == manager.user_id else "user"
        done = self.set_user_config(config, tier=tier)
        self._place(user_id, place, tier)
        self._acted(manager)
        return done

    def _no_raise_of_config(self, manager: Manager, config: QuotaConfig) -> None:
        own = config.user_id == manager.user_id
        now = self.user_config(config.user_id, tier=parse_tier(manager.tier) if own else None)
        raised = [
            name
            for name in _CONFIG_LIMITS
            if float(getattr(config, name)) > float(getattr(now, name))
        ]
        if now.daily_token_limit is not None and (
            config.daily_token_limit is None or config.daily_token_limit > now.daily_token_limit
        ):
            raised.append("daily_token_limit")
        if raised:
            fields = sorted(QuotaConfig.model_fields[n].alias or n for n in raised)
            whose = "its own limits" if own else "the limits of a manager who governs it"
            raise _refuse(
                "self_raise" if own else "peer_raise",
                f"a manager cannot raise {whose} ({', '.join(fields)}); lowering them is "
                "allowed, raising them is for a manager of a parent org or an operator",
                userId=config.user_id,
                fields=fields,
            )

    # -- teams ----------------------------------------------------------------------------------

    def managed_create_team(
        self,
        manager: Manager,
        team_id: str,
        team_name: str,
        total_agent_pool: int,
        total_compute_hours: float,
        total_storage_gb: float = 0.0,
        org_id: str | None = None,
    ) -> TeamQuotaStatus:
        """Create a team in ``org_id`` (default: the manager's org), which it must govern."""
        org = org_id or self._managed_org(manager)
        self._governs(manager, "org", org)
        done = self.create_team(
            team_id, team_name, total_agent_pool, total_compute_hours, total_storage_gb, org
        )
        self._acted(manager)
        return done

    def managed_add_member(
        self,
        manager: Manager,
        team_id: str,
        user_id: str,
        role: str = "member",
        agents: int | None = None,
        compute_hours: float | None = None,
    ) -> TeamMember:
        """Add a governed (or unplaced) user to a governed team, with its allocation.

        Raises:
            Forbidden: ``no_org``, ``outside_org`` or ``self_raise`` (its own allocation).
            InvalidInput: the allocation does not fit the pool; nothing changed.
        """
        self._governs(manager, "team", team_id)
        place = self._claim(manager, user_id)
        if (user_id == manager.user_id or self._is_peer(manager, user_id)) and (
            agents is not None or compute_hours is not None
        ):
            self._no_raise_of_allocation(
                manager, team_id, user_id, agents or 0, compute_hours or 0.0
            )
        member = self.add_member(team_id, user_id, role, agents, compute_hours)
        self._place(user_id, place, "user")
        self._acted(manager)
        return member

    def _no_raise_of_allocation(
        self, manager: Manager, team_id: str, user_id: str, agents: int, compute_hours: float
    ) -> None:
        member = self._state.teams.get(team_id).members.get(user_id)
        if member is None or not member.allocated:
            return  # a member without a cap, or a newcomer: any cap only lowers
        micro = to_micro(compute_hours, field="computeHoursAllocated")
        if agents > member.agents_allocated or micro > member.compute_allocated:
            own = user_id == manager.user_id
            raise _refuse(
                "self_raise" if own else "peer_raise",
                "a manager cannot raise its own allocation in a team"
                if own
                else "a manager cannot raise the allocation of a manager who governs it",
                teamId=team_id,
                userId=user_id,
            )

    def managed_set_project_allocation(
        self,
        manager: Manager,
        team_id: str,
        project_id: str,
        agents: int,
        compute_hours: float,
        name: str = "",
    ) -> TeamQuotaStatus:
        """Set a project's share of a governed team's pool."""
        self._governs(manager, "team", team_id)
        done = self.set_project_allocation(team_id, project_id, agents, compute_hours, name)
        self._acted(manager)
        return done

    def managed_transfer(
        self,
        manager: Manager,
        team_id: str,
        from_user: str,
        to_user: str,
        agents: int = 0,
        compute_hours: float = 0.0,
        idempotency_key: str | None = None,
    ) -> TransferReceipt:
        """Move allocation between members of a governed team, both users governed too;
        never to the manager itself."""
        self._governs(manager, "team", team_id)
        for user in (from_user, to_user):
            self._governs(manager, "user", user)
        peer = self._is_peer(manager, to_user)
        if (to_user == manager.user_id or peer) and (agents > 0 or compute_hours > 0):
            raise _refuse(
                "peer_raise" if peer else "self_raise",
                "a manager cannot transfer allocation to a manager who governs it"
                if peer
                else "a manager cannot transfer allocation to itself",
                teamId=team_id,
                userId=to_user,
            )
        done = self.transfer(team_id, from_user, to_user, agents, compute_hours, idempotency_key)
        self._acted(manager)
        return done

    # -- orgs -----------------------------------------------------------------------------------

    def managed_create_org(
        self,
        manager: Manager,
        org_id: str,
        name: str = "",
        parent_id: str | None = None,
        agents: int = 0,
        compute_hours: float = 0.0,
        storage_gb: float = 0.0,
    ) -> Organization:
        """A new org under a governed parent; a root org only by its own manager. An org's
        caps only ever constrain, so creating one never raises anyone's limits."""
        if parent_id is not None:
            self._governs(manager, "org", parent_id)
        elif manager.org_id is None or org_id != manager.org_id:
            raise _refuse("root_org", "a root org is created by its own manager", orgId=org_id)
        done = self.create_org(org_id, name, parent_id, agents, compute_hours, storage_gb)
        self._acted(manager)
        return done

    def managed_patch_org(
        self,
        manager: Manager,
        org_id: str,
        agents: int | None = None,
        compute_hours: float | None = None,
        storage_gb: float | None = None,
    ) -> Organization:
        """Change a governed org's caps; those of an org the manager is charged to may only
        go down."""
        self._governs(manager, "org", org_id)
        if org_id in self._own_orgs(manager):
            org = self._state.orgs.get(org_id)
            raised = []
            if agents is not None and agents > org.agents:
                raised.append("agents")
            if compute_hours is not None and (
                to_micro(compute_hours, field="computeHours") > org.compute
            ):
                raised.append("computeHours")
            if storage_gb is not None and to_micro(storage_gb, field="storageGB") > org.storage:
                raised.append("storageGB")
            if raised:
                raise _refuse(
                    "self_raise",
                    f"a manager cannot raise the caps of an org it is charged to "
                    f"({', '.join(raised)}); a manager of a parent org or an operator can",
                    orgId=org_id,
                    fields=raised,
                )
        done = self.patch_org(org_id, agents, compute_hours, storage_gb)
        self._acted(manager)
        return done

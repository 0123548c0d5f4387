"""``tenants.yaml``: orgs, teams and users with their limits, loaded by operators.

Example file::

    orgs:
      - {orgId: corp, agents: 100000, computeHours: 1000}
      - {orgId: eng, parentId: corp, agents: 60000, computeHours: 600}
    teams:
      - teamId: research
        teamName: Research
        orgId: eng            # optional: the org whose managers govern the team
        totalAgentPool: 20000
        totalComputeHours: 200
        members:
          - {userId: alice, agentsAllocated: 12000, computeHoursAllocated: 120}
    users:
      - userId: alice
        org: eng
        tier: power_user
        dailyAgentLimit: 5000
        weeklyAgentLimit: 20000
        monthlyAgentLimit: 60000
        dailyComputeHours: 10
        maxConcurrentAgents: 20
        maxStorageGB: 50
        dailyTokenLimit: 2000000   # optional: language-model tokens per UTC day

Loading is idempotent: existing orgs are patched to the file's limits, existing teams and
members keep their place, users' limits are set again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm.auth.tiers import Tier, is_tier
from rlm.errors import InvalidInput, RLMError
from rlm.models.base import parse_model
from rlm.models.quotas import QuotaConfig
from rlm.models.tenants import MemberAllocation, OrgCreate, TeamCreate

__all__ = ["TenantFile", "UserEntry", "apply_tenants", "load_tenant_file"]


@dataclass(frozen=True)
class UserEntry:
    """A user's limits, org and tier."""

    config: QuotaConfig
    org: str | None
    tier: Tier


@dataclass(frozen=True)
class TenantFile:
    """A parsed ``tenants.yaml``."""

    orgs: list[OrgCreate] = field(default_factory=list)
    teams: list[tuple[TeamCreate, list[tuple[str, MemberAllocation]]]] = field(default_factory=list)
    users: list[UserEntry] = field(default_factory=list)


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise InvalidInput(f"{key} must be a list", field=key)
    return value


def load_tenant_file(path: Path) -> TenantFile:
    """Parse and validate ``path``.

    Raises:
        InvalidInput: naming the first bad entry (``orgs[1].agents``...).
    """
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InvalidInput(f"cannot read {path}: {err}", field="file") from None
    if not isinstance(doc, dict):
        raise InvalidInput("the file must hold a mapping", field="file")
    orgs = [
        parse_model(OrgCreate, o, prefix=f"orgs[{i}]") for i, o in enumerate(_list(doc, "orgs"))
    ]
    teams = []
    for i, raw in enumerate(_list(doc, "teams")):
        if not isinstance(raw, dict):
            raise InvalidInput("a team must be a mapping", field=f"teams[{i}]")
        members_raw = raw.pop("members", None) or []
        team = parse_model(TeamCreate, raw, prefix=f"teams[{i}]")
        members = []
        for j, m in enumerate(members_raw):
            if not isinstance(m, dict) or "userId" not in m:
                raise InvalidInput("a member needs a userId", field=f"teams[{i}].members[{j}]")
            user_id = str(m.pop("userId"))
            members.append(
                (user_id, parse_model(MemberAllocation, m, prefix=f"teams[{i}].members[{j}]"))
            )
        teams.append((team, members))
    users = []
    for i, raw in enumerate(_list(doc, "users")):
        if not isinstance(raw, dict):
            raise InvalidInput("a user must be a mapping", field=f"users[{i}]")
        org = raw.pop("org", None)
        tier = raw.pop("tier", "user")
        if not is_tier(tier):
            raise InvalidInput(f"unknown tier {tier!r}", field=f"users[{i}].tier")
        config = parse_model(QuotaConfig, raw, prefix=f"users[{i}]")
        users.append(UserEntry(config, None if org is None else str(org), tier))
    return TenantFile(orgs, teams, users)


def apply_tenants(tenants: TenantFile, call: Callable[..., Any]) -> dict[str, int]:
    """Create or update everything in ``tenants`` through ``call(method, *args, **kwargs)``
    (a quota ledger's methods). Parents before children, orgs before users.

    Returns:
        Counts of what was created and updated.
    """
    done = {"orgsCreated": 0, "orgsUpdated": 0, "teamsCreated": 0, "members": 0, "users": 0}
    for org in tenants.orgs:
        try:
            call("organization", org.org_id)
        except RLMError:
            call(
                "create_org",
                org.org_id,
                org.name,
                org.parent_id,
                org.agents,
                org.compute_hours,
                org.storage_gb,
            )
            done["orgsCreated"] += 1
        else:
            call("patch_org", org.org_id, org.agents, org.compute_hours, org.storage_gb)
            done["orgsUpdated"] += 1
    for team, members in tenants.teams:
        try:
            call("team_status", team.team_id)
        except RLMError:
            call(
                "create_team",
                team.team_id,
                team.team_name,
                team.total_agent_pool,
                team.total_compute_hours,
                team.total_storage_gb,
                team.org_id,
            )
            done["teamsCreated"] += 1
        for user_id, member in members:
            call("add_member", team.team_id, user_id, member.role)
            if member.agents_allocated is not None or member.compute_hours_allocated is not None:
                call(
                    "set_member_allocation",
                    team.team_id,
                    user_id,
                    member.agents_allocated or 0,
                    member.compute_hours_allocated or 0.0,
                )
            done["members"] += 1
    for user in tenants.users:
        call("set_user_config", user.config, tier=user.tier)
        if user.org is not None:
            call("set_user_org", user.config.user_id, user.org, tier=user.tier)
        done["users"] += 1
    return done

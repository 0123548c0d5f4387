"""Admission planning: which counters a request touches, and whether each has room.

Planning reads counters without changing them, so a refusal leaves every level as it was; the
ledger applies a plan only once every level has been checked (all or nothing).

Order of checks (the first failure is reported): the user's daily, weekly and monthly windows
and concurrency lease, the member's allocation, the team pool, then the user's org and each
ancestor up to the root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from rlm.errors import InvalidInput, QuotaExceeded
from rlm.quotas.accounts import UserAccount, UserLimits
from rlm.quotas.counters import WindowCounter, from_micro, to_micro
from rlm.quotas.inputs import check_count, check_id
from rlm.quotas.orgs import Org, OrgTree
from rlm.quotas.records import Reservation
from rlm.quotas.settings import Tier, parse_tier
from rlm.quotas.teams import Member, Team, TeamBook
from rlm.quotas.windows import PERIODS, Period, WindowStarts, iso_z

__all__ = [
    "AdmissionPlan",
    "AdmissionRequest",
    "Hold",
    "Payers",
    "charged_counters",
    "plan_admission",
    "quota_exceeded",
    "reservation_counters",
    "resolve_payers",
]


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """A validated request to admit one task.

    Attributes:
        user_id: Who is charged.
        agents: Planned agent calls (>= 1).
        tier: The user's tier.
        team_id: The team pool to charge, if any.
        org_id: The org to charge; ``None``: the org recorded for the user.
        concurrent_agents: The lease size (>= 1).
        compute: Planned micro-hours.
    """

    user_id: str
    agents: int
    tier: Tier
    team_id: str | None
    org_id: str | None
    concurrent_agents: int
    compute: int

    @classmethod
    def parse(
        cls,
        user_id: str,
        agents: int,
        tier: str,
        team_id: str | None,
        org_id: str | None,
        concurrent_agents: int,
        compute_hours: float,
    ) -> AdmissionRequest:
        """Validate raw arguments.

        Raises:
            InvalidInput: Naming the first bad field.
        """
        return cls(
            user_id=check_id(user_id, "userId"),
            agents=check_count(agents, "agentsRequested", minimum=1),
            tier=parse_tier(tier),
            team_id=None if team_id is None else check_id(team_id, "teamId"),
            org_id=None if org_id is None else check_id(org_id, "orgId"),
            concurrent_agents=check_count(concurrent_agents, "concurrentAgents", minimum=1),
            compute=to_micro(compute_hours, field="computeHours"),
        )

    def matches(self, res: Reservation) -> bool:
        """Whether ``res`` was made for this same request (for idempotent retries)."""
        return (
            res.user_id == self.user_id
            and res.agents == self.agents
            and res.team_id == self.team_id
            and (self.org_id is None or res.org_ids[:1] == (self.org_id,))
            and res.concurrent_agents == self.concurrent_agents
            and res.compute_micro == self.compute
        )


@dataclass(slots=True)
class Hold:
    """One counter an admission must fit in; ``None`` limits are tracked but not capped."""

    counter: WindowCounter
    start: datetime
    period: Period
    agents_limit: int | None
    compute_limit: int | None
    scope: str
    scope_id: str


@dataclass(slots=True)
class AdmissionPlan:
    """Everything a successful admission will touch, found before anything changes.

    Attributes:
        account: The user's account (a fresh one, not yet stored, if ``is_new``).
        is_new: Whether the account must be stored when the plan is applied.
        org_ids: The org charged, then its ancestors up to the root.
        holds: Every counter to hold the request on.
    """

    account: UserAccount
    is_new: bool
    org_ids: tuple[str, ...]
    holds: list[Hold]


def plan_admission(
    request: AdmissionRequest,
    account: UserAccount | None,
    defaults: Mapping[Tier, UserLimits],
    teams: TeamBook,
    orgs: OrgTree,
    starts: WindowStarts,
) -> AdmissionPlan:
    """Check that ``request`` fits on every level, changing nothing.

    Raises:
        QuotaExceeded: The first level without room (see the module docstring for the order).
        InvalidInput: Unknown team or org, not a member, or an org other than the user's.
    """
    user_id, agents = request.user_id, request.agents
    is_new = account is None
    if account is None:
        account = UserAccount.new(user_id, request.tier, starts)
    limits = account.limits(defaults, request.tier)
    # Resolve every level first, so a malformed request is INVALID_INPUT, never QUOTA_EXCEEDED.
    payers = resolve_payers(user_id, account, request.team_id, request.org_id, teams, orgs)
    team, member, chain = payers.team, payers.member, payers.chain

    holds = [
        Hold(
            account.windows[p],
            starts.start(p),
            p,
            limits.agents(p),
            limits.compute(p, starts.month_days),
            "user",
            user_id,
        )
        for p in PERIODS
    ]
    _fit(holds, agents, request.compute, starts)
    if account.concurrent + request.concurrent_agents > limits.max_concurrent:
        raise quota_exceeded(
            "user",
            user_id,
            "concurrentAgents",
            "concurrent",
            limits.max_concurrent,
            account.concurrent,
            request.concurrent_agents,
            # A lease has no window: it frees up when a running task ends, so "now".
            starts.now,
        )
    month = starts.monthly
    rest: list[Hold] = []
    if team is not None and member is not None:
        # An uncapped member is tracked (for the team view) but only the pool binds it.
        agents_cap = member.agents_allocated if member.allocated else None
        compute_cap = member.compute_allocated if member.allocated else None
        rest.append(
            Hold(member.usage, month, "monthly", agents_cap, compute_cap, "member", user_id)
        )
        rest.append(
            Hold(
                team.usage,
                month,
                "monthly",
                team.agent_pool,
                team.compute_pool,
                "team",
                team.team_id,
            )
        )
    for org in chain:
        rest.append(Hold(org.subtree, month, "monthly", org.agents, org.compute, "org", org.org_id))
    if chain:
        rest.append(Hold(chain[0].direct, month, "monthly", None, None, "org", chain[0].org_id))
    _fit(rest, agents, request.compute, starts)
    return AdmissionPlan(account, is_new, payers.org_ids, holds + rest)


def reservation_counters(
    res: Reservation,
    account: UserAccount,
    teams: TeamBook,
    orgs: OrgTree,
    starts: WindowStarts,
) -> list[tuple[WindowCounter, datetime]]:
    """Every counter ``res`` holds on, with the start of its current window."""
    return charged_counters(account, res.team_id, res.org_ids, teams, orgs, starts, member=True)


def charged_counters(
    account: UserAccount,
    team_id: str | None,
    org_ids: tuple[str, ...],
    teams: TeamBook,
    orgs: OrgTree,
    starts: WindowStarts,
    *,
    member: bool,
) -> list[tuple[WindowCounter, datetime]]:
    """The counters a charge of ``account``'s user lands on, with their current window starts.

    The user's daily, weekly and monthly windows, then (monthly) its membership of ``team_id``
    if ``member``, the team, each org of ``org_ids`` (subtree), and the first org's own users
    (direct).
    """
    out = [(account.windows[p], starts.start(p)) for p in PERIODS]
    month = starts.monthly
    if team_id is not None:
        team = teams.get(team_id)
        if member:
            out.append((team.member(account.user_id).usage, month))
        out.append((team.usage, month))
    chain = [orgs.get(o) for o in org_ids]
    out.extend((o.subtree, month) for o in chain)
    if chain:
        out.append((chain[0].direct, month))
    return out


@dataclass(frozen=True, slots=True)
class Payers:
    """Who a user's charge lands on besides the user itself.

    Attributes:
        team: The team whose pool is charged, if any.
        member: The user's membership of ``team``.
        chain: The org charged, then each ancestor up to the root.
    """

    team: Team | None
    member: Member | None
    chain: list[Org]

    @property
    def org_ids(self) -> tuple[str, ...]:
        """The ids of :attr:`chain`."""
        return tuple(o.org_id for o in self.chain)


def resolve_payers(
    user_id: str,
    account: UserAccount | None,
    team_id: str | None,
    org_id: str | None,
    teams: TeamBook,
    orgs: OrgTree,
) -> Payers:
    """The team and orgs charged with ``user_id``'s usage: the same rules for every charge.

    Args:
        user_id: The user.
        account: Its account (``None``: a user never seen, in no org).
        team_id: The team named by the caller (already defaulted to the user's only team).
        org_id: The org named by the caller; ``None``: the org recorded for the user.
        teams: All teams.
        orgs: The org tree.

    Raises:
        InvalidInput: Unknown team or org, not a member, or an org other than the user's.
    """
    placed = None if account is None else account.org_id
    if org_id is not None and placed not in (None, org_id):
        raise InvalidInput(
            f"user {user_id!r} belongs to org {placed!r}, not {org_id!r}",
            {"userId": user_id, "orgId": placed},
            field="orgId",
        )
    charged = org_id or placed
    chain = orgs.chain(charged) if charged is not None else []
    team = member = None
    if team_id is not None:
        team = teams.get(team_id)
        member = team.member(user_id)
    return Payers(team, member, chain)


_WHAT = {
    "agents": "agent calls",
    "computeHours": "compute hours",
    "tokens": "language-model tokens",
    "concurrentAgents": "agents at once",
}
_WHEN = {"daily": "today", "weekly": "this week", "monthly": "this month"}


def _amount(value: float) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        # A task's compute-hour estimate is often a few thousandths: two decimals would print
        # "needs 0.00 more", which reads as if nothing were needed.
        return f"{value:.2g}"
    return f"{value:,.2f}"


def quota_message(
    scope: str,
    scope_id: str,
    resource: str,
    period: str,
    limit: float,
    used: float,
    requested: float,
    reset: datetime,
) -> str:
    """What a person would say when a quota refuses a request."""
    who = f"{scope} {scope_id!r}"
    what = _WHAT.get(resource, resource)
    if resource == "concurrentAgents":
        return (
            f"{who} may hold at most {_amount(limit)} {what}: running tasks hold "
            f"{_amount(used)} and this one needs {_amount(requested)} (they free up as tasks end)"
        )
    when = _WHEN.get(period, f"this {period} window")
    return (
        f"{who} has used {_amount(used)} of its {_amount(limit)} {what} {when} ({period} quota) "
        f"and this needs {_amount(requested)} more; the quota resets at {iso_z(reset)}"
    )


def quota_exceeded(
    scope: str,
    scope_id: str,
    resource: str,
    period: str,
    limit: float,
    used: float,
    requested: float,
    reset: datetime,
) -> QuotaExceeded:
    """The ``QUOTA_EXCEEDED`` error, with ``resource, period, limit, used, resetTime``."""
    return QuotaExceeded(
        quota_message(scope, scope_id, resource, period, limit, used, requested, reset),
        {
            "resource": resource,
            "period": period,
            "limit": limit,
            "used": used,
            "requested": requested,
            "resetTime": iso_z(reset),
            "scope": scope,
            "scopeId": scope_id,
        },
    )


def _fit(holds: list[Hold], agents: int, compute: int, starts: WindowStarts) -> None:
    for hold in holds:
        held_agents, held_compute = hold.counter.held(hold.start)
        if hold.agents_limit is not None and held_agents + agents > hold.agents_limit:
            raise quota_exceeded(
                hold.scope,
                hold.scope_id,
                "agents",
                hold.period,
                hold.agents_limit,
                held_agents,
                agents,
                starts.reset(hold.period),
            )
        # Compute is charged after the fact, so an exhausted window refuses even a task that
        # plans none; a limit of 0 therefore admits nothing, as it does for agent calls.
        limit = hold.compute_limit
        if limit is not None and (held_compute >= limit or held_compute + compute > limit):
            raise quota_exceeded(
                hold.scope,
                hold.scope_id,
                "computeHours",
                hold.period,
                from_micro(limit),
                from_micro(held_compute),
                from_micro(compute),
                starts.reset(hold.period),
            )

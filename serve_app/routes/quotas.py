"""``/quotas``: user windows and checks, team pools and transfers, the enterprise org tree."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from rlm.auth.scopes import SCOPE_ADMIN, SCOPE_QUOTA_MANAGE, SCOPE_QUOTA_READ
from rlm.errors import Conflict, Forbidden, InvalidInput
from rlm.models.base import IDENTIFIER_PATTERN
from rlm.models.errors import ErrorEnvelope
from rlm.models.quotas import (
    AllocationCheck,
    AllocationDecision,
    Organization,
    OrganizationHierarchy,
    OrgQuotaUpdate,
    QuotaConfig,
    QuotaTransfer,
    TeamMember,
    TeamQuotaStatus,
    UserQuotaStatus,
)
from rlm.models.tenants import (
    MemberAllocation,
    OrgCreate,
    ProjectCreate,
    TeamCreate,
    TransferReceiptOut,
)
from rlm.models.usage import UsageHistory
from rlm.quotas.ledger_tenancy import Manager
from serve_app.deps import Caller, authenticated
from serve_app.openapi import ROUTE_ERRORS, error_responses
from serve_app.responses import FastJSON

__all__ = ["router"]

router = APIRouter(tags=["quotas"])

QuotaReader = Annotated[Caller, Depends(authenticated(SCOPE_QUOTA_READ))]
QuotaManager = Annotated[Caller, Depends(authenticated(SCOPE_QUOTA_MANAGE))]
UserId = Annotated[str, Path(alias="userId", pattern=IDENTIFIER_PATTERN)]
TeamId = Annotated[str, Path(alias="teamId", pattern=IDENTIFIER_PATTERN)]
OrgId = Annotated[str, Path(alias="orgId", pattern=IDENTIFIER_PATTERN)]
_ERRORS = error_responses(*ROUTE_ERRORS)
UsagePeriod = Annotated[
    Literal["daily", "weekly", "monthly"],
    Query(description="The quota window: today, this ISO week or this calendar month (UTC)."),
]
UsageBucket = Annotated[
    Literal["hour", "day"], Query(description="The size of each bucket of the series.")
]
#: Changes the current state may refuse though well formed (a name taken, no room left...).
_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {"model": ErrorEnvelope, "description": "Conflict with the current state (`CONFLICT`)"},
}


async def _ledger(
    request: Request, caller: Caller, method: str, *args: Any, count: bool = True, **kw: Any
) -> Any:
    """Call the engine's quota ledger, counting the request; keep its rate-limit headers.

    ``count=False`` for a second call made for the same request (tenancy lookups).
    """
    admission = caller.admission if count else None
    value, headers = await request.app.state.hv.ask("quota", method, args, kw, admission)
    if count:
        request.state.rate = headers
    return value


def _answer(request: Request, value: Any, status: int = 200) -> FastJSON:
    body = value.to_wire() if hasattr(value, "to_wire") else value
    return FastJSON(body, status_code=status, headers=getattr(request.state, "rate", None))


def _manager_org(caller: Caller) -> str:
    """The org a caller manages, if it is an admin or quota manager of one."""
    p = caller.principal
    if (p.has_scope(SCOPE_ADMIN) or p.has_scope(SCOPE_QUOTA_MANAGE)) and p.org is not None:
        return p.org
    raise Forbidden("only your own quota, unless you manage quotas in an org")


async def _govern(request: Request, caller: Caller, kind: str, entity_id: str) -> list[str]:
    """Refuse unless the caller manages the org of ``entity_id`` or one of its ancestors.

    Tenancy is the ledger's: a user belongs to the org it was placed in, a team to the org it
    was created in. Returns the entity's org chain (empty: in no org).
    """
    org = _manager_org(caller)
    try:
        chain: list[str] = await _ledger(
            request, caller, "governing_orgs", kind, entity_id, count=False
        )
    except InvalidInput:
        if kind == "org" and entity_id == org:
            raise  # the caller's own org is missing: say so
        chain = []  # unknown answers like another tenant's: names cannot be probed
    _require(org, chain, kind, entity_id)
    return chain


def _require(org: str, chain: list[str], kind: str, entity_id: str) -> None:
    """Refuse unless ``org`` is in the entity's org ``chain``."""
    if org not in chain:
        raise Forbidden(
            f"this {kind} is not in an org you manage", {f"{kind}Id": entity_id, "orgId": org}
        )


async def _target(request: Request, caller: Caller, user_id: str) -> str:
    """Whose quota the caller may touch: its own (``me`` too); others' only as an admin or
    quota manager of their org or an ancestor."""
    p = caller.principal
    if user_id in ("me", p.user_id):
        return p.user_id
    await _govern(request, caller, "user", user_id)
    return user_id


def _manager(caller: Caller) -> Manager:
    """The caller as the ledger's tenancy rules see it (they check and change in one call)."""
    p = caller.principal
    return Manager(p.user_id, p.org, p.tier)


@router.get(
    "/quotas/user/{userId}",
    response_model=UserQuotaStatus,
    responses=_ERRORS,
    summary="Get user quota status",
)
async def user_status(user_id: UserId, caller: QuotaReader, request: Request) -> Any:
    """Daily, weekly and monthly windows, and concurrent agents (``me``: the caller)."""
    target = await _target(request, caller, user_id)
    tier = caller.principal.tier if target == caller.principal.user_id else None
    return _answer(request, await _ledger(request, caller, "user_status", target, tier=tier))


@router.get(
    "/quotas/user/{userId}/usage",
    response_model=UsageHistory,
    responses=_ERRORS,
    summary="Get user usage over time (extension)",
)
async def user_usage(
    user_id: UserId,
    caller: QuotaReader,
    request: Request,
    period: UsagePeriod = "daily",
    bucket: UsageBucket = "hour",
) -> Any:
    """What the user was charged in the current ``period`` window, per ``bucket``: agent
    calls, compute hours, tokens and cost. Whose: as ``GET /quotas/user/{userId}``."""
    target = await _target(request, caller, user_id)
    history = await _ledger(request, caller, "usage_history", "user", target, period, bucket)
    return _answer(request, history)


@router.post(
    "/quotas/user/{userId}/check",
    response_model=AllocationDecision,
    responses=_ERRORS,
    summary="Check allocation (a dry run)",
)
async def check(
    user_id: UserId, body: AllocationCheck, caller: QuotaReader, request: Request
) -> Any:
    """Would ``agentsRequested`` agent calls be admitted now? Charges nothing."""
    target = await _target(request, caller, user_id)
    p = caller.principal
    tier = p.tier if target == p.user_id else "user"
    decision = await _ledger(request, caller, "check", target, body.agents_requested, tier=tier)
    return _answer(request, decision)


@router.put(
    "/quotas/user/{userId}",
    response_model=QuotaConfig,
    responses=_CHANGE_ERRORS,
    summary="Set a user's limits (extension)",
)
async def set_config(
    user_id: UserId, body: QuotaConfig, caller: QuotaManager, request: Request
) -> Any:
    """Set ``userId``'s QuotaConfig (``rlm:quota:manage``); ``body.userId`` must match."""
    target = caller.principal.user_id if user_id == "me" else user_id
    if body.user_id != target:
        # The body describes another user than the one the URL names (RFC 9110: 409).
        raise Conflict("userId in the body must match the path", field="userId")
    # One ledger call checks the tenancy (a user in no org is taken into the manager's org;
    # a manager never raises its own limits) and sets the config: no race between managers.
    config = await _ledger(request, caller, "managed_set_user_config", _manager(caller), body)
    return _answer(request, config)


@router.get(
    "/quotas/team/{teamId}",
    response_model=TeamQuotaStatus,
    responses=_ERRORS | error_responses(404),
    summary="Get team quota status",
)
async def team_status(team_id: TeamId, caller: QuotaReader, request: Request) -> Any:
    """The team's pool, usage, members and projects (members of the team, or managers)."""
    try:
        status = await _ledger(request, caller, "team_status", team_id)
    except InvalidInput:
        await _govern(request, caller, "team", team_id)  # refuses as for another tenant's
        raise
    p = caller.principal
    if not any(m.user_id == p.user_id for m in status.members):
        await _govern(request, caller, "team", team_id)  # else only its org's managers
    return _answer(request, status)


@router.get(
    "/quotas/team/{teamId}/usage",
    response_model=UsageHistory,
    responses=_ERRORS | error_responses(404),
    summary="Get team usage over time (extension)",
)
async def team_usage(
    team_id: TeamId,
    caller: QuotaReader,
    request: Request,
    period: UsagePeriod = "daily",
    bucket: UsageBucket = "hour",
) -> Any:
    """What the team's pool was charged in the current ``period`` window, per ``bucket``.
    Who may: as ``GET /quotas/team/{teamId}`` (its members, or managers of its org)."""
    await team_status(team_id, caller, request)
    history = await _ledger(
        request, caller, "usage_history", "team", team_id, period, bucket, count=False
    )
    return _answer(request, history)


@router.post(
    "/quotas/team",
    response_model=TeamQuotaStatus,
    status_code=201,
    responses=_CHANGE_ERRORS,
    summary="Create a team (extension)",
)
async def create_team(body: TeamCreate, caller: QuotaManager, request: Request) -> Any:
    """A new team with its pool (``rlm:quota:manage``), in ``orgId`` (default: the caller's
    org), which the caller must manage."""
    status = await _ledger(
        request,
        caller,
        "managed_create_team",
        _manager(caller),
        body.team_id,
        body.team_name,
        body.total_agent_pool,
        body.total_compute_hours,
        body.total_storage_gb,
        body.org_id,
    )
    return _answer(request, status, 201)


@router.put(
    "/quotas/team/{teamId}/members/{userId}",
    response_model=TeamMember,
    responses=_CHANGE_ERRORS,
    summary="Add a member and set its allocation (extension)",
)
async def put_member(
    team_id: TeamId, user_id: UserId, body: MemberAllocation, caller: QuotaManager, request: Request
) -> Any:
    """Add ``userId`` to the team (idempotent) and, when given, set its share of the pool;
    the members' allocations never add up to more than the pool. The team and the user must
    be in orgs the caller manages (a user in no org yet is placed in the caller's)."""
    member = await _ledger(
        request,
        caller,
        "managed_add_member",
        _manager(caller),
        team_id,
        user_id,
        body.role,
        body.agents_allocated,
        body.compute_hours_allocated,
    )
    return _answer(request, member)


@router.put(
    "/quotas/team/{teamId}/projects/{projectId}",
    response_model=TeamQuotaStatus,
    responses=_CHANGE_ERRORS,
    summary="Set a project's allocation (extension)",
)
async def put_project(
    team_id: TeamId,
    project_id: Annotated[str, Path(alias="projectId", pattern=IDENTIFIER_PATTERN)],
    body: ProjectCreate,
    caller: QuotaManager,
    request: Request,
) -> Any:
    """Set a project's share of the team pool (a team of an org the caller manages)."""
    status = await _ledger(
        request,
        caller,
        "managed_set_project_allocation",
        _manager(caller),
        team_id,
        project_id,
        body.agents_allocated,
        body.compute_hours_allocated,
        body.name,
    )
    return _answer(request, status)


@router.post(
    "/quotas/team/{teamId}/transfers",
    response_model=TransferReceiptOut,
    responses=_CHANGE_ERRORS,
    summary="Request quota transfer",
)
async def transfer(
    team_id: TeamId,
    body: QuotaTransfer,
    caller: QuotaManager,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Move agent and compute-hour allocation between members. Totals are conserved; the giver
    never drops below what it already used; the same ``Idempotency-Key`` answers the same."""
    receipt = await _ledger(
        request,
        caller,
        "managed_transfer",
        _manager(caller),
        team_id,
        body.from_user_id,
        body.to_user_id,
        body.agents,
        body.compute_hours,
        idempotency_key,
    )
    out = TransferReceiptOut(
        transfer_id=receipt.transfer_id,
        team_id=receipt.team_id,
        from_user_id=receipt.from_user_id,
        to_user_id=receipt.to_user_id,
        agents=receipt.agents,
        compute_hours=receipt.compute_micro / 1_000_000,
        from_agents_allocated=receipt.from_agents_allocated,
        to_agents_allocated=receipt.to_agents_allocated,
    )
    return _answer(request, out)


@router.get(
    "/quotas/enterprise/org/{orgId}/hierarchy",
    response_model=OrganizationHierarchy,
    responses=_ERRORS,
    summary="Get organization hierarchy",
)
async def hierarchy(org_id: OrgId, caller: QuotaReader, request: Request) -> Any:
    """The org, its ancestors (root first), descendants and siblings."""
    refused = Forbidden("only members of the org's tree see it", {"orgId": org_id})
    try:
        found = await _ledger(request, caller, "hierarchy", org_id)
    except InvalidInput:
        raise refused from None  # unknown answers like another tenant's: no probing for names
    p = caller.principal
    tree = {o.org_id for o in (found.org, *found.ancestors, *found.descendants)}
    if p.org not in tree:  # admins too: an org's tree is its tenants' business only
        raise refused
    return _answer(request, found)


@router.get(
    "/quotas/enterprise/org/{orgId}/usage",
    response_model=UsageHistory,
    responses=_ERRORS,
    summary="Get organization usage over time (extension)",
)
async def org_usage(
    org_id: OrgId,
    caller: QuotaReader,
    request: Request,
    period: UsagePeriod = "daily",
    bucket: UsageBucket = "hour",
) -> Any:
    """What the org's subtree was charged in the current ``period`` window, per ``bucket``.
    Managers (``rlm:admin`` or ``rlm:quota:manage``) of the org or an ancestor only."""
    await _govern(request, caller, "org", org_id)
    history = await _ledger(request, caller, "usage_history", "org", org_id, period, bucket)
    return _answer(request, history)


@router.patch(
    "/quotas/enterprise/org/{orgId}",
    response_model=Organization,
    responses=_CHANGE_ERRORS,
    summary="Update organization quotas",
)
async def patch_org(
    org_id: OrgId, body: OrgQuotaUpdate, caller: QuotaManager, request: Request
) -> Any:
    """Checked against the whole tree (child ≤ parent, Σ children ≤ parent, not below usage);
    a violating update is 400 and changes nothing. Managers of the org or an ancestor only."""
    org = await _ledger(
        request,
        caller,
        "managed_patch_org",
        _manager(caller),
        org_id,
        body.agents,
        body.compute_hours,
        body.storage_gb,
    )
    return _answer(request, org)


@router.post(
    "/quotas/enterprise/org",
    response_model=Organization,
    status_code=201,
    responses=_CHANGE_ERRORS,
    summary="Create an organization (extension)",
)
async def create_org(body: OrgCreate, caller: QuotaManager, request: Request) -> Any:
    """A new org under ``parentId`` (cycles and unknown parents are refused), which the caller
    must manage; a new root org only by a manager whose own org it is (bootstrapping)."""
    org = await _ledger(
        request,
        caller,
        "managed_create_org",
        _manager(caller),
        body.org_id,
        body.name,
        body.parent_id,
        body.agents,
        body.compute_hours,
        body.storage_gb,
    )
    return _answer(request, org, 201)

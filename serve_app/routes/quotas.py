"""``/quotas``: a user's windows, and a dry-run allocation check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from rlm.auth.scopes import SCOPE_ADMIN, SCOPE_QUOTA_MANAGE, SCOPE_QUOTA_READ
from rlm.errors import Forbidden
from rlm.models.errors import ErrorEnvelope
from rlm.models.quotas import AllocationCheck, AllocationDecision, QuotaConfig, UserQuotaStatus
from serve_app.deps import Caller, authenticated
from serve_app.responses import FastJSON

__all__ = ["router"]

router = APIRouter(tags=["quotas"])

QuotaReader = Annotated[Caller, Depends(authenticated(SCOPE_QUOTA_READ))]
QuotaManager = Annotated[Caller, Depends(authenticated(SCOPE_QUOTA_MANAGE))]
UserId = Annotated[str, Path(alias="userId", min_length=1, max_length=200)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope} for code in (400, 401, 403, 429, 500)
}


def _target(caller: Caller, user_id: str) -> str:
    """Whose quota the caller may touch: its own (``me`` too); others' only as an admin or
    quota manager of an org (org membership of the target is the operator's to set up)."""
    p = caller.principal
    if user_id in ("me", p.user_id):
        return p.user_id
    if (p.has_scope(SCOPE_ADMIN) or p.has_scope(SCOPE_QUOTA_MANAGE)) and p.org is not None:
        return user_id
    raise Forbidden("only your own quota, unless you manage quotas in an org", {"userId": user_id})


@router.get(
    "/quotas/user/{userId}",
    response_model=UserQuotaStatus,
    responses=_ERRORS,
    summary="Get user quota status",
)
async def user_status(user_id: UserId, caller: QuotaReader, request: Request) -> Any:
    """Daily, weekly and monthly windows, and concurrent agents (``me``: the caller)."""
    target = _target(caller, user_id)
    tier = caller.principal.tier if target == caller.principal.user_id else None
    status, headers = await request.app.state.hv.ask(
        "quota", "user_status", (target,), {"tier": tier}, caller.admission
    )
    return FastJSON(status.to_wire(), headers=headers)


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
    target = _target(caller, user_id)
    p = caller.principal
    decision, headers = await request.app.state.hv.ask(
        "quota",
        "check",
        (target, body.agents_requested),
        {"tier": p.tier if target == p.user_id else "user"},
        caller.admission,
    )
    return FastJSON(decision.to_wire(), headers=headers)


@router.put(
    "/quotas/user/{userId}",
    response_model=QuotaConfig,
    responses=_ERRORS,
    summary="Set a user's limits (extension)",
)
async def set_config(
    user_id: UserId, body: QuotaConfig, caller: QuotaManager, request: Request
) -> Any:
    """Set ``userId``'s QuotaConfig (``rlm:quota:manage``); ``body.userId`` must match."""
    target = _target(caller, user_id)
    if body.user_id != target:
        from rlm.errors import InvalidInput

        raise InvalidInput("userId in the body must match the path", field="userId")
    config, headers = await request.app.state.hv.ask(
        "quota", "set_user_config", (body,), {}, caller.admission
    )
    return FastJSON(config.to_wire(), headers=headers)

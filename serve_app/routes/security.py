"""``/security``: validate inputs, read the audit log, read and change the org's policies."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Path, Query, Request

from rlm.auth.scopes import SCOPE_ADMIN
from rlm.errors import Forbidden, Unauthorized
from rlm.models.security import (
    SecurityEventPage,
    SecurityPolicy,
    SecurityPolicyList,
    SecurityPolicyPatch,
    SecurityPolicyUpdate,
    SecurityValidateRequest,
    SecurityValidateResponse,
    Severity,
)
from rlm.security.audit import CURSOR_PATTERN
from rlm.security.policies import default_policy
from rlm.security.policy_bodies import PolicyBodies, policy_bodies
from rlm.security.service import MAX_EVENTS_PAGE
from rlm.security.validator import InputValidator, ValidationResult
from serve_app.authorization import authorize
from serve_app.context import request_id_of
from serve_app.deps import Bearer, Caller, admitted
from serve_app.openapi import ROUTE_ERRORS, error_responses
from serve_app.query import instant, listed
from serve_app.responses import FastJSON
from serve_app.security import Security

__all__ = ["router"]

router = APIRouter(tags=["security"])

_counted = admitted(None)


async def _token_holder(request: Request, _token: Bearer) -> Caller:
    """Any caller with a valid bearer token (whatever its scopes), its request counted."""
    caller = await _counted(request)
    if caller.principal.is_anonymous:
        raise Unauthorized("this route needs a bearer token", {"requiredScope": "any"})
    return caller


Admin = Annotated[Caller, Depends(admitted(SCOPE_ADMIN))]
TokenHolder = Annotated[Caller, Depends(_token_holder)]
PolicyId = Annotated[str, Path(alias="policyId", pattern=r"^[a-z0-9-]{1,64}$")]
_ERRORS = error_responses(*ROUTE_ERRORS)
_SEVERITY = "(" + "|".join(get_args(Severity)) + ")"
#: One or more severities, comma-separated (``high,critical``).
_SEVERITY_LIST = rf"^ *{_SEVERITY} *(, *{_SEVERITY} *)*$"
#: Texts longer than this are validated in a thread, off the event loop.
_INLINE_CHARS = 64 * 1024


def _security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


def _answer(request: Request, body: Any, status: int = 200) -> FastJSON:
    wire = body.to_wire() if hasattr(body, "to_wire") else body
    return FastJSON(wire, status_code=status, headers=getattr(request.state, "rate", None))


def _admin_org(caller: Caller) -> str:
    org = caller.principal.org
    if org is None:
        raise Forbidden(
            "security policies and events are per org: this token names no org",
            {"requiredClaim": "org"},
        )
    return org


@router.post(
    "/security/validate",
    response_model=SecurityValidateResponse,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Validate input against the security policies",
)
async def validate(body: SecurityValidateRequest, caller: TokenHolder, request: Request) -> Any:
    """Check ``input`` against the caller's org's input policies, and, with
    ``context.action``, whether ``context.userId`` (default: the caller) may do it on
    ``context.resource`` by the rules the routes apply. Deterministic; changes nothing
    (violations are recorded in the audit log unless the org's ``audit-log`` says not to).
    Any bearer token may ask."""
    principal = caller.principal
    security = _security(request)
    policies = await security.policies(principal.org)
    validator = InputValidator(policies)
    if len(body.input) > _INLINE_CHARS:
        checked = await _in_thread(validator, body.input)
    else:
        checked = validator.validate_text(body.input)
    violations = list(checked.violations)
    if body.context is not None:
        violations.extend(await authorize(request, caller, body.context))
    result = ValidationResult(
        all(v.severity != "critical" for v in violations), checked.sanitized, violations
    )
    # Nothing of the body is stored, not even a digest (a short secret's digest can be
    # brute-forced): only the action, one of a fixed list checked above.
    details = {"action": body.context.action} if body.context is not None else {}
    security.record_validation(result, policies, principal, source="validate", details=details)
    return _answer(request, result.to_response())


async def _in_thread(validator: InputValidator, text: str) -> ValidationResult:
    return await asyncio.to_thread(validator.validate_text, text)


@router.get(
    "/security/events",
    response_model=SecurityEventPage,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Get security events (the audit log)",
)
async def events(
    caller: Admin,
    request: Request,
    severity: Annotated[str | None, Query(max_length=100, pattern=_SEVERITY_LIST)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
    since: Annotated[
        str | None, Query(max_length=64, json_schema_extra={"format": "date-time"})
    ] = None,
    type: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    """The caller's org's events, newest first (``rlm:admin`` with an ``org`` claim).
    ``severity`` takes one or more (comma-separated) of info, low, medium, high, critical;
    ``type`` one or more event types; ``since`` an ISO time; ``cursor`` the ``nextCursor`` of
    the previous page."""
    org = _admin_org(caller)
    severities = listed(severity, "severity")
    security = _security(request)
    await security.backend.flush()  # what this replica recorded is in what it reads
    page = await security.backend.call(
        "events",
        org,
        limit=limit,
        severities=severities,
        since=instant(since, "since"),
        cursor=cursor,
        types=listed(type, "type"),
    )
    return _answer(request, page)


@router.get(
    "/security/policies",
    response_model=SecurityPolicyList,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="List the org's security policies (extension)",
)
async def list_policies(caller: Admin, request: Request) -> Any:
    """Every policy in force for the caller's org: defaults, and what its admins changed."""
    org = _admin_org(caller)
    return _answer(request, await _security(request).backend.call("policies", org))


async def _update(
    request: Request,
    caller: Caller,
    policy_id: str,
    body: SecurityPolicyUpdate | SecurityPolicyPatch,
) -> Any:
    org = _admin_org(caller)
    security = _security(request)
    policy: SecurityPolicy = await security.backend.call(
        "update_policy",
        org,
        policy_id,
        body,
        by=caller.principal.user_id,
        request_id=request_id_of(request),
    )
    security.forget(org)
    return _answer(request, policy)


def _policy_routes(bodies: PolicyBodies) -> None:
    """``PUT`` and ``PATCH /security/policies/<id>`` of one policy, documented with its own
    bodies (see :mod:`rlm.security.policy_bodies`)."""
    pid = bodies.policy_id

    async def put_policy(body: Any, caller: Admin, request: Request) -> Any:
        return await _update(request, caller, pid, bodies.to_update(body))

    async def patch_policy(body: Any, caller: Admin, request: Request) -> Any:
        return await _update(request, caller, pid, bodies.to_patch(body))

    # The body's model is made at run time: FastAPI reads it from the annotation.
    put_policy.__annotations__["body"] = bodies.put
    patch_policy.__annotations__["body"] = bodies.patch
    common: dict[str, Any] = {
        "response_model": SecurityPolicy,
        "response_model_exclude_none": True,
        "responses": _ERRORS,
    }
    router.put(
        f"/security/policies/{pid}",
        summary=f"Replace the {pid} policy of the org (extension)",
        description="Set ``enabled``, ``priority``, ``name`` and ``settings`` (omitted "
        "settings take their defaults) for the caller's org only; recorded in the audit log "
        "with what changed.",
        operation_id=f"put_policy_{pid.replace('-', '_')}",
        **common,
    )(put_policy)
    router.patch(
        f"/security/policies/{pid}",
        summary=f"Change the {pid} policy of the org (extension)",
        description="Change only the fields given (settings keys are merged; ``null`` "
        "restores a default) for the caller's org only; recorded in the audit log with what "
        "changed.",
        operation_id=f"patch_policy_{pid.replace('-', '_')}",
        **common,
    )(patch_policy)


for _bodies in policy_bodies():
    _policy_routes(_bodies)


# Any other id: the policy does not exist. Not in the document, which names every policy.
@router.put("/security/policies/{policyId}", include_in_schema=False)
@router.patch("/security/policies/{policyId}", include_in_schema=False)
async def unknown_policy(policy_id: PolicyId, caller: Admin) -> Any:
    """``400 INVALID_INPUT`` naming the policies there are (as before the routes were split)."""
    _admin_org(caller)
    default_policy(policy_id)  # raises for an id that is not a policy
    raise AssertionError(f"{policy_id} has its own route")  # pragma: no cover

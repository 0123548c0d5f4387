"""Security shapes: input validation, policies, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from rlm.models.base import INTEGRAL, WireModel

__all__ = [
    "PolicyCategory",
    "RESOURCE_ACTIONS",
    "SecurityAction",
    "SecurityContext",
    "SecurityEvent",
    "SecurityEventPage",
    "SecurityPolicy",
    "SecurityPolicyList",
    "SecurityPolicyPatch",
    "SecurityPolicyUpdate",
    "SecurityValidateRequest",
    "SecurityValidateResponse",
    "Severity",
    "Violation",
]

Severity = Literal["info", "low", "medium", "high", "critical"]
#: What ``POST /security/validate`` can be asked about (``rlm.security.authorization`` holds
#: the route rule of each).
SecurityAction = Literal[
    "execute",
    "create_task",
    "create_agent",
    "read_task",
    "cancel_task",
    "read_storage",
    "read_quota",
    "check_quota",
    "manage_quota",
    "read_team",
    "manage_team",
    "read_org",
    "manage_org",
    "read_security_events",
    "manage_security_policies",
]
#: The actions on one resource: ``context.resource`` names it (a taskId, userId, teamId,
#: orgId).
RESOURCE_ACTIONS: tuple[SecurityAction, ...] = (
    "read_task",
    "cancel_task",
    "read_quota",
    "check_quota",
    "manage_quota",
    "read_team",
    "manage_team",
    "read_org",
    "manage_org",
)
PolicyCategory = Literal["authentication", "authorization", "input_validation", "audit"]

_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Priority = Annotated[int, Field(ge=0, le=1000), INTEGRAL]


class SecurityContext(WireModel):
    """Who does what to which resource: ``userId`` (default: the caller; ``me`` too),
    ``action``, and ``resource``, which the actions on one resource need (the document says
    so with ``if``/``then``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "properties": {"action": {"enum": list(RESOURCE_ACTIONS)}},
                "required": ["action"],
            },
            "then": {"properties": {"resource": {"type": "string"}}, "required": ["resource"]},
        }
    )

    user_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    action: SecurityAction | None = None
    resource: Annotated[str, Field(max_length=4096)] | None = None


class SecurityValidateRequest(WireModel):
    """``POST /security/validate``'s body."""

    input: Annotated[str, Field(max_length=1_000_000)]
    context: SecurityContext | None = None


class Violation(WireModel):
    """One policy an input broke.

    ``field`` (where: ``input``, ``description``, ``input.items[3]``...), ``detector`` (what
    found it: ``bidi``, ``AWS Access Key``, ``override``...) and ``count`` are extensions.
    """

    policy_id: str
    category: str
    severity: Severity
    message: str
    field: str | None = None
    detector: str | None = None
    count: int | None = None


class SecurityValidateResponse(WireModel):
    """Whether the input may be used, and its cleaned form."""

    allowed: bool
    sanitized: str
    violations: list[Violation]


class SecurityPolicy(WireModel):
    """A named policy; ``description``, ``locked``, ``settings``, ``updatedAt`` and
    ``updatedBy`` are extensions."""

    policy_id: str
    name: str
    category: PolicyCategory
    enabled: bool
    priority: int
    description: str | None = None
    locked: bool = False
    settings: dict[str, Any] | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None


class SecurityPolicyList(WireModel):
    """``GET /security/policies``: the caller's org's policies in force."""

    org_id: str | None = None
    policies: list[SecurityPolicy]


class SecurityPolicyUpdate(WireModel):
    """``PUT /security/policies/{policyId}``: every changeable field (settings not given
    take their defaults); ``policyId`` and ``category``, when given, must match."""

    policy_id: str | None = None
    name: _Name | None = None
    category: PolicyCategory | None = None
    enabled: bool
    priority: _Priority
    settings: dict[str, Any] | None = None


class SecurityPolicyPatch(WireModel):
    """``PATCH /security/policies/{policyId}``: the fields given change; ``settings`` keys
    are merged (a ``null`` restores that setting's default)."""

    name: _Name | None = None
    enabled: bool | None = None
    priority: _Priority | None = None
    settings: dict[str, Any] | None = None


class SecurityEvent(WireModel):
    """An entry of the audit log (``GET /security/events``).

    ``type`` (``auth.unauthorized``, ``auth.forbidden``, ``rate.limited``, ``quota.refused``,
    ``policy.violation``, ``admin.change``, ``sandbox.violation``...), ``orgId``, ``seq``
    (the record's place in the hash chain) and ``digest`` are extensions.
    """

    event_id: str
    timestamp: datetime
    severity: Severity
    category: str
    message: str
    user_id: str | None = None
    details: Any = None
    type: str | None = None
    org_id: str | None = None
    seq: int | None = None
    digest: str | None = None


class SecurityEventPage(WireModel):
    """``GET /security/events``: newest first; ``nextCursor`` fetches the older ones."""

    events: list[SecurityEvent]
    next_cursor: str | None = None

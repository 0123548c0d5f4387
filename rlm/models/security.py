"""Security shapes: input validation, policies, the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from rlm.models.base import WireModel

__all__ = [
    "SecurityContext",
    "SecurityEvent",
    "SecurityPolicy",
    "SecurityValidateRequest",
    "SecurityValidateResponse",
    "Severity",
    "Violation",
]

Severity = Literal["info", "low", "medium", "high", "critical"]


class SecurityContext(WireModel):
    """Who does what to which resource."""

    user_id: str | None = None
    action: str | None = None
    resource: str | None = None


class SecurityValidateRequest(WireModel):
    """``POST /security/validate``'s body."""

    input: Annotated[str, Field(max_length=1_000_000)]
    context: SecurityContext | None = None


class Violation(WireModel):
    """One policy an input broke."""

    policy_id: str
    category: str
    severity: Severity
    message: str


class SecurityValidateResponse(WireModel):
    """Whether the input may be used, and its cleaned form."""

    allowed: bool
    sanitized: str
    violations: list[Violation]


class SecurityPolicy(WireModel):
    """A named policy."""

    policy_id: str
    name: str
    category: Literal["authentication", "authorization", "input_validation", "audit"]
    enabled: bool
    priority: int


class SecurityEvent(WireModel):
    """An entry of the audit log (``GET /security/events``)."""

    event_id: str
    timestamp: datetime
    severity: Severity
    category: str
    message: str
    user_id: str | None = None
    details: Any = None

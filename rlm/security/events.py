"""Security events: what is recorded, and the one call that records one.

Every event has a ``type`` from :data:`EVENT_TYPES` (which fixes its category and default
severity), the org and user it concerns, a sentence, and ``details``. Nothing secret is ever
put in an event: no token, key, password or request body — a body is represented by its
:func:`digest`, and :func:`scrub` replaces any value whose name sounds secret before an event
leaves the process.

Recording is one call, from anywhere, that never blocks on storage::

    from rlm.security import record_security_event

    record_security_event(
        "sandbox.violation",
        message="cell exceeded its memory cap",
        org_id="acme",
        user_id="ada",
        details={"taskId": task_id, "limit": "memory"},
    )

It hands the event to the sink this process installed (the service installs a batching sender
to the audit-log actor, :func:`rlm.runtime.security.install_event_sink`); an event recorded
before any sink is installed is logged as an error and dropped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from rlm.models.security import Severity, Violation

__all__ = [
    "EVENT_TYPES",
    "EventSink",
    "EventType",
    "SecurityEventIn",
    "digest",
    "install_sink",
    "installed_sink",
    "record_security_event",
    "record_violations",
    "scrub",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventType:
    """A kind of event: its category and the severity it has unless told otherwise."""

    category: str
    severity: Severity
    description: str


EVENT_TYPES: Final[Mapping[str, EventType]] = {
    "auth.unauthorized": EventType(
        "authentication", "medium", "a request refused 401 (the reason, never the token)"
    ),
    "auth.forbidden": EventType("authorization", "medium", "a request refused 403"),
    "rate.limited": EventType("rate_limit", "low", "a request refused 429 RATE_LIMITED"),
    "quota.refused": EventType("quota", "low", "a request refused 429 QUOTA_EXCEEDED"),
    "policy.violation": EventType(
        "input_validation", "medium", "an input broke a policy (refused when critical)"
    ),
    "admin.change": EventType(
        "audit", "info", "an admin changed quota configs, teams, orgs, policies or webhooks"
    ),
    "sandbox.violation": EventType("sandbox", "high", "an RLM sandbox broke one of its limits"),
    "audit.dropped": EventType("audit", "high", "events were dropped under overload"),
}
"""Every event type, with its category and default severity."""

_SECRET_NAMES: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "apikey",
    "api_key",
    "credential",
    "privatekey",
    "private_key",
    "cookie",
)
_MAX_STRING: Final = 1000
_MAX_DEPTH: Final = 6
_MAX_ITEMS: Final = 100


@dataclass(frozen=True, slots=True)
class SecurityEventIn:
    """An event on its way to the log (the log adds its place in the chain and digest).

    Attributes:
        type: One of :data:`EVENT_TYPES`.
        severity: ``info`` to ``critical``.
        category: The type's category.
        message: A sentence for a person.
        org_id: The org whose admins may read it (``None``: operators only, e.g. a 401 with
            no verifiable token).
        user_id: Who did it, when known.
        details: Structured facts (already :func:`scrub`-bed).
        event_id: A unique id.
        timestamp: When it happened (UTC).
    """

    type: str
    severity: Severity
    category: str
    message: str
    org_id: str | None = None
    user_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: f"sev-{uuid.uuid4().hex}")
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of(
        cls,
        type_: str,
        *,
        message: str,
        severity: Severity | None = None,
        org_id: str | None = None,
        user_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> SecurityEventIn:
        """An event of a known type, its details scrubbed.

        Raises:
            ValueError: an unknown type.
        """
        try:
            kind = EVENT_TYPES[type_]
        except KeyError:
            raise ValueError(f"unknown security event type {type_!r}") from None
        return cls(
            type=type_,
            severity=severity or kind.severity,
            category=kind.category,
            message=message[:_MAX_STRING],
            org_id=org_id,
            user_id=user_id,
            details=scrub(dict(details or {})),
        )


def digest(data: bytes | str) -> str:
    """``sha256:<hex>`` of ``data``: how a request body is represented, never itself."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def scrub(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with secret-sounding keys' values replaced by
    ``"[redacted]"``, long strings cut, and depth and size bounded."""
    if isinstance(value, Mapping):
        if depth >= _MAX_DEPTH:
            return "[nested too deep]"
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= _MAX_ITEMS:
                out["…"] = f"{len(value) - _MAX_ITEMS} more"
                break
            name = str(k)
            lowered = name.lower().replace("-", "_")
            secret = any(s in lowered for s in _SECRET_NAMES)
            out[name[:200]] = "[redacted]" if secret and v is not None else scrub(v, depth + 1)
        return out
    if isinstance(value, list | tuple):
        if depth >= _MAX_DEPTH:
            return "[nested too deep]"
        return [scrub(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
    if isinstance(value, str):
        return value[:_MAX_STRING]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:_MAX_STRING]


class EventSink(Protocol):
    """Where :func:`record_security_event` sends events (must not block on storage)."""

    def emit(self, event: SecurityEventIn) -> None:
        """Take one event."""
        ...


_sink: EventSink | None = None
_sink_lock = threading.Lock()


def install_sink(sink: EventSink | None) -> EventSink | None:
    """Make ``sink`` this process's event sink (``None`` removes it); returns the previous."""
    global _sink
    with _sink_lock:
        previous, _sink = _sink, sink
    return previous


def installed_sink() -> EventSink | None:
    """This process's event sink, if one is installed."""
    return _sink


def record_security_event(
    type_: str,
    *,
    message: str,
    severity: Severity | None = None,
    org_id: str | None = None,
    user_id: str | None = None,
    details: Mapping[str, Any] | None = None,
    sink: EventSink | None = None,
) -> SecurityEventIn:
    """Record one security event (the call for every module: sandbox violations, webhook
    changes...). Returns at once; the event is written off this thread.

    Args:
        type_: One of :data:`EVENT_TYPES` (``sandbox.violation``, ``admin.change``...).
        message: A sentence for a person (no secret in it).
        severity: Overrides the type's default.
        org_id: The org whose admins may read the event.
        user_id: Who did it.
        details: Facts (scrubbed of secret-sounding keys; never put a body or a token in).
        sink: Where to send it (default: the process's installed sink).

    Returns:
        The event as recorded.

    Raises:
        ValueError: an unknown type.
    """
    event = SecurityEventIn.of(
        type_,
        message=message,
        severity=severity,
        org_id=org_id,
        user_id=user_id,
        details=details,
    )
    target = sink or _sink
    if target is None:
        log.error("security event %s (%s) dropped: no event sink installed", event.type, message)
    else:
        target.emit(event)
    return event


def record_violations(
    violations: Iterable[Violation],
    *,
    source: str,
    org_id: str | None,
    user_id: str | None,
    refused: bool,
    min_severity: Severity = "low",
    details: Mapping[str, Any] | None = None,
    sink: EventSink | None = None,
) -> SecurityEventIn | None:
    """Record the violations one input had as one ``policy.violation`` event (its severity
    the worst one), leaving out those below ``min_severity`` (the org's ``audit-log``
    setting). Returns the event, or ``None`` when nothing was worth recording."""
    from rlm.security.policies import severity_at_least

    kept = [v for v in violations if severity_at_least(v.severity, min_severity)]
    if not kept:
        return None
    from rlm.security.policies import SEVERITY_RANK

    worst = max(kept, key=lambda v: SEVERITY_RANK[v.severity])
    listed = [
        {k: w for k, w in v.to_wire().items() if k != "message"} | {"message": v.message}
        for v in kept
    ]
    verdict = "refused" if refused else "allowed"
    return record_security_event(
        "policy.violation",
        message=f"{source}: {verdict}; {worst.policy_id}: {worst.message}",
        severity=worst.severity,
        org_id=org_id,
        user_id=user_id,
        details={"source": source, "refused": refused, "violations": listed, **(details or {})},
        sink=sink,
    )

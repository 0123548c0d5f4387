"""Webhook shapes: the payloads receivers get, and the registration and delivery resources.

The payloads (:class:`WebhookEvent`) are the API document's; the resources under
``/v1/webhooks`` are extensions (the document promises webhooks but not how to register them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from rlm.models.base import INTEGRAL, WireModel
from rlm.models.tasks import ExecuteResponse

__all__ = [
    "Delivery",
    "DeliveryAttempt",
    "QuotaAlertData",
    "SecretRotated",
    "SecretRotation",
    "TaskCompletedData",
    "Webhook",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookEvent",
    "WebhookEventType",
    "WebhookScope",
    "WebhookTestData",
    "WebhookUpdate",
]

#: The events a webhook may subscribe to.
WebhookEventType = Literal["task.completed", "quota.threshold_exceeded"]
#: ``user``: the owner's own events; ``org``: every member's events (``rlm:admin`` only).
WebhookScope = Literal["user", "org"]

_Url = Annotated[str, Field(min_length=1, max_length=2048)]
_Events = Annotated[
    list[WebhookEventType],
    Field(min_length=1, max_length=8, json_schema_extra={"uniqueItems": True}),
]
_Description = Annotated[str, Field(max_length=500)]


class TaskCompletedData(WireModel):
    """``task.completed``'s data: sent for every terminal status (``completed``, ``failed``,
    ``cancelled``). ``result`` is the task's ``ExecuteResponse`` (a superset of the document's
    ``OOLONGResult``); ``outputOmitted`` (extension) is true when ``result.output`` was left out
    for its size."""

    task_id: str
    status: Literal["completed", "failed", "cancelled"]
    result: ExecuteResponse | None = None
    output_omitted: bool | None = None


class QuotaAlertData(WireModel):
    """``quota.threshold_exceeded``'s data: a user's window (``userId``, as the document
    shows), or (extensions) a team's pool (``teamId``, with its ``orgId``) or an org's caps
    (``orgId``: its whole subtree's usage) this month."""

    user_id: str | None = None
    team_id: str | None = None
    org_id: str | None = None
    threshold: int
    period: Literal["daily", "weekly", "monthly"]
    usage: Any = None


class WebhookTestData(WireModel):
    """``webhook.test``'s data (extension): the ping ``POST .../test`` sends."""

    webhook_id: str
    message: str


class WebhookEvent(WireModel):
    """One event as delivered (the body of the POST a receiver gets)."""

    event: Literal["task.completed", "quota.threshold_exceeded", "webhook.test"]
    timestamp: datetime
    data: TaskCompletedData | QuotaAlertData | WebhookTestData


def _unique(events: list[WebhookEventType] | None) -> list[WebhookEventType] | None:
    if events is not None and len(set(events)) != len(events):
        raise ValueError("events must not repeat")
    return events


class WebhookCreate(WireModel):
    """``POST /v1/webhooks``'s body."""

    url: _Url
    events: _Events
    description: _Description | None = None
    scope: WebhookScope = "user"

    _events_unique = field_validator("events")(_unique)


class WebhookUpdate(WireModel):
    """``PATCH /v1/webhooks/{webhookId}``'s body: only the fields given change.

    ``enabled: true`` re-enables a disabled webhook (its run of failures is forgotten);
    ``enabled: false`` disables it (its pending deliveries end ``failed``).
    """

    url: _Url | None = None
    events: _Events | None = None
    description: _Description | None = None
    enabled: bool | None = None

    _events_unique = field_validator("events")(_unique)


class Webhook(WireModel):
    """A registered webhook (never its secret)."""

    webhook_id: str
    url: str
    events: list[WebhookEventType]
    description: str | None = None
    scope: WebhookScope
    owner_id: str
    org_id: str | None = None
    status: Literal["active", "disabled"]
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    """The answer to a registration: the webhook and its signing ``secret``, shown only once."""

    secret: str


class SecretRotation(WireModel):
    """``POST /v1/webhooks/{webhookId}/rotate-secret``'s optional body.

    ``graceSeconds``: how long the current secret(s) keep signing next to the new one (default
    the service's ``RLM_WEBHOOKS__SECRET_GRACE_S``, one day; 0 stops them at once).
    """

    grace_seconds: Annotated[int, Field(ge=0, le=7 * 86_400), INTEGRAL] | None = None


class SecretRotated(WireModel):
    """The new secret (shown only once) and until when the previous one still signs."""

    webhook_id: str
    secret: str
    previous_secret_expires_at: datetime | None = None


class DeliveryAttempt(WireModel):
    """One attempt to deliver an event."""

    attempt: int
    at: datetime
    status_code: int | None = None
    latency_ms: float
    error: str | None = None


class Delivery(WireModel):
    """One event for one webhook, and how its delivery went.

    ``eventId`` is the ``webhook-id`` header: the same on every attempt and retry.
    """

    delivery_id: str
    webhook_id: str
    event_id: str
    event: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    created_at: datetime
    expires_at: datetime
    next_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    attempt_log: list[DeliveryAttempt] = Field(default_factory=list)

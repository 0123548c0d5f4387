"""Every API call as data: method, path, body, headers, and how to read the answer.

The sync and async clients send the same :class:`Call` objects, so each endpoint's wire
details (camelCase bodies, query parameters, headers, response parsing, whether a repeat is
safe) are written once, here, and tested without a network.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from rlm.models import (
    AllocationCheck,
    AllocationDecision,
    CancelResponse,
    Delivery,
    ExecuteRequest,
    Organization,
    OrganizationHierarchy,
    OrgQuotaUpdate,
    QuotaConfig,
    QuotaTransfer,
    SecurityContext,
    SecurityEvent,
    SecurityEventPage,
    SecurityPolicy,
    SecurityPolicyList,
    SecurityPolicyPatch,
    SecurityPolicyUpdate,
    SecurityValidateRequest,
    SecurityValidateResponse,
    StorageReadRequest,
    TaskPage,
    TaskStatus,
    TeamMember,
    TeamQuotaStatus,
    Trajectory,
    UsageHistory,
    UserQuotaStatus,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookUpdate,
    parse_model,
)
from rlm.models.tenants import MemberAllocation, OrgCreate, ProjectCreate, TeamCreate
from rlm.models.webhooks import SecretRotated, SecretRotation
from rlm_hypervisor._errors import unexpected_response
from rlm_hypervisor.result import ExecuteResult

__all__ = [
    "AsyncSend",
    "Call",
    "DEFAULT_SERVER_TASK_TIMEOUT_S",
    "EXECUTE_GRACE_S",
    "STREAM_READ_TIMEOUT_S",
    "Send",
    "cancel_task",
    "check_allocation",
    "create_org",
    "create_team",
    "create_webhook",
    "delete_webhook",
    "execute",
    "get_delivery",
    "get_task",
    "get_webhook",
    "health",
    "list_deliveries",
    "list_tasks",
    "list_tasks_page",
    "list_webhooks",
    "org_hierarchy",
    "patch_security_policy",
    "ping_webhook",
    "put_security_policy",
    "retry_delivery",
    "rotate_webhook_secret",
    "security_events",
    "security_events_page",
    "security_policies",
    "set_member",
    "set_project",
    "set_user_config",
    "storage_read",
    "task_events",
    "task_trajectory",
    "team_quota",
    "transfer",
    "update_org",
    "update_webhook",
    "usage_history",
    "user_quota",
    "validate_input",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
M = TypeVar("M", bound=BaseModel)

#: How long the server lets a task without ``timeoutMs`` run (``Settings.request_timeout_s``).
DEFAULT_SERVER_TASK_TIMEOUT_S = 600.0
#: Extra read time over a task's budget, so the server's TIMEOUT answer wins the race.
EXECUTE_GRACE_S = 10.0
#: How long an event stream may stay silent before it is taken for dead and reconnected
#: (the server sends a keep-alive every ~15 s).
STREAM_READ_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T_co]):
    """One request and the reader of its successful answer.

    Attributes:
        method: The HTTP method.
        path: The path under the base URL, ids already percent-encoded.
        parse: Turns a 2xx response into the value the SDK method returns.
        json: The JSON body, if any.
        params: Query parameters.
        headers: Headers added to the client's own.
        idempotent: Whether repeating the call after a 5xx or a lost answer is safe.
        timeout: A per-call timeout overriding the client's (``None``: the client's).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T_co]
    json: Any = None
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] | None = None
    idempotent: bool = True
    timeout: httpx.Timeout | None = None


class Send(Protocol):
    """What a sync resource needs from its client: send a call, get its value."""

    def __call__(self, call: Call[T], /) -> T: ...


class AsyncSend(Protocol):
    """What an async resource needs from its client."""

    def __call__(self, call: Call[T], /) -> Awaitable[T]: ...


def _segment(value: str) -> str:
    # Ids go into the path; encode "/" and friends so an id cannot address another resource.
    return quote(str(value), safe="")


def _json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError as err:
        raise unexpected_response(response, "JSON document", str(err)) from None


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def _validate(response: httpx.Response, tp: Any, data: Any, what: str) -> Any:
    # Lax on the way in (datetimes arrive as strings; the wire models are strict for requests).
    try:
        return _adapter(tp).validate_python(data, strict=False)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise unexpected_response(response, what, f"{where}: {first['msg']}") from None


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        result: M = _validate(response, cls, _json(response), cls.__name__)
        return result

    return parse


def _object(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    if not isinstance(body, dict):
        raise unexpected_response(response, "JSON object", f"got {type(body).__name__}")
    return body


def _list_of(cls: type[M], key: str) -> Callable[[httpx.Response], list[M]]:
    # Lists arrive as {"<key>": [...]}; a bare array is accepted too.
    def parse(response: httpx.Response) -> list[M]:
        body = _json(response)
        items = body.get(key) if isinstance(body, dict) else body
        tp = list[cls]  # type: ignore[valid-type]
        result: list[M] = _validate(response, tp, items, f"list of {cls.__name__}")
        return result

    return parse


def _execute_result(response: httpx.Response) -> ExecuteResult:
    body = _object(response)
    try:
        return ExecuteResult.model_validate(body, strict=False)
    except ValidationError:
        pass
    # A 202 may carry only {"taskId", "status"}: read those two and nothing else.
    task_id, status = body.get("taskId"), body.get("status", "pending")
    if not isinstance(task_id, str) or status not in ("pending", "running"):
        raise unexpected_response(response, "ExecuteResponse", "no taskId and status")
    return ExecuteResult.pending(task_id, status)


def _bytes(response: httpx.Response) -> bytes:
    content_type = response.headers.get("Content-Type", "")
    if not content_type.startswith("application/json"):
        return response.content
    # A server that ignored "Accept: application/octet-stream" answers the JSON form.
    data = _object(response).get("data")
    if not isinstance(data, str):
        raise unexpected_response(response, "StorageReadResponse", "data: not a string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise unexpected_response(response, "StorageReadResponse", f"data: {err}") from None


def execute(
    request: Mapping[str, Any] | ExecuteRequest,
    *,
    respond_async: bool,
    timeout: float,
    idempotency_key: str | None = None,
) -> Call[ExecuteResult]:
    """``POST /execute`` with an ``Idempotency-Key``.

    The request is validated here (raising :class:`~rlm.errors.InvalidInput` before any
    network traffic) and sent in camelCase. A synchronous execute holds the connection for the
    whole task, so its read timeout is stretched to the task's budget (``options.timeoutMs``,
    else the server's default) plus a grace; connect and write keep ``timeout``.

    Without a key from the caller one is generated. The same key goes with every repeat of
    this call, so the client's own retries (after a 5xx or a lost answer) answer the task the
    first attempt created instead of running and billing it again: that is what makes the call
    idempotent.

    Args:
        request: An ``ExecuteRequest`` or its dict (camelCase or snake_case keys).
        respond_async: Ask for ``202 {"taskId", "status": "pending"}`` instead of the result.
        timeout: The client's per-request timeout in seconds.
        idempotency_key: The key (1-200 printable ASCII characters); default a new UUID.
    """
    req = parse_model(ExecuteRequest, request)
    key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
    headers: dict[str, str] = {"Idempotency-Key": key}
    http_timeout: httpx.Timeout | None = None
    if respond_async:
        req = req.model_copy(update={"options": req.options.model_copy(update={"async_": True})})
        headers["Prefer"] = "respond-async"
    elif not req.options.async_:
        budget_s = (
            req.options.timeout_ms / 1000.0
            if req.options.timeout_ms is not None
            else DEFAULT_SERVER_TASK_TIMEOUT_S
        )
        http_timeout = httpx.Timeout(timeout, read=max(timeout, budget_s + EXECUTE_GRACE_S))
    return Call(
        "POST",
        "/execute",
        _execute_result,
        json=req.to_wire(),
        headers=headers,
        timeout=http_timeout,
    )


def health() -> Call[dict[str, Any]]:
    """``GET /health`` (needs no credentials)."""
    return Call("GET", "/health", _object)


def get_task(task_id: str) -> Call[TaskStatus]:
    """``GET /tasks/{taskId}``."""
    return Call("GET", f"/tasks/{_segment(task_id)}", _model(TaskStatus))


def cancel_task(task_id: str) -> Call[CancelResponse]:
    """``POST /tasks/{taskId}/cancel`` (idempotent: a second cancel changes nothing)."""
    return Call("POST", f"/tasks/{_segment(task_id)}/cancel", _model(CancelResponse))


def _task_filters(
    limit: int,
    status: str | Sequence[str] | None,
    type_: str | None,
    operation: str | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None = None,
) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": limit}
    if status is not None:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    for name, value in (("type", type_), ("operation", operation), ("cursor", cursor)):
        if value is not None:
            params[name] = value
    for name, instant in (("since", since), ("until", until)):
        if instant is not None:
            params[name] = instant.isoformat()
    return params


def list_tasks(
    limit: int,
    status: str | Sequence[str] | None = None,
    type_: str | None = None,
    operation: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Call[list[TaskStatus]]:
    """``GET /tasks`` (an extension) answering ``{"tasks": [...]}``: the first page."""
    params = _task_filters(limit, status, type_, operation, since, until)
    return Call("GET", "/tasks", _list_of(TaskStatus, "tasks"), params=params)


def list_tasks_page(
    limit: int,
    status: str | Sequence[str] | None = None,
    type_: str | None = None,
    operation: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
) -> Call[TaskPage]:
    """``GET /tasks`` with every filter: one page and its ``nextCursor``."""
    params = _task_filters(limit, status, type_, operation, since, until, cursor)
    return Call("GET", "/tasks", _model(TaskPage), params=params)


def task_events(task_id: str, last_event_id: int | None) -> Call[None]:
    """``GET /tasks/{taskId}/events`` (SSE), resuming after ``last_event_id``.

    Sent as a stream (see :mod:`rlm_hypervisor._events`), not through ``parse``; its read
    timeout outlasts the server's keep-alive interval.
    """
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)

    def parse(response: httpx.Response) -> None:  # pragma: no cover - streamed instead
        raise unexpected_response(response, "event stream", "read as a stream")

    return Call(
        "GET",
        f"/tasks/{_segment(task_id)}/events",
        parse,
        headers=headers,
        timeout=httpx.Timeout(30.0, read=STREAM_READ_TIMEOUT_S),
    )


def task_trajectory(task_id: str) -> Call[Trajectory]:
    """``GET /tasks/{taskId}/trajectory`` (extension)."""
    return Call("GET", f"/tasks/{_segment(task_id)}/trajectory", _model(Trajectory))


def user_quota(user_id: str | None) -> Call[UserQuotaStatus]:
    """``GET /quotas/user/{userId}``; ``None`` asks for ``me``, the token's own user."""
    user = "me" if user_id is None else _segment(user_id)
    return Call("GET", f"/quotas/user/{user}", _model(UserQuotaStatus))


def usage_history(
    level: str, entity_id: str | None, period: str, bucket: str
) -> Call[UsageHistory]:
    """``GET /quotas/{user|team|enterprise/org}/{id}/usage`` (extension); a user ``None`` asks
    for ``me``."""
    if level not in ("user", "team", "org"):
        raise ValueError(f"level must be user, team or org, got {level!r}")
    if entity_id is None and level != "user":
        raise ValueError(f"a {level} usage needs its id")
    where = {"user": "user", "team": "team", "org": "enterprise/org"}[level]
    path = f"/quotas/{where}/{'me' if entity_id is None else _segment(entity_id)}/usage"
    params = {"period": period, "bucket": bucket}
    return Call("GET", path, _model(UsageHistory), params=params)


def check_allocation(
    user_id: str, agents_requested: int, session_id: str | None
) -> Call[AllocationDecision]:
    """``POST /quotas/user/{userId}/check`` (a dry run, so safe to repeat)."""
    body = parse_model(
        AllocationCheck, {"agents_requested": agents_requested, "session_id": session_id}
    )
    return Call(
        "POST",
        f"/quotas/user/{_segment(user_id)}/check",
        _model(AllocationDecision),
        json=body.to_wire(),
    )


def team_quota(team_id: str) -> Call[TeamQuotaStatus]:
    """``GET /quotas/team/{teamId}``."""
    return Call("GET", f"/quotas/team/{_segment(team_id)}", _model(TeamQuotaStatus))


def transfer(
    team_id: str,
    from_user_id: str,
    to_user_id: str,
    agents: int,
    compute_hours: float,
    idempotency_key: str | None,
) -> Call[dict[str, Any]]:
    """``POST /quotas/team/{teamId}/transfers`` with an ``Idempotency-Key``.

    Without a key from the caller one is generated, so the client's own retries (after a 5xx
    or a lost answer) cannot move the quota twice; that is what makes the call idempotent.
    """
    body = parse_model(
        QuotaTransfer,
        {
            "from_user_id": from_user_id,
            "to_user_id": to_user_id,
            "agents": agents,
            "compute_hours": compute_hours,
        },
    )
    key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
    return Call(
        "POST",
        f"/quotas/team/{_segment(team_id)}/transfers",
        _object,
        json=body.to_wire(),
        headers={"Idempotency-Key": key},
    )


def org_hierarchy(org_id: str) -> Call[OrganizationHierarchy]:
    """``GET /quotas/enterprise/org/{orgId}/hierarchy``."""
    return Call(
        "GET",
        f"/quotas/enterprise/org/{_segment(org_id)}/hierarchy",
        _model(OrganizationHierarchy),
    )


def update_org(
    org_id: str, agents: int | None, compute_hours: float | None, storage_gb: float | None
) -> Call[dict[str, Any]]:
    """``PATCH /quotas/enterprise/org/{orgId}``: only the given limits are sent.

    Idempotent: it sets absolute limits, so a repeat leaves the same state.
    """
    body = parse_model(
        OrgQuotaUpdate,
        {"agents": agents, "compute_hours": compute_hours, "storage_gb": storage_gb},
    )
    return Call("PATCH", f"/quotas/enterprise/org/{_segment(org_id)}", _object, json=body.to_wire())


def set_user_config(config: QuotaConfig | Mapping[str, Any]) -> Call[QuotaConfig]:
    """``PUT /quotas/user/{userId}`` (extension): a user's limits; a repeat sets the same."""
    body = config if isinstance(config, QuotaConfig) else parse_model(QuotaConfig, config)
    return Call(
        "PUT", f"/quotas/user/{_segment(body.user_id)}", _model(QuotaConfig), json=body.to_wire()
    )


def create_team(team: TeamCreate | Mapping[str, Any]) -> Call[TeamQuotaStatus]:
    """``POST /quotas/team`` (extension). Not repeated after a lost answer: a second create
    is refused (the team exists), which would hide that the first one worked."""
    body = team if isinstance(team, TeamCreate) else parse_model(TeamCreate, team)
    return Call(
        "POST", "/quotas/team", _model(TeamQuotaStatus), json=body.to_wire(), idempotent=False
    )


def set_member(
    team_id: str,
    user_id: str,
    role: str,
    agents_allocated: int | None,
    compute_hours_allocated: float | None,
) -> Call[TeamMember]:
    """``PUT /quotas/team/{teamId}/members/{userId}`` (extension): join, and set a share."""
    body = parse_model(
        MemberAllocation,
        {
            "role": role,
            "agents_allocated": agents_allocated,
            "compute_hours_allocated": compute_hours_allocated,
        },
    )
    return Call(
        "PUT",
        f"/quotas/team/{_segment(team_id)}/members/{_segment(user_id)}",
        _model(TeamMember),
        json=body.to_wire(),
    )


def set_project(
    team_id: str, project_id: str, agents_allocated: int, compute_hours_allocated: float, name: str
) -> Call[TeamQuotaStatus]:
    """``PUT /quotas/team/{teamId}/projects/{projectId}`` (extension): a project's share."""
    body = parse_model(
        ProjectCreate,
        {
            "name": name,
            "agents_allocated": agents_allocated,
            "compute_hours_allocated": compute_hours_allocated,
        },
    )
    return Call(
        "PUT",
        f"/quotas/team/{_segment(team_id)}/projects/{_segment(project_id)}",
        _model(TeamQuotaStatus),
        json=body.to_wire(),
    )


def create_org(org: OrgCreate | Mapping[str, Any]) -> Call[Organization]:
    """``POST /quotas/enterprise/org`` (extension); not repeated, like :func:`create_team`."""
    body = org if isinstance(org, OrgCreate) else parse_model(OrgCreate, org)
    return Call(
        "POST",
        "/quotas/enterprise/org",
        _model(Organization),
        json=body.to_wire(),
        idempotent=False,
    )


def storage_read(connector: str, key: str, start: int, end: int, method: str) -> Call[bytes]:
    """``POST /storage/read`` asking for the raw bytes (``Accept: application/octet-stream``)."""
    body = parse_model(
        StorageReadRequest,
        {"connector": connector, "key": key, "start": start, "end": end, "method": method},
    )
    return Call(
        "POST",
        "/storage/read",
        _bytes,
        json=body.to_wire(),
        headers={"Accept": "application/octet-stream"},
    )


def validate_input(
    text: str, context: dict[str, Any] | SecurityContext | None
) -> Call[SecurityValidateResponse]:
    """``POST /security/validate`` (a check with no effect on the input, so safe to repeat)."""
    body = parse_model(SecurityValidateRequest, {"input": text, "context": context})
    return Call("POST", "/security/validate", _model(SecurityValidateResponse), json=body.to_wire())


def security_events(severity: str | None, limit: int) -> Call[list[SecurityEvent]]:
    """``GET /security/events?severity=&limit=`` answering ``{"events": [...]}`` or a list."""
    params: dict[str, str | int] = {"limit": limit}
    if severity is not None:
        params["severity"] = severity
    return Call("GET", "/security/events", _list_of(SecurityEvent, "events"), params=params)


def security_events_page(
    severity: str | None,
    limit: int,
    cursor: str | None,
    since: datetime | None,
    type_: str | None,
) -> Call[SecurityEventPage]:
    """``GET /security/events`` with every filter: one page and its ``nextCursor``."""
    params: dict[str, str | int] = {"limit": limit}
    for name, value in (("severity", severity), ("cursor", cursor), ("type", type_)):
        if value is not None:
            params[name] = value
    if since is not None:
        params["since"] = since.isoformat()
    return Call("GET", "/security/events", _model(SecurityEventPage), params=params)


def security_policies() -> Call[SecurityPolicyList]:
    """``GET /security/policies`` (extension)."""
    return Call("GET", "/security/policies", _model(SecurityPolicyList))


def put_security_policy(
    policy_id: str, policy: SecurityPolicyUpdate | Mapping[str, Any]
) -> Call[SecurityPolicy]:
    """``PUT /security/policies/{policyId}`` (extension; the same body twice is the same)."""
    body = parse_model(SecurityPolicyUpdate, policy)
    return Call(
        "PUT",
        f"/security/policies/{quote(policy_id, safe='')}",
        _model(SecurityPolicy),
        json=body.to_wire(),
    )


def patch_security_policy(
    policy_id: str, changes: SecurityPolicyPatch | Mapping[str, Any]
) -> Call[SecurityPolicy]:
    """``PATCH /security/policies/{policyId}`` (extension; setting fields is repeatable)."""
    body = parse_model(SecurityPolicyPatch, changes)
    return Call(
        "PATCH",
        f"/security/policies/{quote(policy_id, safe='')}",
        _model(SecurityPolicy),
        json=body.to_wire(exclude_unset=True, exclude_none=False),
    )


def _nothing(response: httpx.Response) -> None:
    return None


def create_webhook(body: WebhookCreate | Mapping[str, Any]) -> Call[WebhookCreated]:
    """``POST /webhooks`` (extension). Not repeated after a lost answer: a second call would
    register a second webhook (with another secret)."""
    model = body if isinstance(body, WebhookCreate) else parse_model(WebhookCreate, body)
    return Call("POST", "/webhooks", _model(WebhookCreated), json=model.to_wire(), idempotent=False)


def list_webhooks() -> Call[list[Webhook]]:
    """``GET /webhooks`` answering ``{"webhooks": [...]}``."""
    return Call("GET", "/webhooks", _list_of(Webhook, "webhooks"))


def get_webhook(webhook_id: str) -> Call[Webhook]:
    """``GET /webhooks/{webhookId}``."""
    return Call("GET", f"/webhooks/{_segment(webhook_id)}", _model(Webhook))


def update_webhook(webhook_id: str, patch: WebhookUpdate | Mapping[str, Any]) -> Call[Webhook]:
    """``PATCH /webhooks/{webhookId}``: only the fields given are sent (a repeat sets the same)."""
    model = patch if isinstance(patch, WebhookUpdate) else parse_model(WebhookUpdate, patch)
    body = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return Call("PATCH", f"/webhooks/{_segment(webhook_id)}", _model(Webhook), json=body)


def delete_webhook(webhook_id: str) -> Call[None]:
    """``DELETE /webhooks/{webhookId}`` (204). Not repeated: a repeat answers 404 and would
    hide that the first one worked."""
    return Call("DELETE", f"/webhooks/{_segment(webhook_id)}", _nothing, idempotent=False)


def rotate_webhook_secret(webhook_id: str, grace_seconds: int | None) -> Call[SecretRotated]:
    """``POST /webhooks/{webhookId}/rotate-secret``. Not repeated: a second rotation would
    replace the secret the first one answered with."""
    body = parse_model(SecretRotation, {"grace_seconds": grace_seconds}).to_wire()
    return Call(
        "POST",
        f"/webhooks/{_segment(webhook_id)}/rotate-secret",
        _model(SecretRotated),
        json=body,
        idempotent=False,
    )


def ping_webhook(webhook_id: str) -> Call[Delivery]:
    """``POST /webhooks/{webhookId}/test``: a ping, answered once its first attempt ended."""
    return Call(
        "POST", f"/webhooks/{_segment(webhook_id)}/test", _model(Delivery), idempotent=False
    )


def list_deliveries(webhook_id: str, status: str | None, limit: int) -> Call[list[Delivery]]:
    """``GET /webhooks/{webhookId}/deliveries?status=&limit=`` answering
    ``{"deliveries": [...]}``."""
    params: dict[str, str | int] = {"limit": limit}
    if status is not None:
        params["status"] = status
    return Call(
        "GET",
        f"/webhooks/{_segment(webhook_id)}/deliveries",
        _list_of(Delivery, "deliveries"),
        params=params,
    )


def get_delivery(webhook_id: str, delivery_id: str) -> Call[Delivery]:
    """``GET /webhooks/{webhookId}/deliveries/{deliveryId}`` (extension)."""
    path = f"/webhooks/{_segment(webhook_id)}/deliveries/{_segment(delivery_id)}"
    return Call("GET", path, _model(Delivery))


def retry_delivery(webhook_id: str, delivery_id: str) -> Call[Delivery]:
    """``POST /webhooks/{webhookId}/deliveries/{deliveryId}/retry`` (202): queued again now,
    same ``webhook-id`` (a repeat queues the same delivery again: safe)."""
    path = f"/webhooks/{_segment(webhook_id)}/deliveries/{_segment(delivery_id)}/retry"
    return Call("POST", path, _model(Delivery))

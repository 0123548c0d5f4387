"""``/webhooks`` (extension): register endpoints for ``task.completed`` and
``quota.threshold_exceeded``, rotate their secrets, ping them, read and retry deliveries.

Every route needs ``rlm:execute``: a caller manages its own webhooks; an ``rlm:admin`` also
its org's, and only it may create org-wide ones. Another tenant's webhook answers 404
``WEBHOOK_NOT_FOUND``. The delivery worker actor serves these calls (the core only counts the
request against the caller's rate limits).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from rlm.auth.scopes import SCOPE_EXECUTE
from rlm.models.webhooks import (
    Delivery,
    SecretRotated,
    SecretRotation,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookUpdate,
)
from serve_app.deps import Caller, admitted
from serve_app.openapi import error_responses
from serve_app.responses import FastJSON

__all__ = ["router"]

router = APIRouter(tags=["webhooks"])

Owner = Annotated[Caller, Depends(admitted(SCOPE_EXECUTE))]
WebhookId = Annotated[str, Path(alias="webhookId", min_length=1, max_length=200)]
DeliveryId = Annotated[str, Path(alias="deliveryId", min_length=1, max_length=200)]
_ERRORS = error_responses(400, 401, 403, 404, 429, 500)


async def _ask(request: Request, caller: Caller, method: str, *args: Any) -> Any:
    return await request.app.state.hv.ask_webhooks(method, caller.viewer, *args)


def _answer(request: Request, value: Any, status: int = 200) -> FastJSON:
    body = value.to_wire() if hasattr(value, "to_wire") else value
    return FastJSON(body, status_code=status, headers=getattr(request.state, "rate", None))


@router.post(
    "/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    responses=_ERRORS,
    summary="Register a webhook",
)
async def create_webhook(body: WebhookCreate, caller: Owner, request: Request) -> Any:
    """Register an endpoint for events; the answer carries its signing ``secret``, shown only
    this once. ``scope: "org"`` (``rlm:admin``) receives every member's events of the org."""
    return _answer(request, await _ask(request, caller, "create", body), 201)


@router.get("/webhooks", responses=_ERRORS, summary="List webhooks")
async def list_webhooks(caller: Owner, request: Request) -> Any:
    """The caller's webhooks (an admin's org's too): ``{"webhooks": [...]}``."""
    found = await _ask(request, caller, "list_webhooks")
    return _answer(request, {"webhooks": [w.to_wire() for w in found]})


@router.get(
    "/webhooks/{webhookId}", response_model=Webhook, responses=_ERRORS, summary="Get a webhook"
)
async def get_webhook(webhook_id: WebhookId, caller: Owner, request: Request) -> Any:
    """One webhook: URL, events, status (``active`` / ``disabled`` and why), failures."""
    return _answer(request, await _ask(request, caller, "get", webhook_id))


@router.patch(
    "/webhooks/{webhookId}",
    response_model=Webhook,
    responses=_ERRORS,
    summary="Change a webhook",
)
async def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, caller: Owner, request: Request
) -> Any:
    """Change ``url``, ``events``, ``description``; ``enabled: true`` re-enables a disabled
    webhook, ``enabled: false`` disables it."""
    return _answer(request, await _ask(request, caller, "update", webhook_id, body))


@router.delete(
    "/webhooks/{webhookId}",
    status_code=204,
    response_class=Response,
    response_model=None,
    responses=_ERRORS,
    summary="Delete a webhook",
)
async def delete_webhook(webhook_id: WebhookId, caller: Owner, request: Request) -> Any:
    """Remove a webhook and its deliveries."""
    await _ask(request, caller, "delete", webhook_id)
    return Response(status_code=204, headers=getattr(request.state, "rate", None))


@router.post(
    "/webhooks/{webhookId}/rotate-secret",
    response_model=SecretRotated,
    responses=_ERRORS,
    summary="Rotate a webhook's secret",
)
async def rotate_secret(
    webhook_id: WebhookId,
    caller: Owner,
    request: Request,
    body: SecretRotation | None = None,
) -> Any:
    """A new secret (shown once) signs from now on; the previous one keeps signing too until
    ``previousSecretExpiresAt`` (``graceSeconds``, default a day)."""
    rotation = body if body is not None else SecretRotation()
    return _answer(request, await _ask(request, caller, "rotate", webhook_id, rotation))


@router.post(
    "/webhooks/{webhookId}/test",
    response_model=Delivery,
    responses=_ERRORS,
    summary="Send a test event",
)
async def ping_webhook(webhook_id: WebhookId, caller: Owner, request: Request) -> Any:
    """Send a ``webhook.test`` event now; answers with its delivery once the first attempt
    has ended (``status``, ``attemptLog``)."""
    return _answer(request, await _ask(request, caller, "test", webhook_id))


@router.get(
    "/webhooks/{webhookId}/deliveries", responses=_ERRORS, summary="List a webhook's deliveries"
)
async def list_deliveries(
    webhook_id: WebhookId,
    caller: Owner,
    request: Request,
    status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """Newest first, each with its attempts (status, latency, error): ``{"deliveries": [...]}``."""
    found = await _ask(request, caller, "deliveries", webhook_id, status, limit)
    return _answer(request, {"deliveries": [d.to_wire() for d in found]})


@router.get(
    "/webhooks/{webhookId}/deliveries/{deliveryId}",
    response_model=Delivery,
    responses=_ERRORS,
    summary="Get a delivery",
)
async def get_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, caller: Owner, request: Request
) -> Any:
    """One delivery and its attempts."""
    return _answer(request, await _ask(request, caller, "delivery", webhook_id, delivery_id))


@router.post(
    "/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
    response_model=Delivery,
    status_code=202,
    responses=_ERRORS | error_responses(409),
    summary="Retry a delivery",
)
async def retry_delivery(
    webhook_id: WebhookId, delivery_id: DeliveryId, caller: Owner, request: Request
) -> Any:
    """Send a delivery again now, under the same ``webhook-id``, with a new day of retries
    (``409 CONFLICT`` while the webhook is disabled: enable it first)."""
    delivery = await _ask(request, caller, "retry", webhook_id, delivery_id)
    return _answer(request, delivery, 202)

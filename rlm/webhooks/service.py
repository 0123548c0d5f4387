"""Registering webhooks: validation, the SSRF check, tenancy, secrets, deliveries by hand.

Every method takes the caller as a :class:`~rlm.admission.Viewer`. A caller sees and changes
its own webhooks; an ``rlm:admin`` of an org (``admin`` with an ``org_id``) also those of its
org, and only it may create org-wide ones (``scope: "org"``: every member's events). Anything
else answers 404 ``WEBHOOK_NOT_FOUND``, exactly as for an id that does not exist, so another
tenant's ids cannot be probed.

The methods are blocking (SQLite, DNS): the delivery worker runs them on a thread.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from rlm.admission import Viewer
from rlm.errors import Conflict, Forbidden, InvalidInput, WebhookNotFound
from rlm.models.webhooks import (
    Delivery,
    SecretRotated,
    SecretRotation,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookUpdate,
)
from rlm.webhooks.addresses import AddressPolicy, Resolver, check_host, check_url
from rlm.webhooks.payloads import TEST_EVENT, encode, event_id, ping_payload
from rlm.webhooks.settings import WebhookSettings
from rlm.webhooks.signing import SigningSecret, generate_secret
from rlm.webhooks.store import WebhookRow, WebhookStore, delivery_id

__all__ = ["MAX_SECRETS", "WebhookService"]

#: Secrets a webhook keeps (the current one and those still in their grace period).
MAX_SECRETS = 5


class WebhookService:
    """The registration API over a :class:`WebhookStore`.

    Args:
        store: Where webhooks live.
        settings: Limits and the address policy.
        resolver: Resolves host names for the SSRF check.
        clock: Epoch seconds.
    """

    def __init__(
        self,
        store: WebhookStore,
        settings: WebhookSettings,
        resolver: Resolver,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._settings = settings
        self._policy = AddressPolicy(settings.allow_http, settings.allow_loopback)
        self._resolver = resolver
        self._clock = clock

    # -- registrations ---------------------------------------------------------------------

    def create(self, viewer: Viewer, body: WebhookCreate) -> WebhookCreated:
        """Register a webhook; the answer holds its secret, shown this once.

        Raises:
            Forbidden: ``scope: "org"`` without ``rlm:admin`` and an org.
            InvalidInput: A refused URL (``field`` = ``url``), or too many webhooks.
        """
        if body.scope == "org" and not (viewer.admin and viewer.org_id is not None):
            raise Forbidden(
                "an org-wide webhook needs the rlm:admin scope and an org claim",
                {"field": "scope"},
            )
        owner = viewer.user_id if body.scope == "user" else str(viewer.org_id)
        limit = self._settings.max_webhooks_per_owner
        if self._store.count_webhooks(body.scope, owner) >= limit:
            raise InvalidInput(
                f"at most {limit} {body.scope} webhooks; delete one first",
                {"limit": limit},
                field="webhooks",
            )
        self._check(body.url)
        now = self._clock()
        secret = generate_secret()
        row = WebhookRow(
            webhook_id=f"wh_{uuid.uuid4().hex}",
            owner_id=viewer.user_id,
            org_id=viewer.org_id,
            scope=body.scope,
            url=body.url,
            events=tuple(dict.fromkeys(body.events)),
            description=body.description,
            secrets=(SigningSecret(secret),),
            status="active",
            disabled_reason=None,
            disabled_at=None,
            consecutive_failures=0,
            failing_since=None,
            created_at=now,
            updated_at=now,
        )
        self._store.insert_webhook(row)
        return WebhookCreated(**dict(row.to_public()), secret=secret)

    def list_webhooks(self, viewer: Viewer) -> list[Webhook]:
        """The webhooks the caller may see, oldest first."""
        org = viewer.org_id if viewer.admin else None
        rows = self._store.webhooks(viewer.user_id, org)
        return [r.to_public() for r in rows if self._visible(viewer, r)]

    def get(self, viewer: Viewer, webhook_id: str) -> Webhook:
        """One webhook.

        Raises:
            WebhookNotFound: None the caller may see.
        """
        return self._row(viewer, webhook_id).to_public()

    def update(self, viewer: Viewer, webhook_id: str, patch: WebhookUpdate) -> Webhook:
        """Change the fields given (``enabled`` re-enables or disables).

        Raises:
            WebhookNotFound: None the caller may see.
            InvalidInput: A refused URL.
        """
        row = self._row(viewer, webhook_id)
        now = self._clock()
        changes: dict[str, object] = {"updated_at": now}
        if patch.url is not None and patch.url != row.url:
            self._check(patch.url)
            changes["url"] = patch.url
        if patch.events is not None:
            changes["events"] = tuple(dict.fromkeys(patch.events))
        if "description" in patch.model_fields_set:
            changes["description"] = patch.description
        if patch.enabled is True and row.status != "active":
            changes.update(
                status="active",
                disabled_reason=None,
                disabled_at=None,
                consecutive_failures=0,
                failing_since=None,
            )
        elif patch.enabled is False and row.status != "disabled":
            changes.update(
                status="disabled", disabled_reason=f"disabled by {viewer.user_id}", disabled_at=now
            )
        updated = row.evolve(**changes)
        self._store.put_webhook(updated)
        return updated.to_public()

    def delete(self, viewer: Viewer, webhook_id: str) -> None:
        """Remove a webhook and its deliveries.

        Raises:
            WebhookNotFound: None the caller may see.
        """
        self._row(viewer, webhook_id)
        if not self._store.delete_webhook(webhook_id):
            raise WebhookNotFound(webhook_id)

    def rotate(self, viewer: Viewer, webhook_id: str, body: SecretRotation) -> SecretRotated:
        """A new secret signs from now on; the current ones keep signing for the grace period.

        Raises:
            WebhookNotFound: None the caller may see.
        """
        row = self._row(viewer, webhook_id)
        now = self._clock()
        grace = self._settings.secret_grace_s if body.grace_seconds is None else body.grace_seconds
        until = now + grace
        kept = [
            SigningSecret(s.secret, until if s.expires_at is None else min(s.expires_at, until))
            for s in row.secrets
            if grace > 0 and s.active(now)
        ]
        secret = generate_secret()
        secrets = (SigningSecret(secret), *kept[: MAX_SECRETS - 1])
        self._store.put_webhook(row.evolve(secrets=secrets, updated_at=now))
        expires = max((s.expires_at for s in kept if s.expires_at is not None), default=None)
        return SecretRotated(
            webhook_id=webhook_id,
            secret=secret,
            previous_secret_expires_at=None if expires is None else _utc(expires),
        )

    # -- deliveries ------------------------------------------------------------------------

    def ping(self, viewer: Viewer, webhook_id: str) -> str:
        """Queue a ``webhook.test`` event for this webhook only (even a disabled one).

        Returns:
            The delivery's id.
        """
        self._row(viewer, webhook_id)
        ping_id = event_id(TEST_EVENT, uuid.uuid4().hex)
        created = self._store.enqueue(
            event_id=ping_id,
            event=TEST_EVENT,
            body=encode(ping_payload(webhook_id, _utc(self._clock()))),
            owner_id=viewer.user_id,
            org_id=viewer.org_id,
            only=webhook_id,
        )
        if not created:  # deleted in between
            raise WebhookNotFound(webhook_id)
        return delivery_id(webhook_id, ping_id)

    def deliveries(
        self, viewer: Viewer, webhook_id: str, status: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        """The webhook's deliveries, newest first, each with its attempts."""
        self._row(viewer, webhook_id)
        return self._store.deliveries(webhook_id, status=status, limit=limit)

    def delivery(self, viewer: Viewer, webhook_id: str, delivery_id: str) -> Delivery:
        """One delivery with its attempts.

        Raises:
            WebhookNotFound: No such webhook or delivery for the caller.
        """
        self._row(viewer, webhook_id)
        found = self._store.deliveries(webhook_id, delivery_id=delivery_id, limit=1)
        if not found:
            raise WebhookNotFound(webhook_id, delivery_id)
        return found[0]

    def retry(self, viewer: Viewer, webhook_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now (same ``webhook-id``), with a new retry horizon.

        Raises:
            WebhookNotFound: No such webhook or delivery for the caller.
            Conflict: The webhook is disabled (``field`` = ``enabled``: enable it first).
        """
        row = self._row(viewer, webhook_id)
        if row.status != "active":
            raise Conflict(
                "the webhook is disabled: enable it (PATCH enabled: true) before retrying",
                {"webhookId": webhook_id},
                field="enabled",
            )
        if not self._store.retry(webhook_id, delivery_id):
            raise WebhookNotFound(webhook_id, delivery_id)
        return self.delivery(viewer, webhook_id, delivery_id)

    # -- helpers ---------------------------------------------------------------------------

    def _check(self, url: str) -> None:
        check_host(check_url(url, self._policy), self._policy, self._resolver)

    @staticmethod
    def _visible(viewer: Viewer, row: WebhookRow) -> bool:
        return (
            viewer.may_see(row.owner_id, row.org_id)
            if row.scope == "user"
            else (viewer.admin and viewer.org_id is not None and viewer.org_id == row.org_id)
        )

    def _row(self, viewer: Viewer, webhook_id: str) -> WebhookRow:
        row = self._store.webhook(webhook_id)
        if row is None or not self._visible(viewer, row):
            raise WebhookNotFound(webhook_id)
        return row


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)

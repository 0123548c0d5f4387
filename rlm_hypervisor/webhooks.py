"""Receiving webhooks: check that a delivery comes from the service, untouched.

Every delivery is signed per the Standard Webhooks specification (``webhook-id``,
``webhook-timestamp``, ``webhook-signature`` headers); :func:`verify` checks the signature with
the ``standardwebhooks`` library and returns the event. Verify the raw body exactly as it
arrived (not a re-serialised copy), and deduplicate on ``webhook-id``: a delivery may arrive
more than once (after a timeout, a restart), always under the same id.

Example:
    >>> from rlm_hypervisor.webhooks import WebhookVerificationError, verify
    >>> def handle(body: bytes, headers: dict[str, str]) -> int:  # your framework's request
    ...     try:
    ...         event = verify(body, headers, "whsec_...")
    ...     except WebhookVerificationError:
    ...         return 400
    ...     if event["event"] == "task.completed":
    ...         print(event["data"]["taskId"], event["data"]["status"])
    ...     return 204
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = ["WebhookVerificationError", "verify"]


def verify(
    payload: bytes | str, headers: Mapping[str, str], secret: str | Sequence[str]
) -> dict[str, Any]:
    """Check a delivery's signature and timestamp, and return its event.

    Args:
        payload: The request body, exactly as received.
        headers: The request headers (any mapping; names in any case).
        secret: The webhook's ``whsec_...`` secret, or several (during a rotation, either
            verifies: the service signs with both).

    Returns:
        The event: ``{"event", "timestamp", "data"}``.

    Raises:
        WebhookVerificationError: A header is missing, the timestamp is more than five minutes
            off, or no signature matches (the body was changed, or the secret is another).
    """
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise WebhookVerificationError("no secret to verify with")
    plain = {str(k): str(v) for k, v in headers.items()}
    last: WebhookVerificationError | None = None
    for candidate in secrets:
        try:
            event = Webhook(candidate).verify(payload, plain)
        except WebhookVerificationError as err:
            last = err
            continue
        if not isinstance(event, dict):
            raise WebhookVerificationError("the payload is not a JSON object")
        return event
    assert last is not None
    raise last

"""Webhook secrets and signatures, per the Standard Webhooks specification.

Every delivery carries ``webhook-id`` (the event's id: the same on every retry, so receivers
deduplicate on it), ``webhook-timestamp`` (seconds since the epoch, of this attempt) and
``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` for each secret that
currently signs, space-separated. During a rotation's grace period the new and the old secret
both sign, so a receiver holding either verifies. The signing itself is the
``standardwebhooks`` library's; nothing here computes an HMAC.

Example:
    >>> from standardwebhooks import Webhook
    >>> secret = generate_secret()
    >>> headers = signed_headers("msg_1", 1_700_000_000, b'{"event":"x"}', [secret])
    >>> sorted(headers)
    ['content-type', 'webhook-id', 'webhook-signature', 'webhook-timestamp']
"""

from __future__ import annotations

import base64
import secrets as _secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks import Webhook

__all__ = ["SECRET_PREFIX", "SigningSecret", "active_secrets", "generate_secret", "signed_headers"]

#: Standard Webhooks' prefix of a base64 secret.
SECRET_PREFIX = "whsec_"

#: Random bytes per secret (the specification asks for 24 to 64).
_SECRET_BYTES = 32


def generate_secret() -> str:
    """A new secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(_SECRET_BYTES)).decode()


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """One secret of a webhook and until when it signs.

    Attributes:
        secret: ``whsec_...``.
        expires_at: Epoch seconds after which it no longer signs; ``None`` for the current one.
    """

    secret: str
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        """Whether it still signs at ``now``."""
        return self.expires_at is None or now < self.expires_at


def active_secrets(secrets: Sequence[SigningSecret], now: float) -> list[str]:
    """The secrets that sign at ``now``, current one first."""
    return [s.secret for s in secrets if s.active(now)]


def signed_headers(
    msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The headers of one delivery attempt.

    Args:
        msg_id: The event's id (``webhook-id``), stable across retries.
        timestamp: This attempt's time, epoch seconds.
        body: The exact bytes sent.
        secrets: The secrets that sign, each adding one signature.

    Raises:
        ValueError: No secret signs.
    """
    if not secrets:
        raise ValueError("a delivery needs at least one signing secret")
    at = datetime.fromtimestamp(timestamp, UTC)
    signatures = " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }

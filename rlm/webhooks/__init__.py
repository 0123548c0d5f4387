"""Webhooks: signed, durable, retried deliveries of ``task.completed`` and
``quota.threshold_exceeded`` (pure logic; the delivery worker actor is
:mod:`rlm.runtime.webhook_worker`).

- :mod:`~rlm.webhooks.settings` — ``RLM_WEBHOOKS__*``.
- :mod:`~rlm.webhooks.addresses` — the SSRF guard: URL form and address classes.
- :mod:`~rlm.webhooks.payloads` — the API document's payloads, their ids and bytes.
- :mod:`~rlm.webhooks.signing` — secrets and Standard Webhooks signatures (``standardwebhooks``).
- :mod:`~rlm.webhooks.backoff` — exponential backoff with jitter, ``Retry-After``.
- :mod:`~rlm.webhooks.lifecycle` — the delivery state machine and webhook health.
- :mod:`~rlm.webhooks.store` — the tables in the state file: webhooks and the outbox.
- :mod:`~rlm.webhooks.outbox` — what the engine writes, in the transaction of the cause.
- :mod:`~rlm.webhooks.service` — registration with tenancy (the API's routes).
- :mod:`~rlm.webhooks.sender` — one HTTP attempt, guarded at connection time.
- :mod:`~rlm.webhooks.wake` — the datagram that wakes the worker when an event is queued.
"""

from __future__ import annotations

from rlm.webhooks.addresses import AddressPolicy, BlockedAddress, classify
from rlm.webhooks.outbox import WebhookOutbox
from rlm.webhooks.payloads import EVENT_TYPES
from rlm.webhooks.settings import WebhookSettings

__all__ = [
    "EVENT_TYPES",
    "AddressPolicy",
    "BlockedAddress",
    "WebhookOutbox",
    "WebhookSettings",
    "classify",
]

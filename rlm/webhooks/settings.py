"""Webhook settings (``RLM_WEBHOOKS__*``): what may be called, how long deliveries are retried.

Example:
    ``RLM_WEBHOOKS__ALLOW_HTTP=true RLM_WEBHOOKS__ALLOW_LOOPBACK=true rlm serve`` lets a
    receiver on this machine (``http://127.0.0.1:9000/hook``) be registered, for development.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

__all__ = ["WebhookSettings"]


class WebhookSettings(BaseModel):
    """How webhooks are registered and delivered.

    Attributes:
        allow_http: Accept plain ``http://`` URLs (default: ``https`` only).
        allow_loopback: Accept receivers on loopback addresses (127.0.0.0/8, ``::1``). Private,
            link-local, metadata and other non-public addresses are refused regardless.
        attempt_timeout_s: The longest one delivery attempt may take (connect to answer).
        max_in_flight: Deliveries sent at once, over every webhook.
        max_in_flight_per_webhook: Deliveries sent at once to one webhook, so a receiver that
            hangs holds at most this many of the slots.
        retry_base_s: The wait after the first failed attempt; each later wait is
            ``retry_factor`` times the one before, at most ``retry_max_delay_s``, with
            ``± retry_jitter`` of it at random.
        retry_factor: See ``retry_base_s``.
        retry_max_delay_s: The longest wait between two attempts (also caps ``Retry-After``).
        retry_jitter: The fraction of each wait drawn at random (0 to 0.5).
        retry_horizon_s: How long after it was created (or retried by hand) a delivery is
            attempted; then it is ``failed``. About a day by default.
        disable_after_s: A webhook whose attempts have all failed for this long (and at least
            ``disable_min_failures`` of them) is disabled.
        disable_min_failures: See ``disable_after_s``.
        secret_grace_s: How long a rotated-out secret keeps signing, unless the rotation
            names another grace period.
        max_webhooks_per_owner: Webhooks one user (or, for org-wide ones, one org) may have.
        max_result_bytes: A ``task.completed`` payload whose result's JSON is larger carries
            the result without its ``output`` (``data.outputOmitted: true``).
        retention_s: Finished deliveries (and their attempts) are kept this long.
        poll_interval_s: How often the delivery worker looks for due deliveries when nothing
            woke it (new deliveries wake it at once).
        worker_nice: The delivery worker's process runs this much nicer (``nice``) than the
            engine: it is background work, and must not take the CPU tasks are waiting for.
            0 keeps the same priority.
        worker_idle: The delivery worker's threads run in Linux's ``SCHED_IDLE`` class: they
            take a CPU only when nothing else wants it, and yield it at once to a waking
            task. While the machine stays saturated the worker goes back to the normal class
            (niced) until it has been calm for 30 s, so deliveries are delayed, never stalled.
    """

    allow_http: bool = False
    allow_loopback: bool = False
    attempt_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_in_flight: int = Field(default=256, ge=1, le=10_000)
    max_in_flight_per_webhook: int = Field(default=32, ge=1, le=10_000)
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_factor: float = Field(default=4.0, ge=1.0, le=100.0)
    retry_max_delay_s: float = Field(default=4 * 3600.0, gt=0)
    retry_jitter: float = Field(default=0.2, ge=0.0, le=0.5)
    retry_horizon_s: float = Field(default=86_400.0, gt=0)
    disable_after_s: float = Field(default=5 * 86_400.0, ge=0)
    disable_min_failures: int = Field(default=10, ge=1)
    secret_grace_s: int = Field(default=86_400, ge=0, le=7 * 86_400)
    max_webhooks_per_owner: int = Field(default=20, ge=1, le=10_000)
    max_result_bytes: int = Field(default=256 * 1024, ge=1024)
    retention_s: float = Field(default=7 * 86_400.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    worker_nice: int = Field(default=10, ge=0, le=19)
    worker_idle: bool = True

    @model_validator(mode="after")
    def _delays_ordered(self) -> Self:
        if self.retry_max_delay_s < self.retry_base_s:
            raise ValueError("retry_max_delay_s must be at least retry_base_s")
        return self

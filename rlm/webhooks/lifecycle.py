"""The life of a delivery and the health of a webhook: pure decisions, no I/O, no clock.

A delivery (one event for one webhook) moves through::

    pending ──attempt──▶ succeeded                       (2xx)
       ▲  │
       │  ├──attempt──▶ failed, webhook disabled          (410 Gone)
       │  ├──attempt──▶ failed                            (next attempt past the horizon)
       │  └──attempt──▶ pending at now + backoff          (anything else; Retry-After honoured)
       └──── retried by hand (POST .../retry): pending now, a new horizon

The delivery worker claims a pending delivery before sending (a lease, stored as its next
attempt time), so a worker that dies mid-send leaves it pending and it is sent again: delivery is
at least once, and the event's id (``webhook-id``) is the same every time.

A webhook is disabled when a receiver answers 410 Gone, or when its attempts have all failed for
``disable_after_s`` and at least ``disable_min_failures`` of them (:func:`disable_reason`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rlm.webhooks.backoff import RetrySchedule
from rlm.webhooks.settings import WebhookSettings

__all__ = [
    "AttemptResult",
    "Decision",
    "DeliveryStatus",
    "Health",
    "decide",
    "disable_reason",
]

DeliveryStatus = Literal["pending", "succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one attempt went.

    Attributes:
        status_code: The receiver's HTTP status; ``None`` when it never answered (refused
            connection, timeout, an address the guard refused).
        latency_ms: From the start of the attempt to its answer (or failure).
        error: Why it failed, for the attempt log; ``None`` on success.
        retry_after_s: What the receiver asked for with ``Retry-After``.
    """

    status_code: int | None
    latency_ms: float
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted the event (2xx)."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Decision:
    """What follows an attempt.

    Attributes:
        status: The delivery's new status.
        next_attempt_at: When to try again (epoch seconds), for ``pending``.
        disable: Why the webhook is to be disabled, if it is.
        error: Why the delivery ended ``failed``.
    """

    status: DeliveryStatus
    next_attempt_at: float | None = None
    disable: str | None = None
    error: str | None = None


def decide(
    result: AttemptResult,
    *,
    attempts: int,
    now: float,
    expires_at: float,
    schedule: RetrySchedule,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """The delivery's next state after an attempt.

    Args:
        result: How the attempt went.
        attempts: Attempts made, this one included.
        now: The time the attempt ended (epoch seconds).
        expires_at: No attempt is scheduled after this (the retry horizon).
        schedule: The backoff schedule.
        rand: A draw in [0, 1) for the jitter.
    """
    if result.ok:
        return Decision("succeeded")
    if result.status_code == 410:
        gone = "the receiver answered 410 Gone"
        return Decision("failed", disable=gone, error=gone)
    when = now + schedule.delay(attempts, retry_after_s=result.retry_after_s, rand=rand)
    if when > expires_at:
        return Decision(
            "failed", error=f"gave up after {attempts} attempt(s): the retry horizon has passed"
        )
    return Decision("pending", next_attempt_at=when)


@dataclass(frozen=True, slots=True)
class Health:
    """A webhook's run of failures.

    Attributes:
        consecutive_failures: Failed attempts since the last success.
        failing_since: When the first of them happened (epoch seconds), if any.
    """

    consecutive_failures: int = 0
    failing_since: float | None = None

    def after(self, ok: bool, now: float) -> Health:
        """The health after one more attempt."""
        if ok:
            return Health()
        since = self.failing_since if self.failing_since is not None else now
        return Health(self.consecutive_failures + 1, since)


def disable_reason(health: Health, now: float, settings: WebhookSettings) -> str | None:
    """Why a webhook failing like ``health`` is to be disabled, or ``None`` if it is not."""
    if health.failing_since is None or health.consecutive_failures < settings.disable_min_failures:
        return None
    failing_s = now - health.failing_since
    if failing_s < settings.disable_after_s:
        return None
    return (
        f"every attempt failed for {failing_s / 3600:.1f} h "
        f"({health.consecutive_failures} attempts in a row)"
    )

"""When a failed delivery is tried again: exponential backoff with jitter, ``Retry-After``.

With the defaults (a first wait of 5 s, each wait four times the one before, at most 4 h,
±20 % at random, for a day) a delivery that keeps failing is attempted about 12 times: after
roughly 5 s, 20 s, 80 s, 5 min, 21 min, 85 min, then every 4 h until a day has passed since it
was created.

Example:
    >>> schedule = RetrySchedule(base_s=5, factor=4, max_delay_s=14400, jitter=0.0)
    >>> [schedule.delay(n, rand=lambda: 0.5) for n in (1, 2, 3)]
    [5.0, 20.0, 80.0]
    >>> schedule.delay(1, retry_after_s=60.0, rand=lambda: 0.5)
    60.0
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rlm.webhooks.settings import WebhookSettings

__all__ = ["RetrySchedule", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Waits between delivery attempts.

    Attributes:
        base_s: The nominal wait after the first failed attempt.
        factor: Each nominal wait is this many times the one before.
        max_delay_s: The longest nominal wait (and the longest ``Retry-After`` honoured).
        jitter: The drawn wait is within ``± jitter`` of the nominal one.
    """

    base_s: float
    factor: float
    max_delay_s: float
    jitter: float

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> RetrySchedule:
        """The schedule the settings describe."""
        return cls(
            settings.retry_base_s,
            settings.retry_factor,
            settings.retry_max_delay_s,
            settings.retry_jitter,
        )

    def nominal(self, attempts: int) -> float:
        """The wait after ``attempts`` failed attempts, before jitter."""
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        # Compared in logs first, so a large attempt count cannot overflow the power.
        if self.factor > 1 and (attempts - 1) * math.log(self.factor) >= math.log(
            self.max_delay_s / self.base_s
        ):
            return self.max_delay_s
        return min(self.base_s * self.factor ** (attempts - 1), self.max_delay_s)

    def delay(
        self,
        attempts: int,
        *,
        retry_after_s: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after ``attempts`` failed attempts.

        Args:
            attempts: Attempts made so far (>= 1).
            retry_after_s: What the receiver asked for (``Retry-After``); honoured as given,
                up to ``max_delay_s``, instead of the schedule.
            rand: A draw in [0, 1) (injected by tests).
        """
        if retry_after_s is not None and retry_after_s >= 0:
            return min(float(retry_after_s), self.max_delay_s)
        nominal = self.nominal(attempts)
        return nominal * (1.0 - self.jitter + 2.0 * self.jitter * rand())


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date).

    Returns:
        ``None`` for a missing or unreadable header; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())

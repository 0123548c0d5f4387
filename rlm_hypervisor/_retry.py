"""When a failed call is worth repeating, and after how long (pure policy, no I/O).

The policy, per attempt that failed:

* ``429`` (``RATE_LIMITED`` / ``QUOTA_EXCEEDED``) is retried for **every** call, ``POST /execute``
  included: by contract a 429 is refused at admission and consumed nothing. The wait is
  ``Retry-After`` (else the body's ``details.retryAfterS``, else exponential backoff), capped at
  :data:`MAX_RETRY_WAIT_S` per sleep. If the server's wait exceeds what the remaining retries
  could sleep in total (e.g. a daily quota that resets in hours), the error is raised at once
  rather than after minutes of futile sleeping.
* ``500``/``502``/``503``/``504`` are retried only for idempotent calls, with exponential
  backoff (or a ``Retry-After`` the server sent): a replica or the engine that died under the
  request answers 500, and another one answers the repeat. ``POST /execute`` is idempotent
  because the SDK sends it with an ``Idempotency-Key`` (one per call, the same on every
  repeat): a repeat answers the task the first attempt created — never a second run or
  charge. A 500 that carries ``details.result`` is not repeated: it is a task that ran and
  failed, and that is its answer.
* Connection failures (nothing was sent) are retried for every call; other transport errors
  (read timeouts, dropped connections: the server may have acted) only for idempotent calls.

Backoff (when the server named no wait) doubles from :data:`BACKOFF_BASE_S` up to
:data:`BACKOFF_MAX_S`, with *equal jitter*: each sleep is drawn between half and all of its
step, so clients that failed together (a replica restarting under many of them) do not all
come back in the same instant. A wait the server named (``Retry-After``) is honoured as is.
Both clients and the event streams use this one policy.
"""

from __future__ import annotations

import email.utils
import json
import math
from datetime import UTC, datetime

import httpx

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_MAX_S",
    "MAX_RETRY_WAIT_S",
    "RETRYABLE_STATUSES",
    "backoff_s",
    "parse_retry_after",
    "retry_delay",
    "transport_error_is_retryable",
]

#: The longest single sleep before a retry, in seconds.
MAX_RETRY_WAIT_S = 30.0
#: The first backoff sleep; it doubles per attempt up to :data:`BACKOFF_MAX_S`.
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
#: Statuses that mean "try again" for an idempotent call: a process died under the request
#: (500), or it never reached a replica (502, 503, 504).
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})

# Failures before any byte of the request left this process: repeating them is always safe.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def backoff_s(attempt: int, rand: float = 1.0) -> float:
    """The jittered exponential backoff before retry number ``attempt + 1``.

    Args:
        attempt: Retries already made (from 0).
        rand: A number in ``[0, 1]`` (clients draw ``random.random()``) placing the sleep
            between half (0) and all (1) of the step ``min(BACKOFF_MAX_S, BACKOFF_BASE_S *
            2**attempt)``.

    Returns:
        Seconds to sleep.
    """
    step = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempt))
    return step * (0.5 + 0.5 * min(1.0, max(0.0, rand)))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    Args:
        value: The header's value, or ``None`` when absent.
        now: The current time for an HTTP-date value (defaults to the wall clock).

    Returns:
        A finite, non-negative number of seconds, or ``None`` when absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _body_retry_after(response: httpx.Response) -> float | None:
    # RATE_LIMITED carries details.retryAfterS; a fallback for a 429 whose header was stripped.
    try:
        body = json.loads(response.content)
        value = body["error"]["details"]["retryAfterS"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return parse_retry_after(str(value))


def _task_outcome(response: httpx.Response) -> bool:
    # A task that ran and failed answers its error with the whole result in details.result.
    try:
        details = json.loads(response.content)["error"]["details"]
    except (ValueError, TypeError, KeyError):
        return False
    return isinstance(details, dict) and "result" in details


def retry_delay(
    response: httpx.Response,
    *,
    attempt: int,
    retries_left: int,
    idempotent: bool,
    rand: float = 1.0,
) -> float | None:
    """How long to sleep before repeating a call that got ``response``, or ``None`` to stop.

    Args:
        response: The failed (non-2xx) response.
        attempt: How many retries were already made for this call (0 after the first try).
        retries_left: How many more retries the client allows.
        idempotent: Whether repeating the call cannot do anything twice.
        rand: The jitter draw for a backoff (see :func:`backoff_s`).

    Returns:
        Seconds to sleep (at most :data:`MAX_RETRY_WAIT_S`), or ``None`` when the error should
        be raised now.
    """
    if retries_left <= 0:
        return None
    status = response.status_code
    if status == 429:
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is None:
            wait = _body_retry_after(response)
    elif status in RETRYABLE_STATUSES and idempotent and not _task_outcome(response):
        wait = parse_retry_after(response.headers.get("Retry-After"))
    else:
        return None
    if wait is None:
        return backoff_s(attempt, rand)
    if wait > MAX_RETRY_WAIT_S * retries_left:
        # Capped sleeps could not reach the time the server named: fail fast instead.
        return None
    return min(wait, MAX_RETRY_WAIT_S)


def transport_error_is_retryable(exc: httpx.TransportError, *, idempotent: bool) -> bool:
    """Whether a call that raised ``exc`` may be repeated.

    A failure to connect means nothing was sent, so any call may be repeated; after a read
    timeout or a dropped connection the server may have acted, so only idempotent calls are.
    """
    return idempotent or isinstance(exc, _NOTHING_SENT)

"""The outcome of a rate-limit check and the HTTP headers that advertise it.

The headers follow draft-ietf-httpapi-ratelimit-headers-07 (June 2023), the last revision with
the unnamed-policy syntax most clients parse today::

    RateLimit-Policy: 60;w=60, 1000;w=3600
    RateLimit: limit=60, remaining=12, reset=30
    Retry-After: 30                                 (rejections only)

``RateLimit-Policy`` lists every quota policy (limit and window in seconds); ``RateLimit`` gives
the *binding* policy: the one that rejected the request, or else the one closest to running out.
``reset`` and ``Retry-After`` are delta-seconds, rounded up so a client that waits that long is
never early. (Revision -08 and later renamed the fields' members to ``"name";q=..;w=..`` and
``"name";r=..;t=..``; switching means changing :meth:`RateDecision.headers` only.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlm.errors import RateLimited

__all__ = ["PolicyState", "RateDecision"]


def _delta_seconds(seconds: float) -> int:
    return max(0, math.ceil(seconds - 1e-9))


@dataclass(frozen=True, slots=True)
class PolicyState:
    """One quota policy (window) as it stands after a check.

    Attributes:
        name: ``minute`` or ``hour``.
        limit: Units admitted per window.
        window_s: Window length in seconds.
        remaining: Units left in the window now.
        reset_s: Seconds until the oldest counted unit leaves the window (``0`` if none).
    """

    name: str
    limit: int
    window_s: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class RateDecision:
    """Whether a request was admitted, and the figures to tell the client.

    A plain, picklable value: it is returned by the shared limiter actor.

    Attributes:
        allowed: Whether the request was admitted (and counted).
        limit: The binding policy's limit.
        remaining: Units left in the binding policy's window.
        reset_s: Seconds until the binding policy frees capacity (for a rejection: until the
            request would fit).
        retry_after_s: Seconds until the request would fit (``0.0`` when admitted).
        policy: The binding policy's name (``minute`` or ``hour``).
        window_s: The binding policy's window in seconds.
        policies: Every policy, shortest window first.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float
    policy: str
    window_s: int
    policies: tuple[PolicyState, ...]

    @property
    def retry_after_header_s(self) -> int:
        """``Retry-After`` as whole seconds, at least 1."""
        return max(1, _delta_seconds(self.retry_after_s))

    def headers(self) -> dict[str, str]:
        """The rate-limit response headers (draft-ietf-httpapi-ratelimit-headers-07).

        Returns:
            ``RateLimit-Policy`` and ``RateLimit`` always; ``Retry-After`` on a rejection.

        Example:
            ``{"RateLimit-Policy": "60;w=60, 1000;w=3600",
            "RateLimit": "limit=60, remaining=12, reset=30"}``
        """
        headers = {
            "RateLimit-Policy": ", ".join(f"{p.limit};w={p.window_s}" for p in self.policies),
            "RateLimit": (
                f"limit={self.limit}, remaining={self.remaining}, "
                f"reset={_delta_seconds(self.reset_s)}"
            ),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_header_s)
        return headers

    def raise_if_rejected(self) -> None:
        """Raise the API's rate-limit error for a rejected decision.

        Raises:
            RateLimited: ``details`` carry ``limit``, ``window`` (seconds), ``policy`` and
                ``retryAfterS`` (whole seconds, as in ``Retry-After``); the error's HTTP
                headers are :meth:`headers` (``Retry-After``, ``RateLimit``, ...).
        """
        if self.allowed:
            return
        retry = self.retry_after_header_s
        raise RateLimited(
            f"rate limit exceeded: {self.limit} requests per {self.policy}; retry in {retry} s",
            retry,
            {"limit": self.limit, "window": self.window_s, "policy": self.policy},
        ).with_headers(self.headers())

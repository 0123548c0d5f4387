"""Rate limits: requests per minute and per hour, and concurrent agents, per key.

Pure logic (no Ray): :class:`RateLimiter` is a plain class the runtime runs as one shared actor.
See :mod:`rlm.ratelimit.limiter` for the algorithm and its accuracy,
:mod:`rlm.ratelimit.journal` for how the counts survive a restart,
:mod:`rlm.ratelimit.shared` and :mod:`rlm.ratelimit.shared_leases` for the windows and
leases several instances share on PostgreSQL, and
:mod:`rlm.ratelimit.decision` for the response headers (draft-ietf-httpapi-ratelimit-headers-07).
"""

from __future__ import annotations

from rlm.ratelimit.concurrency import AgentLeases, ConcurrencyDecision
from rlm.ratelimit.decision import PolicyState, RateDecision
from rlm.ratelimit.journal import RateJournal
from rlm.ratelimit.limiter import HOUR_GRANULARITY_S, RateLimiter, RequestLimiter, enforce
from rlm.ratelimit.shared import SharedTake, SharedWindows
from rlm.ratelimit.shared_leases import SharedLeases
from rlm.ratelimit.window import SlidingWindow

__all__ = [
    "HOUR_GRANULARITY_S",
    "AgentLeases",
    "ConcurrencyDecision",
    "PolicyState",
    "RateDecision",
    "RateJournal",
    "RateLimiter",
    "RequestLimiter",
    "SharedLeases",
    "SharedTake",
    "SharedWindows",
    "SlidingWindow",
    "enforce",
]

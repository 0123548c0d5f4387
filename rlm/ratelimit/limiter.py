"""The rate limiter: per-minute and per-hour request counts and concurrent-agent leases per key.

Algorithm: a sliding window per policy, checked before anything is counted.

* per minute: an **exact sliding log** — a request is admitted only if the requests admitted in
  the last 60 s plus its cost fit the limit. Never more than the limit in any 60 s interval, no
  false refusals, ``Retry-After`` exact (at most 60 s). Memory: at most ``limit`` timestamps per
  key (600 for the largest tier).
* per hour: a **bucketed sliding window** of 60 one-minute buckets, counted conservatively (a
  bucket counts while any part of it may lie in the last hour). Never more than the limit in any
  3600 s interval; a request may be refused up to 60 s before the exact window would free it.
  Memory: at most 61 counters per key whatever the limit (50,000 for the largest tier).

Neither policy counts anything unless every policy admits the request, so a refused request
consumes nothing. Keys idle for longer than the longest window are forgotten by a periodic
sweep, so memory follows the keys active in the last hour.

With a :class:`~rlm.ratelimit.journal.RateJournal`, every counted request is also recorded
durably, and a new limiter starts from the journal's last hour (:meth:`RateLimiter.restore`):
an engine restart does not reset anyone's minute or hour.

With :class:`~rlm.ratelimit.shared.SharedWindows` (a PostgreSQL state store), the windows are
the database's, shared by every instance on it: each check is one round trip there, and a
client spreading its requests over instances is held to its tier in total.

The class is plain Python with picklable arguments and results: the runtime wraps *one*
instance as a Ray actor so every Serve replica shares the counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

from rlm.auth.tiers import TierLimits
from rlm.ratelimit.concurrency import AgentLeases, ConcurrencyDecision
from rlm.ratelimit.decision import PolicyState, RateDecision
from rlm.ratelimit.journal import RateJournal
from rlm.ratelimit.shared import SharedWindows
from rlm.ratelimit.shared_leases import SharedLeases
from rlm.ratelimit.window import SlidingWindow

__all__ = ["HOUR_GRANULARITY_S", "RateLimiter", "RequestLimiter", "enforce"]

log = logging.getLogger(__name__)

HOUR_GRANULARITY_S: Final = 60.0
"""Bucket width of the per-hour window."""

# (name, window seconds, bucket width: 0 = exact log)
_POLICIES: Final[tuple[tuple[str, int, float], ...]] = (
    ("minute", 60, 0.0),
    ("hour", 3600, HOUR_GRANULARITY_S),
)


class RequestLimiter(Protocol):
    """Anything that can check and count a request (the limiter, or a test double)."""

    def check_and_consume(self, key: str, tier_limits: TierLimits, cost: int = 1) -> RateDecision:
        """Admit and count a request, or refuse it without counting."""
        ...


def _limits(tier_limits: TierLimits) -> tuple[int, int]:
    return (tier_limits.requests_per_minute, tier_limits.requests_per_hour)


class RateLimiter:
    """Request-rate and concurrent-agent limits per key (user id, or client address).

    Args:
        clock: Monotonic seconds (``time.monotonic``; tests pass a fake clock).
        sweep_every: Forget idle keys after this many checks (amortised housekeeping).
        journal: Where counted requests are recorded; the limiter starts from its last hour.
        shared: The windows of every instance on one PostgreSQL database: the request rate
            is decided there, not in this process (``clock`` then only times the leases, and
            ``journal`` is not needed: the shared windows are durable).
        leases: The concurrent-agent leases of every instance on one PostgreSQL database
            (by default they are this process's).

    Example:
        >>> limiter = RateLimiter()
        >>> limiter.check_and_consume("alice", TIERS["user"]).allowed  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        sweep_every: int = 4096,
        journal: RateJournal | None = None,
        shared: SharedWindows | None = None,
        leases: SharedLeases | None = None,
    ) -> None:
        if sweep_every < 1:
            raise ValueError("sweep_every must be >= 1")
        self._clock = clock
        self._sweep_every = sweep_every
        self._windows: dict[str, tuple[SlidingWindow, ...]] = {}
        self._leases: AgentLeases | SharedLeases = leases or AgentLeases(clock)
        self._last_now = float("-inf")
        self._checks = 0
        # Ray runs actor methods one at a time, but the same object may serve threads in-process.
        self._lock = threading.Lock()
        self._journal = journal
        self._shared = shared
        if journal is not None and shared is None:
            self.restore(journal.load(), journal.now())

    def restore(self, rows: list[tuple[str, int, int]], wall_now: float) -> int:
        """Count again the requests a journal recorded (``(key, second, units)``, oldest first).

        Each counts from the end of its second (its wall-clock time mapped onto this
        limiter's clock), so no window under-counts.

        Args:
            rows: What :meth:`RateJournal.load` returns.
            wall_now: The wall clock now, in the journal's seconds.

        Returns:
            How many units were restored.
        """
        restored = 0
        with self._lock:
            now = self._now()
            for key, second, units in rows:
                at = min(now, now - (wall_now - (second + 1)))
                windows = self._windows.get(key)
                if windows is None:
                    windows = tuple(SlidingWindow(w, g) for _, w, g in _POLICIES)
                    self._windows[key] = windows
                for window in windows:
                    window.add(at, units)
                restored += units
        return restored

    def purge_journal(self) -> int:
        """Drop journal (or shared) rows past the longest window (on the engine's heartbeat)."""
        if self._shared is not None:
            return self._shared.purge()
        return self._journal.purge() if self._journal is not None else 0

    # -- request rate ----------------------------------------------------------------------

    def check_and_consume(self, key: str, tier_limits: TierLimits, cost: int = 1) -> RateDecision:
        """Admit and count a request, or refuse it without counting anything.

        Args:
            key: The caller's key (``Principal.rate_limit_key``).
            tier_limits: The caller's tier limits.
            cost: Units the request counts for (>= 1).

        Returns:
            The decision, with the figures for the response headers.

        Raises:
            ValueError: An empty key or a cost below 1.
        """
        return self._decide(key, tier_limits, cost, consume=True)

    def peek(self, key: str, tier_limits: TierLimits, cost: int = 1) -> RateDecision:
        """What :meth:`check_and_consume` would decide, without counting anything.

        Args:
            key: The caller's key.
            tier_limits: The caller's tier limits.
            cost: Units the request would count for (>= 1).

        Returns:
            The decision as if the request were made now (``remaining`` counts it).
        """
        return self._decide(key, tier_limits, cost, consume=False)

    def _now(self) -> float:
        # Guard the windows' invariant (time never goes back) against a misbehaving clock.
        self._last_now = max(self._last_now, self._clock())
        return self._last_now

    def _decide(
        self, key: str, tier_limits: TierLimits, cost: int, *, consume: bool
    ) -> RateDecision:
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")
        if not isinstance(cost, int) or cost < 1:
            raise ValueError("cost must be an int >= 1")
        limits = _limits(tier_limits)
        verdict: bool | None = None
        windows: tuple[SlidingWindow, ...]
        with self._lock:
            if self._shared is not None:
                now, windows, verdict = self._shared_view(key, limits, cost, consume=consume)
            else:
                now = self._now()
                windows = self._windows.get(key) or tuple(
                    SlidingWindow(w, g) for _, w, g in _POLICIES
                )
            used = [window.used(now) for window in windows]
            fits = [u + cost <= limit for u, limit in zip(used, limits, strict=True)]
            allowed = all(fits) if verdict is None else verdict
            if allowed:
                if consume:
                    for window in windows:
                        window.add(now, cost)
                    self._windows[key] = windows
                    if self._shared is None:
                        self._record(key, cost)
                # Report what is left once this request is counted (a peek: would be counted).
                used = [u + cost for u in used]
            states = tuple(
                PolicyState(name, limit, window_s, max(0, limit - u), window.next_release(now))
                for (name, window_s, _), limit, u, window in zip(
                    _POLICIES, limits, used, windows, strict=True
                )
            )
            waits = [
                (window.wait_for(now, u + cost - limit) if cost <= limit else window.window_s)
                for window, u, limit, ok in zip(windows, used, limits, fits, strict=True)
                if not ok
            ]
            if consume:
                self._maybe_sweep(now)
        if allowed:
            # Tell the client about the policy closest to running out (longer window on a tie).
            binding = min(states, key=lambda s: (s.remaining, -s.window_s))
            return RateDecision(
                True,
                binding.limit,
                binding.remaining,
                binding.reset_s,
                0.0,
                binding.name,
                binding.window_s,
                states,
            )
        refused = [s for s, ok in zip(states, fits, strict=True) if not ok]
        wait, binding = max(zip(waits, refused, strict=True), key=lambda pair: pair[0])
        return RateDecision(
            False,
            binding.limit,
            binding.remaining,
            wait,
            wait,
            binding.name,
            binding.window_s,
            states,
        )

    def _shared_view(
        self, key: str, limits: tuple[int, int], cost: int, *, consume: bool
    ) -> tuple[float, tuple[SlidingWindow, ...], bool]:
        """The time, the key's windows and the verdict, from the shared windows.

        A count is always the database's (one round trip: it decides for every instance at
        once). A look (:meth:`peek`, before a task's lease and quota holds) is answered from
        the windows this limiter last saw for the key when they admit the request: other
        instances can only have added to them since, so the count that follows is still the
        database's to refuse (the gate then gives back what it took); a look they refuse, or
        one at a key not seen yet, asks the database, so a refusal's figures are exact.
        """
        assert self._shared is not None
        if not consume:
            known = self._windows.get(key)
            if known is not None:
                now = self._shared.now()
                if all(w.used(now) + cost <= lim for w, lim in zip(known, limits, strict=True)):
                    return now, known, True
        took = self._shared.take(key, limits, cost, consume=consume)
        self._windows[key] = took.windows
        return took.now, took.windows, took.allowed

    def _record(self, key: str, cost: int) -> None:
        if self._journal is None:
            return
        try:
            self._journal.record(key, cost)
        except Exception:  # a full disk must not refuse requests; they are still counted here
            log.exception("could not journal a request of %s", key)

    def _maybe_sweep(self, now: float) -> None:
        self._checks += 1
        if self._checks % self._sweep_every == 0:
            self._sweep(now)

    def _sweep(self, now: float) -> int:
        idle = [
            key
            for key, windows in self._windows.items()
            if all(window.is_empty(now) for window in windows)
        ]
        for key in idle:
            del self._windows[key]
        return len(idle)

    def sweep(self) -> int:
        """Forget keys with nothing counted in any window.

        Returns:
            How many keys were forgotten.
        """
        with self._lock:
            return self._sweep(self._now())

    def tracked_keys(self) -> int:
        """How many keys have request counts (in memory, or in the shared windows)."""
        with self._lock:
            if self._shared is not None:
                return self._shared.tracked_keys()
            return len(self._windows)

    def reset(self, key: str | None = None) -> None:
        """Drop the request counts of ``key`` (or of every key); leases are kept.

        Args:
            key: The key to clear; ``None`` clears all.
        """
        with self._lock:
            if self._shared is not None:
                self._shared.reset(key)
            if key is None:
                self._windows.clear()
            else:
                self._windows.pop(key, None)

    # -- concurrent agents -----------------------------------------------------------------

    def acquire(
        self,
        key: str,
        n: int,
        limit: int,
        *,
        lease_id: str | None = None,
        ttl_s: float | None = None,
    ) -> ConcurrencyDecision:
        """Take ``n`` concurrent agents for ``key`` within ``limit`` (see :class:`AgentLeases`).

        Args:
            key: The caller's key.
            n: Agents wanted (>= 1).
            limit: The caller's ``TierLimits.concurrent_agents`` (or a quota's maximum).
            lease_id: Caller-chosen id, making a retried call idempotent.
            ttl_s: Release automatically after this many seconds.

        Returns:
            The decision; on refusal nothing is taken.
        """
        with self._lock:
            return self._leases.acquire(key, n, limit, lease_id=lease_id, ttl_s=ttl_s)

    def release(self, lease_id: str) -> int:
        """Give back a lease's agents; idempotent.

        Args:
            lease_id: The id from :meth:`acquire`.

        Returns:
            Agents freed (``0`` if already released).
        """
        with self._lock:
            return self._leases.release(lease_id)

    def renew(self, lease_id: str, ttl_s: float) -> bool:
        """Extend a lease's time-to-live (a heartbeat).

        Args:
            lease_id: The id from :meth:`acquire`.
            ttl_s: New time-to-live from now.

        Returns:
            False when the lease no longer exists.
        """
        with self._lock:
            return self._leases.renew(lease_id, ttl_s)

    def in_use(self, key: str) -> int:
        """Agents ``key`` holds now.

        Args:
            key: The caller's key.

        Returns:
            The count (never negative).
        """
        with self._lock:
            return self._leases.in_use(key)


def enforce(
    limiter: RequestLimiter, key: str, tier_limits: TierLimits, cost: int = 1
) -> RateDecision:
    """Check and count a request, raising when it is refused.

    Args:
        limiter: The limiter (in-process; with the shared actor, call ``check_and_consume``
            remotely and then :meth:`RateDecision.raise_if_rejected`).
        key: The caller's key.
        tier_limits: The caller's tier limits.
        cost: Units the request counts for.

    Returns:
        The admitting decision (use :meth:`RateDecision.headers` on the response).

    Raises:
        RateLimited: The request was refused; ``details`` carry ``limit``, ``window``,
            ``policy`` and ``retryAfterS``.
    """
    decision = limiter.check_and_consume(key, tier_limits, cost)
    decision.raise_if_rejected()
    return decision

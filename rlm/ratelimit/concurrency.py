"""Concurrent-agent leases: how many agents each key holds right now.

An acquisition is a *lease* with an id. Releasing is by lease id and idempotent, so a retried
release (an actor call repeated after a timeout) can never drive a count below zero or free
agents that another task holds. Acquiring with an explicit ``lease_id`` is idempotent too: a
repeated call returns the same lease instead of taking more agents. A lease may carry a
time-to-live, so a process that dies holding agents does not hold them forever.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from rlm.errors import RateLimited

__all__ = ["AgentLeases", "ConcurrencyDecision"]


@dataclass(frozen=True, slots=True)
class ConcurrencyDecision:
    """The outcome of an acquisition.

    Attributes:
        allowed: Whether the agents were granted.
        key: The rate-limit key.
        requested: Agents asked for.
        in_use: Agents the key holds after the decision.
        limit: The key's concurrent-agent limit.
        lease_id: The lease to release later (``None`` when refused).
    """

    allowed: bool
    key: str
    requested: int
    in_use: int
    limit: int
    lease_id: str | None

    def raise_if_rejected(self) -> None:
        """Raise the API's rate-limit error for a refused acquisition.

        Raises:
            RateLimited: ``details`` carry ``limit``, ``inUse``, ``requested`` and
                ``retryAfterS`` (1 s: capacity returns when a running task ends, which the
                limiter cannot predict); the error's HTTP headers carry ``Retry-After: 1``.
        """
        if self.allowed:
            return
        raise RateLimited(
            f"concurrent agent limit reached: {self.in_use} of {self.limit} in use, "
            f"{self.requested} requested",
            1,
            {
                "limit": self.limit,
                "inUse": self.in_use,
                "requested": self.requested,
                "policy": "concurrent_agents",
            },
        ).with_headers({"Retry-After": "1"})


@dataclass(slots=True)
class _Lease:
    key: str
    agents: int
    expires_at: float | None


class AgentLeases:
    """Per-key counts of concurrently held agents.

    Not thread-safe on its own; :class:`~rlm.ratelimit.RateLimiter` serialises calls to it.

    Args:
        clock: Monotonic seconds; used only for lease time-to-live.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._by_key: dict[str, set[str]] = {}
        self._in_use: dict[str, int] = {}

    def acquire(
        self,
        key: str,
        n: int,
        limit: int,
        *,
        lease_id: str | None = None,
        ttl_s: float | None = None,
    ) -> ConcurrencyDecision:
        """Take ``n`` agents for ``key`` if that keeps it within ``limit``.

        Args:
            key: The rate-limit key.
            n: Agents wanted (>= 1).
            limit: The key's concurrent-agent limit (>= 0).
            lease_id: An id chosen by the caller, making a retried call idempotent.
            ttl_s: Release the lease automatically after this many seconds.

        Returns:
            The decision; when refused nothing is taken.

        Raises:
            ValueError: ``n < 1``, ``limit < 0``, ``ttl_s <= 0``, or ``lease_id`` already names a
                lease of another key or size.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError("n must be an int >= 1")
        if limit < 0:
            raise ValueError("limit must be >= 0")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        now = self._clock()
        self._expire(key, now)
        if lease_id is not None and lease_id in self._leases:
            lease = self._leases[lease_id]
            if lease.key != key or lease.agents != n:
                raise ValueError(f"lease {lease_id!r} exists with another key or size")
            return ConcurrencyDecision(True, key, n, self._in_use.get(key, 0), limit, lease_id)
        in_use = self._in_use.get(key, 0)
        if in_use + n > limit:
            return ConcurrencyDecision(False, key, n, in_use, limit, None)
        new_id = lease_id if lease_id is not None else uuid.uuid4().hex
        expires_at = None if ttl_s is None else now + ttl_s
        self._leases[new_id] = _Lease(key, n, expires_at)
        self._by_key.setdefault(key, set()).add(new_id)
        self._in_use[key] = in_use + n
        return ConcurrencyDecision(True, key, n, in_use + n, limit, new_id)

    def release(self, lease_id: str) -> int:
        """Give back the agents of a lease; releasing twice (or an unknown id) frees nothing.

        Args:
            lease_id: The id from :meth:`acquire`.

        Returns:
            Agents freed (``0`` when the lease was already released or expired).
        """
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return 0
        self._forget(lease_id, lease)
        return lease.agents

    def renew(self, lease_id: str, ttl_s: float) -> bool:
        """Push a lease's expiry to ``ttl_s`` seconds from now (a heartbeat).

        Args:
            lease_id: The id from :meth:`acquire`.
            ttl_s: New time-to-live (> 0).

        Returns:
            False when the lease no longer exists (released or already expired).
        """
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        lease = self._leases.get(lease_id)
        if lease is None:
            return False
        now = self._clock()
        self._expire(lease.key, now)
        if lease_id not in self._leases:
            return False
        lease.expires_at = now + ttl_s
        return True

    def in_use(self, key: str) -> int:
        """Agents ``key`` holds now.

        Args:
            key: The rate-limit key.

        Returns:
            The count (never negative).
        """
        self._expire(key, self._clock())
        return self._in_use.get(key, 0)

    def _forget(self, lease_id: str, lease: _Lease) -> None:
        ids = self._by_key.get(lease.key)
        if ids is not None:
            ids.discard(lease_id)
            if not ids:
                del self._by_key[lease.key]
        remaining = self._in_use.get(lease.key, 0) - lease.agents
        if remaining > 0:
            self._in_use[lease.key] = remaining
        else:
            self._in_use.pop(lease.key, None)

    def _expire(self, key: str, now: float) -> None:
        for lease_id in list(self._by_key.get(key, ())):
            lease = self._leases[lease_id]
            if lease.expires_at is not None and lease.expires_at <= now:
                del self._leases[lease_id]
                self._forget(lease_id, lease)

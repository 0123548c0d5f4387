"""Concurrent-agent leases in PostgreSQL, shared by every instance on one database.

The same contract as :class:`~rlm.ratelimit.concurrency.AgentLeases` (idempotent acquire with a
lease id, idempotent release, time-to-live, never negative), with the leases as rows of
``rate_leases`` (migration ``0004``): a client running tasks on two instances holds its tier's
concurrent agents in total, not on each. An acquisition is one call of ``rlm_lease_take``
(one round trip, under the key's advisory lock); a release, a renewal and a count are one
statement each. The engine's leases are named for their tasks, so the leases of an instance
that died are released with its tasks' quota holds
(:meth:`rlm.gate.AdmissionGate.release_task_holds`).

Example:
    >>> leases = SharedLeases("postgresql://rlm@db/rlm")              # doctest: +SKIP
    >>> leases.acquire("alice", 2, 5, lease_id="task-1").allowed       # doctest: +SKIP
    True
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from rlm.ratelimit.concurrency import ConcurrencyDecision

if TYPE_CHECKING:
    import psycopg

__all__ = ["SharedLeases"]

_TAKE: Final = b"SELECT * FROM rlm_lease_take(%s, %s, %s, %s, %s, %s)"
_NOW: Final = "COALESCE(%s, extract(epoch FROM clock_timestamp()))"


class SharedLeases:
    """Every key's concurrent-agent leases in a migrated PostgreSQL database.

    Args:
        url: The ``postgresql://`` URL (migration ``0004`` applied).
        clock: Seconds to time leases by; ``None`` uses the database server's clock.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None) -> None:
        from rlm.db.connect import open_checked

        self._conn: psycopg.Connection[tuple[object, ...]] = open_checked(url)
        self._conn.autocommit = True  # each call is its own transaction
        self._clock = clock
        self._lock = threading.Lock()

    def _now(self) -> float | None:
        return None if self._clock is None else self._clock()

    def acquire(
        self,
        key: str,
        n: int,
        limit: int,
        *,
        lease_id: str | None = None,
        ttl_s: float | None = None,
    ) -> ConcurrencyDecision:
        """Take ``n`` agents for ``key`` if that keeps it within ``limit`` (see
        :meth:`AgentLeases.acquire <rlm.ratelimit.concurrency.AgentLeases.acquire>`).

        Raises:
            ValueError: ``n < 1``, ``limit < 0``, ``ttl_s <= 0``, or ``lease_id`` already names
                a lease of another key or size.
        """
        if not isinstance(n, int) or n < 1:
            raise ValueError("n must be an int >= 1")
        if limit < 0:
            raise ValueError("limit must be >= 0")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        wanted = lease_id if lease_id is not None else uuid.uuid4().hex
        with self._lock:
            row = self._conn.execute(_TAKE, (key, n, limit, wanted, ttl_s, self._now())).fetchone()
        assert row is not None  # the function returns exactly one row
        allowed, in_use, held_key, held_agents = row
        used = int(str(in_use))
        if held_key is not None:  # the lease exists: a retried call
            if held_key != key or int(str(held_agents)) != n:
                raise ValueError(f"lease {wanted!r} exists with another key or size")
            return ConcurrencyDecision(True, key, n, used, limit, wanted)
        if not allowed:
            return ConcurrencyDecision(False, key, n, used, limit, None)
        return ConcurrencyDecision(True, key, n, used, limit, wanted)

    def release(self, lease_id: str) -> int:
        """Give back a lease's agents; ``0`` when it was already released or expired."""
        with self._lock:
            row = self._conn.execute(
                f"WITH gone AS (DELETE FROM rate_leases WHERE lease_id = %s RETURNING agents,"
                f" expires_at) SELECT agents FROM gone"
                f" WHERE expires_at IS NULL OR expires_at > {_NOW}".encode(),
                (lease_id, self._now()),
            ).fetchone()
        return 0 if row is None else int(str(row[0]))

    def renew(self, lease_id: str, ttl_s: float) -> bool:
        """Push a lease's expiry to ``ttl_s`` seconds from now; False when it is gone."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        now = self._now()
        with self._lock:
            cursor = self._conn.execute(
                f"UPDATE rate_leases SET expires_at = {_NOW} + %s WHERE lease_id = %s"
                f" AND (expires_at IS NULL OR expires_at > {_NOW})".encode(),
                (now, ttl_s, lease_id, now),
            )
        return cursor.rowcount == 1

    def in_use(self, key: str) -> int:
        """Agents ``key`` holds now, on every instance."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT COALESCE(SUM(agents), 0) FROM rate_leases WHERE key = %s"
                f" AND (expires_at IS NULL OR expires_at > {_NOW})".encode(),
                (key, self._now()),
            ).fetchone()
        return 0 if row is None else int(str(row[0]))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

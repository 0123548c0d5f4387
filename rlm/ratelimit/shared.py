"""The request-rate windows in PostgreSQL, shared by every instance on one database.

Without this, each instance's limiter counts only what it admitted itself, and a client that
spreads its requests over two instances gets twice its tier. With ``RLM_DATABASE_URL`` set the
limiter keeps no window of its own: each check is one call of the ``rlm_rate_take`` function
(migration ``0004``), one round trip and one transaction. Under a per-key advisory lock it
reads the key's minute log and hour buckets, admits the request if it fits both, and counts it.
The windows are the in-memory ones' (:class:`~rlm.ratelimit.window.SlidingWindow`): an exact
log for the minute, one-minute buckets for the hour, so the two modes refuse the same requests.

The clock is the database server's (``clock_timestamp()``): instances on several machines
agree on when a window ends without agreeing with each other. Tests inject a clock.

Example:
    >>> windows = SharedWindows("postgresql://rlm@db/rlm")               # doctest: +SKIP
    >>> windows.take("alice", (60, 1000), 1, consume=True).allowed        # doctest: +SKIP
    True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rlm.ratelimit.window import SlidingWindow

if TYPE_CHECKING:
    import psycopg

__all__ = ["SharedTake", "SharedWindows"]

_TAKE: Final = b"SELECT * FROM rlm_rate_take(%s, %s, %s, %s, %s, %s)"
#: How long rows are kept: the hour window, its bucket, and a minute to spare.
_RETAIN_S: Final = 3600 + 60 + 60


@dataclass(frozen=True, slots=True)
class SharedTake:
    """What one check found.

    Attributes:
        now: The time the check was made at (the database's clock, in epoch seconds).
        allowed: The request fits both windows (and was counted, when consuming).
        windows: The key's minute and hour windows as they were before this request.
    """

    now: float
    allowed: bool
    windows: tuple[SlidingWindow, SlidingWindow]


class SharedWindows:
    """Every key's minute and hour windows in a migrated PostgreSQL database.

    Args:
        url: The ``postgresql://`` URL (migration ``0004`` applied).
        clock: Epoch seconds to check at; ``None`` uses the database server's clock.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] | None = None) -> None:
        from rlm.db.connect import open_checked

        self._conn: psycopg.Connection[tuple[object, ...]] = open_checked(url)
        self._conn.autocommit = True  # each check is its own transaction
        # A count is not worth a disk flush per request, as the embedded journal does not
        # sync each one either: a database crash may forget the last few milliseconds of
        # counts (some requests counted again from zero), never corrupt or double them.
        self._conn.execute(b"SET synchronous_commit = off")
        self._clock = clock
        self._lock = threading.Lock()

    def now(self) -> float:
        """This process's idea of the windows' clock (the injected clock, or the wall clock,
        which may differ from the server's by the machines' skew: only for estimates)."""
        return time.time() if self._clock is None else self._clock()

    def take(self, key: str, limits: tuple[int, int], cost: int, *, consume: bool) -> SharedTake:
        """Check (and, with ``consume``, count) ``cost`` units of ``key``.

        Args:
            key: The caller's key.
            limits: The minute and hour limits.
            cost: Units the request counts for.
            consume: Count the request when it fits (else only look).

        Returns:
            The time, the verdict and the windows before this request.
        """
        now = None if self._clock is None else self._clock()
        with self._lock:
            row = self._conn.execute(
                _TAKE, (key, cost, limits[0], limits[1], consume, now)
            ).fetchone()
        assert row is not None  # the function returns exactly one row
        at, allowed, log_at, log_n, bucket_ids, bucket_n = row
        minute, hour = SlidingWindow(60), SlidingWindow(3600, 60.0)
        for stamp, count in zip(_floats(log_at), _ints(log_n), strict=True):
            minute.add(stamp, count)
        for bucket, count in zip(_ints(bucket_ids), _ints(bucket_n), strict=True):
            hour.add(bucket * 60.0, count)
        return SharedTake(float(str(at)), bool(allowed), (minute, hour))

    def reset(self, key: str | None = None) -> None:
        """Forget the counts of ``key`` (or of every key)."""
        with self._lock, self._conn.transaction():
            for table in ("rate_log", "rate_buckets"):
                if key is None:
                    self._conn.execute(f"DELETE FROM {table}".encode())
                else:
                    self._conn.execute(f"DELETE FROM {table} WHERE key = %s".encode(), (key,))

    def purge(self) -> int:
        """Delete rows no window can count any more; how many were deleted."""
        now = None if self._clock is None else self._clock()
        with self._lock, self._conn.transaction():
            clock = "COALESCE(%s, extract(epoch FROM clock_timestamp()))"
            log = self._conn.execute(
                f"DELETE FROM rate_log WHERE at < {clock} - 120".encode(), (now,)
            )
            buckets = self._conn.execute(
                f"DELETE FROM rate_buckets WHERE bucket * 60 < {clock} - %s".encode(),
                (now, _RETAIN_S),
            )
            return int(log.rowcount) + int(buckets.rowcount)

    def tracked_keys(self) -> int:
        """How many keys have rows (for metrics and tests)."""
        with self._lock:
            row = self._conn.execute(
                b"SELECT COUNT(*) FROM (SELECT key FROM rate_buckets"
                b" UNION SELECT key FROM rate_log) k"
            ).fetchone()
        return int(str(row[0])) if row else 0

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _floats(values: object) -> list[float]:
    return [float(v) for v in values] if isinstance(values, list) else []


def _ints(values: object) -> list[int]:
    return [int(v) for v in values] if isinstance(values, list) else []

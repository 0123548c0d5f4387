"""The rate limiter's journal: admitted requests per key and second, so a restart keeps counting.

The limiter's windows live in the engine's core actor. When that process dies, Ray restarts it
within seconds — and without this journal every caller's minute and hour would start again
from zero (a 60/min user got 80 requests in one minute across a crash). Each admitted request
is recorded before it is answered (one SQLite upsert, about 10 µs in WAL mode without a sync
per commit); a new limiter replays the last hour into its windows
(:meth:`rlm.ratelimit.RateLimiter.restore`).

Resolution is one second: a restored request counts from the end of the second it was
admitted in, so it is held in its window up to one second longer than exactly — the limits are
never exceeded, a request may be refused up to a second early after a restart. Rows older than
the longest window are deleted (:meth:`RateJournal.purge`, on the engine's heartbeat), so the
table holds at most one row per key and second of the last hour.

Example:
    >>> journal = RateJournal(Path("/tmp/rate.db"))  # doctest: +SKIP
    >>> journal.record("alice", 1)                   # doctest: +SKIP
    >>> journal.load()                               # doctest: +SKIP
    [('alice', 1733390000, 1)]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = ["RETAIN_S", "RateJournal"]

#: How far back the journal keeps requests: the longest window, and a minute to spare.
RETAIN_S: Final = 3600 + 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_counts (
    key TEXT NOT NULL,
    second INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (key, second)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_counts_second ON rate_counts (second);
"""

# The last minute second by second (the minute windows are exact logs); before that, per key
# and minute (the hour windows count in minute buckets), each at the minute's last second.
_LOAD = """
SELECT key, MAX(second), SUM(n) FROM rate_counts
 WHERE second >= :since AND second < :recent GROUP BY key, second / 60
UNION ALL
SELECT key, second, n FROM rate_counts WHERE second >= :recent
ORDER BY 2
"""


class RateJournal:
    """Admitted requests per key and wall-clock second, in a SQLite file (WAL).

    Args:
        path: The database file (the engine's state file; the table is its own).
        clock: Wall-clock seconds (injected for tests).
        database_url: Keep the journal in this PostgreSQL database instead.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        database_url: str | None = None,
    ) -> None:
        from rlm.tasks.store import open_sqlite

        self._clock = clock
        self._lock = threading.Lock()
        self._conn = open_sqlite(path, database_url)
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def now(self) -> float:
        """The journal's clock."""
        return self._clock()

    def record(self, key: str, cost: int) -> None:
        """Count ``cost`` admitted units of ``key`` in the current second."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO rate_counts VALUES (?, ?, ?)"
                " ON CONFLICT (key, second) DO UPDATE SET n = rate_counts.n + excluded.n",
                (key, int(self._clock()), cost),
            )

    def load(self) -> list[tuple[str, int, int]]:
        """``(key, second, units)`` of the last :data:`RETAIN_S` seconds, oldest first.

        The last minute comes second by second; older requests come summed per key and
        minute, dated at the minute's last second they were seen in — a few rows per key
        however busy the hour was, and never earlier than they happened.
        """
        now = int(self._clock())
        with self._lock:
            rows = self._conn.execute(_LOAD, {"since": now - RETAIN_S, "recent": now - 60})
            found = rows.fetchall()
        return [(str(k), int(s), int(n)) for k, s, n in found]

    def purge(self) -> int:
        """Delete rows past :data:`RETAIN_S`; how many were deleted."""
        with self._lock:
            cursor = self._conn.execute(
                "DELETE FROM rate_counts WHERE second < ?", (int(self._clock()) - RETAIN_S,)
            )
        return int(cursor.rowcount)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

"""One key's count in one sliding window: an exact log or a conservative bucketed counter.

Both modes answer "how much was admitted in the window ending now?" and never under-count, so a
limiter that admits only when ``used + cost <= limit`` never admits more than ``limit`` in any
half-open interval of ``window_s`` seconds.

* **Exact log** (``granularity_s == 0``): one entry per distinct admission time; an entry counts
  while ``now < t + window_s``. Memory grows with the limit (at most ``limit`` entries), which is
  fine for per-minute limits (at most 600 in the API's tiers).
* **Bucketed** (``granularity_s > 0``): admissions are summed into buckets of ``granularity_s``
  seconds; a bucket counts while any of it could lie inside the window, i.e. while
  ``now < (index + 1) * granularity_s + window_s``. Memory is bounded by
  ``window_s / granularity_s + 1`` buckets whatever the limit; the price is that an admission is
  held up to one bucket longer than the exact window (the limit is never exceeded, it may be
  reached a little early). Used for the per-hour limits (up to 50,000).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """Admissions of one key in one window.

    Args:
        window_s: Length of the window in seconds.
        granularity_s: ``0`` for an exact log, else the bucket width in seconds.

    Times passed to the methods must never decrease (a monotonic clock).
    """

    __slots__ = ("_entries", "_granularity_s", "_total", "_window_s")

    def __init__(self, window_s: float, granularity_s: float = 0.0) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        if granularity_s < 0:
            raise ValueError("granularity_s must be >= 0")
        self._window_s = float(window_s)
        self._granularity_s = float(granularity_s)
        # [stamp, count] pairs, oldest first: stamp is the admission time (exact) or the
        # bucket index (bucketed). Lists, not tuples, so the newest entry can be bumped.
        self._entries: deque[list[float]] = deque()
        self._total = 0

    @property
    def window_s(self) -> float:
        """Length of the window in seconds."""
        return self._window_s

    def _stamp(self, now: float) -> float:
        if self._granularity_s == 0:
            return now
        return float(math.floor(now / self._granularity_s))

    def _expires_at(self, stamp: float) -> float:
        if self._granularity_s == 0:
            return stamp + self._window_s
        return (stamp + 1.0) * self._granularity_s + self._window_s

    def _prune(self, now: float) -> None:
        entries = self._entries
        while entries and self._expires_at(entries[0][0]) <= now:
            self._total -= int(entries.popleft()[1])

    def used(self, now: float) -> int:
        """Units counted in the window ending at ``now``.

        Args:
            now: The current time.

        Returns:
            The count (an over-estimate by at most one bucket in bucketed mode).
        """
        self._prune(now)
        return self._total

    def add(self, now: float, cost: int) -> None:
        """Count ``cost`` units admitted at ``now``.

        Args:
            now: The current time.
            cost: Units admitted (> 0).
        """
        self._prune(now)
        stamp = self._stamp(now)
        if self._entries and self._entries[-1][0] == stamp:
            self._entries[-1][1] += cost
        else:
            self._entries.append([stamp, float(cost)])
        self._total += cost

    def wait_for(self, now: float, units: int) -> float:
        """Seconds until at least ``units`` counted units have left the window.

        Args:
            now: The current time.
            units: How many units must leave (> 0).

        Returns:
            The delay (> 0), or ``window_s`` if fewer than ``units`` are counted at all.
        """
        self._prune(now)
        freed = 0
        for stamp, count in self._entries:
            freed += int(count)
            if freed >= units:
                return self._expires_at(stamp) - now
        return self._window_s

    def next_release(self, now: float) -> float:
        """Seconds until the oldest counted unit leaves the window (``0`` if none is counted).

        Args:
            now: The current time.

        Returns:
            The delay.
        """
        self._prune(now)
        if not self._entries:
            return 0.0
        return self._expires_at(self._entries[0][0]) - now

    def is_empty(self, now: float) -> bool:
        """Whether nothing is counted any more (the key can be forgotten).

        Args:
            now: The current time.

        Returns:
            True when the window holds no admissions.
        """
        self._prune(now)
        return not self._entries

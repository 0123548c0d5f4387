"""What a replica last heard of each caller's rate limit: whether ``POST /execute`` may count
the request in the engine call that runs it (one round trip) instead of a call of its own first.

``POST /execute`` promises that a rate-limited caller is refused before anything costly
happens (its body is not parsed, its task not planned). Counting first costs every request a
second round trip to the engine; but a caller the engine said moments ago had room left will
almost always be admitted again. The replica remembers the ``RateLimit`` header of each
caller's last counted request; while that says there is room beyond what this replica has in
flight for the caller, the request takes the fast path and is counted by the engine call that
runs it (which still refuses it, 429, if the room is gone: the engine decides, always). A
caller the replica knows nothing of, or whose room is spent, is counted first, as before.

The memory is bounded (:data:`MAX_CALLERS`, oldest forgotten first) and only ever decides the
order of two steps, never whether a request is counted.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["MAX_CALLERS", "RateHeadroom"]

#: Callers remembered per replica (a few hundred bytes each).
MAX_CALLERS = 10_000

_RATE = re.compile(r"remaining=(\d+),\s*reset=(\d+)")


@dataclass(slots=True)
class _Room:
    remaining: int
    until: float  # monotonic time the window the figure belongs to ends
    in_flight: int = 0


class RateHeadroom:
    """Each caller's room under its rate limit, as the engine last reported it.

    Args:
        clock: Monotonic seconds (a test passes its own).
        max_callers: Callers remembered before the least recently seen is forgotten.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_callers: int = MAX_CALLERS
    ) -> None:
        self._clock = clock
        self._max = max_callers
        self._rooms: OrderedDict[str, _Room] = OrderedDict()

    def claim(self, key: str) -> bool:
        """Whether a request of ``key`` may be counted by the engine call that runs it.

        True when the last figure for ``key`` is current and leaves room beyond the requests
        of ``key`` this replica has in flight on the fast path; the caller then owes a
        :meth:`release` when the request is answered.
        """
        room = self._rooms.get(key)
        if room is None or self._clock() >= room.until:
            return False
        if room.remaining - room.in_flight < 1:
            return False
        room.in_flight += 1
        return True

    def release(self, key: str) -> None:
        """A request :meth:`claim` let through was answered (or failed)."""
        room = self._rooms.get(key)
        if room is not None and room.in_flight > 0:
            room.in_flight -= 1

    def record(self, key: str, headers: Mapping[str, str]) -> None:
        """Remember the ``RateLimit`` header of an answer for ``key`` (a refusal's too)."""
        value = headers.get("RateLimit")
        match = _RATE.search(value) if value is not None else None
        if match is None:
            return
        remaining, reset = int(match[1]), int(match[2])
        until = self._clock() + reset
        room = self._rooms.get(key)
        if room is None:
            self._rooms[key] = _Room(remaining, until)
            if len(self._rooms) > self._max:
                self._rooms.popitem(last=False)
            return
        # The newest answer wins: one that overtook an earlier request's shows less room than
        # there is, which only sends the next request the slow way.
        room.remaining, room.until = remaining, until
        self._rooms.move_to_end(key)

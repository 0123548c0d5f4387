"""The clock seam of the quota core: every window and lease reads time through a :class:`Clock`.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> clock = FrozenClock(datetime(2028, 2, 29, 23, 59, tzinfo=UTC))
    >>> clock.advance(timedelta(minutes=1)).isoformat()
    '2028-03-01T00:00:00+00:00'
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from rlm.errors import InternalError

__all__ = ["Clock", "FrozenClock", "SystemClock", "utc_now_from"]


@runtime_checkable
class Clock(Protocol):
    """Anything that tells the time as a timezone-aware datetime."""

    def now(self) -> datetime:
        """The current instant, timezone-aware (converted to UTC by the reader)."""
        ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        """The current instant in UTC."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to; for tests and replays.

    Args:
        at: The initial instant; must be timezone-aware.
    """

    def __init__(self, at: datetime) -> None:
        self._now = _as_utc(at)

    def now(self) -> datetime:
        """The frozen instant."""
        return self._now

    def set(self, at: datetime) -> datetime:
        """Jump to ``at`` (forwards or backwards) and return it in UTC."""
        self._now = _as_utc(at)
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new instant."""
        self._now = self._now + delta
        return self._now


def utc_now_from(clock: Clock) -> datetime:
    """Read ``clock`` and normalise the answer to UTC.

    Raises:
        InternalError: The clock returned a naive datetime; windows cannot be placed without a
            timezone, and guessing one would move every reset time.
    """
    return _as_utc(clock.now())


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is UTC:
        return at
    if at.tzinfo is None or at.utcoffset() is None:
        raise InternalError("quota clock returned a naive datetime", {"value": at.isoformat()})
    return at.astimezone(UTC)

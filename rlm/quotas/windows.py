"""Quota windows aligned to UTC boundaries: the day, the ISO week and the calendar month.

A window is the half-open interval ``[start, reset)``. ``reset`` (the API's ``resetTime``) is
the next boundary: tomorrow 00:00 UTC, next Monday 00:00 UTC, the first of next month 00:00 UTC.

Example:
    >>> from datetime import UTC, datetime
    >>> window_reset("monthly", datetime(2028, 2, 29, 12, tzinfo=UTC)).isoformat()
    '2028-03-01T00:00:00+00:00'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, get_args

__all__ = [
    "PERIODS",
    "Period",
    "WindowStarts",
    "days_in_month",
    "iso_z",
    "marks_from_row",
    "marks_to_row",
    "window_reset",
    "window_start",
]

Period = Literal["daily", "weekly", "monthly"]

PERIODS: Final[tuple[Period, ...]] = get_args(Period)

_ONE_DAY = timedelta(days=1)


def window_start(period: Period, at: datetime) -> datetime:
    """The first instant of the ``period`` window containing ``at``.

    Args:
        period: ``daily``, ``weekly`` (ISO week, Monday first) or ``monthly`` (calendar month).
        at: A timezone-aware instant.

    Returns:
        The window's start, 00:00 UTC.
    """
    utc = at.astimezone(UTC)
    midnight = datetime(utc.year, utc.month, utc.day, tzinfo=UTC)
    if period == "daily":
        return midnight
    if period == "weekly":
        # weekday() is 0 on Monday, which is where ISO weeks begin.
        return midnight - timedelta(days=utc.weekday())
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def window_reset(period: Period, at: datetime) -> datetime:
    """The next boundary after ``at``: when usage of the current window resets.

    Args:
        period: ``daily``, ``weekly`` or ``monthly``.
        at: A timezone-aware instant.

    Returns:
        The start of the following window, 00:00 UTC.
    """
    start = window_start(period, at)
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    if start.month == 12:
        return datetime(start.year + 1, 1, 1, tzinfo=UTC)
    return datetime(start.year, start.month + 1, 1, tzinfo=UTC)


def days_in_month(at: datetime) -> int:
    """How many days the calendar month containing ``at`` has (29 in February 2028)."""
    start = window_start("monthly", at)
    return (window_reset("monthly", at) - start).days


def iso_z(at: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, as the API's examples and pydantic write it."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class WindowStarts:
    """The start of every window at one instant, computed once per ledger call.

    Attributes:
        now: The instant (UTC).
        daily: Start of today.
        weekly: Start of this ISO week.
        monthly: Start of this calendar month.
        next_month: Start of next calendar month (the monthly reset).
        month_days: Days in the current calendar month (every monthly compute limit reads
            it: worked out once a day, not on each read).
    """

    now: datetime
    daily: datetime
    weekly: datetime
    monthly: datetime
    next_month: datetime
    month_days: int

    @classmethod
    def at(cls, now: datetime, hint: WindowStarts | None = None) -> WindowStarts:
        """The window starts containing ``now`` (UTC).

        Args:
            now: The instant, in UTC.
            hint: Starts computed earlier; reused when ``now`` falls on the same day, which
                spares the calendar arithmetic on every call of a busy ledger.
        """
        if hint is not None and hint.daily <= now < hint.daily + _ONE_DAY:
            return cls(now, hint.daily, hint.weekly, hint.monthly, hint.next_month, hint.month_days)
        daily = window_start("daily", now)
        monthly = daily.replace(day=1)
        next_month = window_reset("monthly", monthly)
        return cls(
            now=now,
            daily=daily,
            weekly=daily - timedelta(days=daily.weekday()),
            monthly=monthly,
            next_month=next_month,
            month_days=(next_month - monthly).days,
        )

    def start(self, period: Period) -> datetime:
        """The start of ``period``'s current window."""
        if period == "daily":
            return self.daily
        if period == "weekly":
            return self.weekly
        return self.monthly

    def reset(self, period: Period) -> datetime:
        """The next boundary of ``period`` (the API's ``resetTime``)."""
        if period == "daily":
            return self.daily + timedelta(days=1)
        if period == "weekly":
            return self.weekly + timedelta(days=7)
        return self.next_month


def marks_to_row(marks: tuple[datetime, list[int]] | None) -> list[Any] | None:
    """Threshold marks (a window's start, the thresholds announced in it) as a JSON row."""
    return None if marks is None else [marks[0].isoformat(), list(marks[1])]


def marks_from_row(row: list[Any] | None) -> tuple[datetime, list[int]] | None:
    """Marks written by :func:`marks_to_row` (``None``: nothing announced)."""
    return None if row is None else (datetime.fromisoformat(row[0]), [int(t) for t in row[1]])

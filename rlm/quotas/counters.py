"""Usage counters of one quota window, and the fixed-point units they count in.

Compute hours and storage are kept as integer micro-units (1 µh = 3.6 ms) so that sums,
transfers and "Σ children ≤ parent" checks are exact; floats appear only at the API edge.
Language-model cost is kept the same way in nano-dollars (a cheap model's call can cost less
than a micro-dollar).

A counter holds two amounts: *used* (charged by reconciled tasks in this window) and *reserved*
(held by open reservations). When the clock crosses the window's boundary, *used* drops to zero
and *reserved* carries over, because the tasks holding it are still running; their actual usage
is charged to the window in which they are reconciled. Language-model tokens and cost are
only *used* here: their holds live with the token book (:mod:`rlm.quotas.tokens`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from rlm.errors import InvalidInput

__all__ = ["MICRO", "NANO", "WindowCounter", "from_micro", "from_nano", "to_micro", "to_nano"]

MICRO: Final[int] = 1_000_000
NANO: Final[int] = 1_000_000_000

# One call's cost in dollars at most: sums of nano-dollars then stay far inside 64-bit JSON ints.
_MAX_COST_USD: Final[float] = 1e9


def to_micro(value: float, *, field: str) -> int:
    """Convert a non-negative amount (hours, GB) to integer micro-units.

    Args:
        value: The amount.
        field: The API field name, reported if the value is refused.

    Returns:
        ``round(value * 1e6)``.

    Raises:
        InvalidInput: ``value`` is negative, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field} must be a number", field=field)
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(f"{field} must be a finite number >= 0", field=field)
    return round(value * MICRO)


def from_micro(value: int) -> float:
    """Convert integer micro-units back to a float amount."""
    return value / MICRO


def to_nano(value: float, *, field: str) -> int:
    """Convert a non-negative amount of dollars (at most 1e9) to integer nano-dollars.

    Raises:
        InvalidInput: ``value`` is negative, NaN, infinite or above 1e9.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field} must be a number", field=field)
    if not math.isfinite(value) or not 0 <= value <= _MAX_COST_USD:
        raise InvalidInput(f"{field} must be a finite number in [0, 1e9]", field=field)
    return round(value * NANO)


def from_nano(value: int) -> float:
    """Convert integer nano-dollars back to dollars."""
    return value / NANO


@dataclass(slots=True)
class WindowCounter:
    """Agent calls and compute held, and language-model tokens and cost used, in one window.

    Attributes:
        start: Start of the window the ``*_used`` amounts belong to.
        agents_used: Agent calls charged by reconciled tasks in that window.
        agents_reserved: Agent calls held by open reservations (any window).
        compute_used: Compute charged in that window, micro-hours.
        compute_reserved: Compute held by open reservations, micro-hours.
        tokens_used: Language-model tokens (input + output) settled in that window.
        cost_used: Language-model cost settled in that window, nano-dollars.
    """

    start: datetime
    agents_used: int = 0
    agents_reserved: int = 0
    compute_used: int = 0
    compute_reserved: int = 0
    tokens_used: int = 0
    cost_used: int = 0

    def held(self, start: datetime) -> tuple[int, int]:
        """Agents and micro-hours held (used + reserved) in the window beginning at ``start``.

        Reads without rolling, so a refused admission leaves the counter untouched.
        """
        if start > self.start:
            return self.agents_reserved, self.compute_reserved
        return (
            self.agents_used + self.agents_reserved,
            self.compute_used + self.compute_reserved,
        )

    def charged(self, start: datetime) -> tuple[int, int]:
        """Agents and micro-hours charged (reconciled only) in the window beginning at ``start``."""
        if start > self.start:
            return 0, 0
        return self.agents_used, self.compute_used

    def tokens(self, start: datetime) -> tuple[int, int]:
        """Tokens and nano-dollars settled in the window beginning at ``start`` (no rolling)."""
        if start > self.start:
            return 0, 0
        return self.tokens_used, self.cost_used

    def __post_init__(self) -> None:
        # Rows store the start as a date; only UTC midnights survive that round trip.
        if self.start.utcoffset() != timedelta(0) or self.start.time() != time(0):
            raise ValueError(f"a window starts at 00:00 UTC, not {self.start.isoformat()}")

    def roll(self, start: datetime) -> None:
        """Move to the window beginning at ``start`` if it is later than the current one.

        A clock that steps backwards never rolls a counter back: usage stays charged.
        """
        if start > self.start:
            self.start = start
            self.agents_used = 0
            self.compute_used = 0
            self.tokens_used = 0
            self.cost_used = 0

    def hold(self, start: datetime, agents: int, compute: int) -> None:
        """Reserve ``agents`` calls and ``compute`` micro-hours."""
        self.roll(start)
        self.agents_reserved += agents
        self.compute_reserved += compute

    def settle(self, start: datetime, reserved: tuple[int, int], charged: tuple[int, int]) -> None:
        """Drop a reservation's hold and charge its actual usage to the current window.

        Args:
            start: Start of the current window.
            reserved: The ``(agents, micro-hours)`` the reservation held.
            charged: The ``(agents, micro-hours)`` actually used.
        """
        self.roll(start)
        # Holds carry across windows, so the subtraction is exact; max() only guards a
        # hand-edited state file from going negative.
        self.agents_reserved = max(0, self.agents_reserved - reserved[0])
        self.compute_reserved = max(0, self.compute_reserved - reserved[1])
        self.agents_used += charged[0]
        self.compute_used += charged[1]

    def charge_tokens(self, start: datetime, tokens: int, cost: int) -> None:
        """Add ``tokens`` and ``cost`` nano-dollars to the current window."""
        self.roll(start)
        self.tokens_used += tokens
        self.cost_used += cost

    def to_row(self) -> list[Any]:
        """A compact JSON-ready row: ``[start date, agents used, agents reserved, compute used,
        compute reserved, tokens used, cost used]`` (window starts are UTC midnights, so the
        date is the whole start)."""
        return [
            _day(self.start),
            self.agents_used,
            self.agents_reserved,
            self.compute_used,
            self.compute_reserved,
            self.tokens_used,
            self.cost_used,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> WindowCounter:
        """Rebuild a counter written by :meth:`to_row` (rows written before token usage was
        counted have five fields)."""
        day = date.fromisoformat(row[0])
        return cls(
            start=datetime(day.year, day.month, day.day, tzinfo=UTC),
            agents_used=int(row[1]),
            agents_reserved=int(row[2]),
            compute_used=int(row[3]),
            compute_reserved=int(row[4]),
            tokens_used=int(row[5]) if len(row) > 5 else 0,
            cost_used=int(row[6]) if len(row) > 6 else 0,
        )


@functools.lru_cache(maxsize=64)
def _day(start: datetime) -> str:
    # Every counter of a busy ledger shares a handful of window starts; format each once.
    return start.date().isoformat()

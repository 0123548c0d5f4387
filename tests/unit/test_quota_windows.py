"""Quota windows on a frozen clock: UTC days, ISO weeks (Monday first), calendar months.

Covers month ends (31st -> 1st, 30 April), 29 February 2028, the new year inside an ISO week,
and that usage really resets when the clock crosses a boundary - not a microsecond earlier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from rlm.errors import InternalError, QuotaExceeded
from rlm.models.quotas import QuotaConfig
from rlm.quotas import FrozenClock, Period, QuotaLedger, window_reset, window_start
from rlm.quotas.windows import WindowStarts, days_in_month, iso_z

TICK = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "period", "start", "reset"),
    [
        # Days.
        (utc(2028, 2, 28, 23, 59, 59), "daily", utc(2028, 2, 28), utc(2028, 2, 29)),
        (utc(2028, 2, 29, 0, 0), "daily", utc(2028, 2, 29), utc(2028, 3, 1)),
        (utc(2028, 2, 29, 23, 59, 59), "daily", utc(2028, 2, 29), utc(2028, 3, 1)),
        (utc(2027, 2, 28, 12), "daily", utc(2027, 2, 28), utc(2027, 3, 1)),
        (utc(2027, 12, 31, 23, 59), "daily", utc(2027, 12, 31), utc(2028, 1, 1)),
        # ISO weeks start on Monday 00:00 UTC.
        (utc(2028, 3, 5, 23, 59, 59), "weekly", utc(2028, 2, 28), utc(2028, 3, 6)),
        (utc(2028, 3, 6, 0, 0), "weekly", utc(2028, 3, 6), utc(2028, 3, 13)),
        (utc(2028, 2, 29, 10), "weekly", utc(2028, 2, 28), utc(2028, 3, 6)),
        # 1 January 2028 is a Saturday of ISO week 52 of 2027: the week spans the new year.
        (utc(2028, 1, 1, 12), "weekly", utc(2027, 12, 27), utc(2028, 1, 3)),
        (utc(2027, 12, 27, 0, 0), "weekly", utc(2027, 12, 27), utc(2028, 1, 3)),
        # Calendar months.
        (utc(2028, 1, 31, 23, 59, 59), "monthly", utc(2028, 1, 1), utc(2028, 2, 1)),
        (utc(2028, 2, 29, 23, 59, 59), "monthly", utc(2028, 2, 1), utc(2028, 3, 1)),
        (utc(2027, 2, 28, 23, 59, 59), "monthly", utc(2027, 2, 1), utc(2027, 3, 1)),
        (utc(2028, 4, 30, 23, 59, 59), "monthly", utc(2028, 4, 1), utc(2028, 5, 1)),
        (utc(2028, 5, 1, 0, 0), "monthly", utc(2028, 5, 1), utc(2028, 6, 1)),
        (utc(2028, 12, 31, 23, 59), "monthly", utc(2028, 12, 1), utc(2029, 1, 1)),
    ],
)
def test_window_start_and_reset(
    at: datetime, period: Period, start: datetime, reset: datetime
) -> None:
    assert window_start(period, at) == start
    assert window_reset(period, at) == reset
    starts = WindowStarts.at(at)
    assert starts.start(period) == start
    assert starts.reset(period) == reset


def test_other_timezones_are_read_in_utc() -> None:
    # 2028-03-01 01:30 in UTC+3 is still 29 February in UTC.
    at = datetime(2028, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=3)))
    assert window_start("daily", at) == utc(2028, 2, 29)
    assert window_start("monthly", at) == utc(2028, 2, 1)


def test_days_in_month() -> None:
    assert days_in_month(utc(2028, 2, 10)) == 29
    assert days_in_month(utc(2027, 2, 10)) == 28
    assert days_in_month(utc(2028, 4, 30)) == 30
    assert days_in_month(utc(2028, 1, 31)) == 31


def test_iso_z() -> None:
    assert iso_z(utc(2028, 2, 29)) == "2028-02-29T00:00:00Z"


def test_naive_clock_is_refused() -> None:
    ledger = QuotaLedger(_NaiveClock())
    with pytest.raises(InternalError):
        ledger.user_status("ada")
    with pytest.raises(InternalError):
        FrozenClock(datetime(2028, 1, 1))


class _NaiveClock:
    def now(self) -> datetime:
        return datetime(2028, 1, 1)


def _ledger(
    at: datetime, daily: int = 10, weekly: int = 30, monthly: int = 60
) -> tuple[QuotaLedger, FrozenClock]:
    clock = FrozenClock(at)
    ledger = QuotaLedger(clock)
    ledger.set_user_config(
        QuotaConfig(
            user_id="ada",
            daily_agent_limit=daily,
            weekly_agent_limit=weekly,
            monthly_agent_limit=monthly,
            daily_compute_hours=2.0,
            max_concurrent_agents=5,
            max_storage_gb=1.0,
        )
    )
    return ledger, clock


def _spend(ledger: QuotaLedger, agents: int, task: str) -> None:
    res = ledger.reserve("ada", agents, tier="user", task_id=task)
    ledger.reconcile(res.reservation_id, agents, 0.0)


@pytest.mark.parametrize(
    "boundary",
    [
        utc(2028, 2, 29),  # into the leap day
        utc(2028, 3, 1),  # out of the leap day and of February
        utc(2028, 2, 1),  # 31 January -> 1 February
        utc(2028, 5, 1),  # 30 April -> 1 May (also a Monday)
        utc(2028, 1, 1),  # new year, mid ISO week
    ],
)
def test_daily_usage_resets_exactly_at_midnight(boundary: datetime) -> None:
    ledger, clock = _ledger(boundary - timedelta(hours=1))
    _spend(ledger, 10, "t1")
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 1, tier="user", task_id="t2")
    assert info.value.details["period"] == "daily"
    assert info.value.details["resetTime"] == iso_z(boundary)

    clock.set(boundary - TICK)
    assert ledger.user_status("ada").daily.agents_used == 10
    assert not ledger.check("ada", 1, tier="user").allowed

    clock.set(boundary)
    status = ledger.user_status("ada")
    assert status.daily.agents_used == 0
    assert status.daily.agents_remaining == 10
    assert status.daily.reset_time == boundary + timedelta(days=1)
    assert ledger.check("ada", 1, tier="user").allowed
    _spend(ledger, 10, "t3")
    assert ledger.user_status("ada").daily.exceeded


def test_weekly_usage_resets_on_monday_not_on_sunday() -> None:
    # Thursday 2028-03-02 .. Sunday 2028-03-05: three days of 10 fill the week (30).
    ledger, clock = _ledger(utc(2028, 3, 2, 9))
    for day in range(3):
        clock.set(utc(2028, 3, 2 + day, 9))
        _spend(ledger, 10, f"d{day}")
    clock.set(utc(2028, 3, 5, 23, 59, 59))
    assert ledger.user_status("ada").daily.agents_used == 0
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 1, tier="user", task_id="sun")
    assert info.value.details["period"] == "weekly"
    assert info.value.details["resetTime"] == "2028-03-06T00:00:00Z"

    clock.set(utc(2028, 3, 6))
    status = ledger.user_status("ada")
    assert status.weekly.agents_used == 0
    assert status.weekly.reset_time == utc(2028, 3, 13)
    # March is still the same month: the monthly window kept the 30.
    assert status.monthly.agents_used == 30


def test_weekly_window_spans_the_new_year() -> None:
    ledger, clock = _ledger(utc(2027, 12, 31, 12), daily=20, weekly=25)
    _spend(ledger, 20, "fri")
    clock.set(utc(2028, 1, 1, 12))
    status = ledger.user_status("ada")
    assert status.weekly.agents_used == 20  # same ISO week (52 of 2027)
    assert status.monthly.agents_used == 0  # a new month
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 6, tier="user", task_id="sat")
    assert info.value.details["period"] == "weekly"
    clock.set(utc(2028, 1, 3))
    assert ledger.user_status("ada").weekly.agents_used == 0


@pytest.mark.parametrize(
    ("last_day", "first_day"),
    [
        (utc(2028, 1, 31, 18), utc(2028, 2, 1)),
        (utc(2028, 2, 29, 18), utc(2028, 3, 1)),
        (utc(2028, 4, 30, 18), utc(2028, 5, 1)),
        (utc(2027, 2, 28, 18), utc(2027, 3, 1)),
    ],
)
def test_monthly_usage_resets_on_the_first(last_day: datetime, first_day: datetime) -> None:
    ledger, clock = _ledger(last_day, daily=100, weekly=100, monthly=60)
    _spend(ledger, 60, "last")
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 1, tier="user", task_id="late")
    assert info.value.details["period"] == "monthly"
    assert info.value.details["resetTime"] == iso_z(first_day)
    clock.set(first_day - TICK)
    assert ledger.user_status("ada").monthly.agents_used == 60
    clock.set(first_day)
    status = ledger.user_status("ada")
    assert status.monthly.agents_used == 0
    assert status.monthly.reset_time == window_reset("monthly", first_day)


def test_monthly_compute_limit_follows_the_month_length() -> None:
    ledger, clock = _ledger(utc(2028, 2, 29, 12))
    assert ledger.user_status("ada").monthly.compute_hours_limit == 29 * 2.0
    assert ledger.user_status("ada").weekly.compute_hours_limit == 7 * 2.0
    clock.set(utc(2028, 4, 30))
    assert ledger.user_status("ada").monthly.compute_hours_limit == 30 * 2.0


def test_a_hold_survives_the_boundary_and_actual_lands_in_the_new_window() -> None:
    ledger, clock = _ledger(utc(2028, 2, 29, 23, 30))
    _spend(ledger, 4, "before")
    res = ledger.reserve("ada", 5, tier="user", task_id="across")
    clock.set(utc(2028, 3, 1, 0, 30))
    status = ledger.user_status("ada")
    # The running task still holds its 5; the 4 charged yesterday are gone.
    assert status.daily.agents_used == 5
    assert status.monthly.agents_used == 5
    ledger.reconcile(res.reservation_id, 3, 0.0)
    status = ledger.user_status("ada")
    assert status.daily.agents_used == 3
    assert status.weekly.agents_used == 4 + 3  # same ISO week (Mon 28 Feb .. Sun 5 Mar)
    assert status.monthly.agents_used == 3


def test_a_clock_stepping_back_never_uncharges() -> None:
    ledger, clock = _ledger(utc(2028, 3, 1, 0, 10))
    _spend(ledger, 7, "t")
    clock.set(utc(2028, 2, 29, 23, 50))
    assert ledger.user_status("ada").daily.agents_used == 7

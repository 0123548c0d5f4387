"""Backoff bounds (properties), Retry-After, the delivery state machine and webhook health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.webhooks.backoff import RetrySchedule, parse_retry_after
from rlm.webhooks.lifecycle import AttemptResult, Health, decide, disable_reason
from rlm.webhooks.settings import WebhookSettings

DEFAULT = RetrySchedule.from_settings(WebhookSettings())

schedules = st.builds(
    RetrySchedule,
    base_s=st.floats(0.01, 100.0),
    factor=st.floats(1.0, 10.0),
    max_delay_s=st.floats(100.0, 100_000.0),
    jitter=st.floats(0.0, 0.5),
)
draws = st.floats(0.0, 1.0, exclude_max=True)


@given(schedules, st.integers(1, 10_000), draws)
def test_a_delay_is_within_the_jitter_of_its_nominal_wait(
    schedule: RetrySchedule, attempts: int, draw: float
) -> None:
    nominal = schedule.nominal(attempts)
    expected = schedule.base_s
    for _ in range(attempts - 1):  # the definition, step by step (capped: no overflow)
        expected = min(expected * schedule.factor, schedule.max_delay_s)
    assert nominal == pytest.approx(min(expected, schedule.max_delay_s), rel=1e-9)
    delay = schedule.delay(attempts, rand=lambda: draw)
    low, high = nominal * (1 - schedule.jitter), nominal * (1 + schedule.jitter)
    assert low - 1e-9 <= delay <= high + 1e-9
    assert 0 < delay <= schedule.max_delay_s * 1.5


@given(schedules, st.integers(1, 200))
def test_nominal_waits_never_shrink(schedule: RetrySchedule, attempts: int) -> None:
    assert schedule.nominal(attempts + 1) >= schedule.nominal(attempts)


@given(schedules, st.integers(1, 50), st.floats(0.0, 1e7), draws)
def test_retry_after_is_honoured_up_to_the_longest_wait(
    schedule: RetrySchedule, attempts: int, retry_after: float, draw: float
) -> None:
    delay = schedule.delay(attempts, retry_after_s=retry_after, rand=lambda: draw)
    assert delay == min(retry_after, schedule.max_delay_s)


@given(st.lists(draws, min_size=64, max_size=64))
def test_the_default_schedule_retries_for_about_a_day(rolls: list[float]) -> None:
    """Every path (whatever the jitter draws) makes a dozen or so attempts within the day."""
    horizon = WebhookSettings().retry_horizon_s
    now, attempts = 0.0, 1
    draws_left = iter(rolls)
    while True:
        decision = decide(
            AttemptResult(500, 1.0, "HTTP 500"),
            attempts=attempts,
            now=now,
            expires_at=horizon,
            schedule=DEFAULT,
            rand=lambda: next(draws_left),
        )
        if decision.status == "failed":
            break
        assert decision.status == "pending" and decision.next_attempt_at is not None
        assert now < decision.next_attempt_at <= horizon
        now, attempts = decision.next_attempt_at, attempts + 1
    assert 10 <= attempts <= 14
    assert now > horizon - DEFAULT.max_delay_s * 1.2  # the last attempt falls late in the day
    assert decision.error is not None and "gave up" in decision.error


def test_first_waits_of_the_default_schedule() -> None:
    assert [DEFAULT.delay(n, rand=lambda: 0.5) for n in range(1, 9)] == [
        5.0,
        20.0,
        80.0,
        320.0,
        1280.0,
        5120.0,
        14400.0,
        14400.0,
    ]


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ", now) == 7.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    for junk in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(junk, now) is None


@pytest.mark.parametrize(
    ("result", "status", "disable"),
    [
        (AttemptResult(200, 3.0), "succeeded", None),
        (AttemptResult(204, 3.0), "succeeded", None),
        (AttemptResult(410, 3.0, "HTTP 410"), "failed", "the receiver answered 410 Gone"),
        (AttemptResult(500, 3.0, "HTTP 500"), "pending", None),
        (AttemptResult(404, 3.0, "HTTP 404"), "pending", None),
        (AttemptResult(301, 3.0, "HTTP 301"), "pending", None),  # redirects are not followed
        (AttemptResult(None, 3.0, "cannot connect"), "pending", None),
    ],
)
def test_what_follows_an_attempt(result: AttemptResult, status: str, disable: str | None) -> None:
    decision = decide(
        result, attempts=1, now=1000.0, expires_at=90_000.0, schedule=DEFAULT, rand=lambda: 0.5
    )
    assert (decision.status, decision.disable) == (status, disable)
    if status == "pending":
        assert decision.next_attempt_at == 1005.0
    else:
        assert decision.next_attempt_at is None


def test_retry_after_sets_the_next_attempt_and_can_end_the_delivery() -> None:
    slow_down = AttemptResult(429, 1.0, "HTTP 429", retry_after_s=60.0)
    decision = decide(slow_down, attempts=1, now=0.0, expires_at=1000.0, schedule=DEFAULT)
    assert (decision.status, decision.next_attempt_at) == ("pending", 60.0)
    late = decide(slow_down, attempts=1, now=0.0, expires_at=30.0, schedule=DEFAULT)
    assert late.status == "failed"


def test_a_webhook_is_disabled_after_failing_long_enough_and_often_enough() -> None:
    settings = WebhookSettings(disable_after_s=100.0, disable_min_failures=3)
    health = Health()
    for t in (0.0, 50.0):
        health = health.after(False, t)
        assert disable_reason(health, t, settings) is None
    assert (health.consecutive_failures, health.failing_since) == (2, 0.0)
    health = health.after(False, 99.0)
    assert disable_reason(health, 99.0, settings) is None  # 3 failures, but not 100 s yet
    health = health.after(False, 100.0)
    reason = disable_reason(health, 100.0, settings)
    assert reason is not None and "4 attempts in a row" in reason
    assert health.after(True, 101.0) == Health()  # one success forgives everything
    # Many failures in a short time are not enough either.
    burst = Health(50, 10.0)
    assert disable_reason(burst, 20.0, settings) is None

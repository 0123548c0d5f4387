"""Usage over time: hourly buckets charged on settlement, served per window and bucket size,
stored by both state stores like every other ledger entity, and pruned after the retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rlm.db import migrate
from rlm.db.connect import connect
from rlm.errors import InvalidInput
from rlm.quotas import FrozenClock, QuotaLedger, QuotaLedgerService
from rlm.quotas.usage import USAGE_RETENTION

# A Tuesday: the ISO week began the day before, the month on the 1st.
NOW = datetime(2028, 2, 29, 9, 30, tzinfo=UTC)


def _org_team(ledger: QuotaLedger | QuotaLedgerService) -> None:
    ledger.create_org("acme", "Acme", None, 1000, 100.0, 50.0)
    ledger.create_org("eng", "Eng", "acme", 500, 50.0, 20.0)
    ledger.create_team("t", "Team", 200, 20.0, 5.0, "eng")
    ledger.add_member("t", "ada", "member")
    ledger.set_user_org("ada", "eng")


def _run(ledger: QuotaLedger | QuotaLedgerService, task: str, planned: int, used: int) -> None:
    res = ledger.reserve("ada", planned, tier="power_user", task_id=task)
    ledger.reconcile(res.reservation_id, used, 0.25)


def test_hourly_buckets_follow_the_settlements() -> None:
    clock = FrozenClock(NOW)
    ledger = QuotaLedger(clock)
    _org_team(ledger)
    _run(ledger, "t1", 10, 7)
    clock.advance(timedelta(hours=2))  # 11:30
    _run(ledger, "t2", 5, 3)
    released = ledger.reserve("ada", 9, tier="power_user", task_id="t3")
    ledger.release(released.reservation_id)  # nothing charged: no usage drawn

    day = ledger.usage_history("user", "ada", "daily", "hour")
    assert day.start == datetime(2028, 2, 29, tzinfo=UTC)
    assert day.reset_time == datetime(2028, 3, 1, tzinfo=UTC)
    # From midnight to the bucket holding now (11:00), empty hours included.
    assert [b.start.hour for b in day.buckets] == list(range(12))
    used = {b.start.hour: b.agents_used for b in day.buckets if b.agents_used}
    assert used == {9: 7, 11: 3}
    assert day.buckets[9].compute_hours_used == pytest.approx(0.25)
    assert day.total.agents_used == 10
    assert day.total.compute_hours_used == pytest.approx(0.5)
    # The team's pool and every org of the chain draw the same usage.
    for level, entity in (("team", "t"), ("org", "eng"), ("org", "acme")):
        assert ledger.usage_history(level, entity).total.agents_used == 10
    assert ledger.usage_history("user", "bob").total.agents_used == 0


def test_day_buckets_cover_the_week_and_month_windows() -> None:
    clock = FrozenClock(NOW - timedelta(days=1))  # Monday: the week's first day
    ledger = QuotaLedger(clock)
    _org_team(ledger)
    _run(ledger, "mon", 4, 4)
    clock.advance(timedelta(days=1))
    _run(ledger, "tue", 6, 6)

    week = ledger.usage_history("user", "ada", "weekly", "day")
    assert week.start == datetime(2028, 2, 28, tzinfo=UTC)
    assert [(b.start.day, b.agents_used) for b in week.buckets] == [(28, 4), (29, 6)]
    month = ledger.usage_history("org", "acme", "monthly", "day")
    assert len(month.buckets) == 29 and month.buckets[0].start.day == 1
    assert month.total.agents_used == 10
    today = ledger.usage_history("user", "ada", "daily", "day")
    assert [b.agents_used for b in today.buckets] == [6]


def test_tokens_and_cost_land_in_their_hour() -> None:
    clock = FrozenClock(NOW)
    ledger = QuotaLedger(clock)
    _org_team(ledger)
    hold = ledger.reserve_tokens("ada", 1000, tier="power_user")
    ledger.settle_tokens(hold.hold_id, 300, 200, 0.0125)
    day = ledger.usage_history("team", "t")
    assert day.buckets[9].tokens_used == 500
    assert day.buckets[9].cost_usd == pytest.approx(0.0125)
    assert day.total.agents_used == 0


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("tenant", "ada", "daily", "hour"), "level"),
        (("user", "ada", "yearly", "hour"), "period"),
        (("user", "ada", "daily", "minute"), "bucket"),
    ],
)
def test_unknown_level_period_or_bucket_is_refused(args: tuple[str, ...], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        QuotaLedger(FrozenClock(NOW)).usage_history(*args)
    assert err.value.details["field"] == field


def test_buckets_older_than_the_retention_are_pruned() -> None:
    clock = FrozenClock(NOW)
    ledger = QuotaLedger(clock)
    _org_team(ledger)
    _run(ledger, "old", 2, 2)
    ledger.pop_changes()
    clock.advance(USAGE_RETENTION - timedelta(hours=1))
    ledger.prune_history(timedelta(days=400))
    assert ledger.snapshot()["usage"]  # still within the retention
    clock.advance(timedelta(hours=2))
    ledger.prune_history(timedelta(days=400))
    assert ledger.snapshot()["usage"] == {}
    # The deletes reach the store: one per bucket (user, team, two orgs).
    assert sorted(k for k, _ in ledger.pop_changes().deletes).count("usage") == 4


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    with connect(url) as conn:
        migrate(conn)
    return url


def test_history_survives_a_restart_of_either_store(database: str | None, tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    path = tmp_path / "state" / "quotas.db"
    service = QuotaLedgerService(path, clock=clock, database_url=database)
    _org_team(service)
    _run(service, "t1", 10, 7)
    service.set_user_org("sso:ada@acme", "eng")  # ids may hold ":", which keys also use
    hold = service.reserve_tokens("sso:ada@acme", 100, tier="user")
    service.settle_tokens(hold.hold_id, 40, 2, 0.5)
    clock.advance(timedelta(hours=1))
    _run(service, "t2", 3, 3)
    before = service.usage_history("org", "acme", "daily", "hour")
    service.close()

    again = QuotaLedgerService(path, clock=clock, database_url=database)
    try:
        after = again.usage_history("org", "acme", "daily", "hour")
        assert after == before
        assert [b.agents_used for b in after.buckets[9:11]] == [7, 3]
        assert again.usage_history("user", "sso:ada@acme").total.tokens_used == 42
        assert after.total.cost_usd == pytest.approx(0.5)
        # New usage adds to the restored bucket instead of replacing it.
        _run(again, "t3", 1, 1)
        assert again.usage_history("user", "ada").buckets[10].agents_used == 4
    finally:
        again.close()

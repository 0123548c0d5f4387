"""Rate-limit windows survive a restart: the journal, and a new limiter that replays it."""

from __future__ import annotations

from pathlib import Path

from rlm.auth import TIERS
from rlm.ratelimit import RateJournal, RateLimiter
from rlm.ratelimit.journal import RETAIN_S

USER = TIERS["user"]  # 60 per minute, 1,000 per hour


class Clock:
    """Seconds that move only when told to (a monotonic and a wall clock alike)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_a_new_limiter_continues_the_minute_of_the_one_before(
    database_url: str | None, tmp_path: Path
) -> None:
    wall = Clock(1_700_000_000.0)
    first = RateLimiter(
        Clock(50.0), journal=RateJournal(tmp_path / "s.db", clock=wall, database_url=database_url)
    )
    for _ in range(40):
        assert first.check_and_consume("alice", USER).allowed
    assert not first.peek("bob", USER).remaining < 59  # others are untouched

    # The engine dies and a new one starts 10 s later, on a fresh monotonic clock.
    wall.now += 10.0
    second = RateLimiter(
        Clock(7.0), journal=RateJournal(tmp_path / "s.db", clock=wall, database_url=database_url)
    )
    decision = second.check_and_consume("alice", USER)
    assert decision.allowed and decision.remaining == 60 - 41
    for _ in range(19):
        assert second.check_and_consume("alice", USER).allowed
    refused = second.check_and_consume("alice", USER)
    assert not refused.allowed and refused.policy == "minute"
    # The restored requests leave the window no earlier than the real ones would have.
    assert refused.retry_after_s >= 60.0 - 10.0


def test_refused_requests_are_not_journaled(database_url: str | None, tmp_path: Path) -> None:
    wall = Clock(1_700_000_000.0)
    journal = RateJournal(tmp_path / "s.db", clock=wall, database_url=database_url)
    limiter = RateLimiter(Clock(0.0), journal=journal)
    for _ in range(70):
        limiter.check_and_consume("alice", USER)
    assert sum(n for _, _, n in journal.load()) == 60


def test_the_journal_keeps_one_hour_and_a_minute(database_url: str | None, tmp_path: Path) -> None:
    wall = Clock(1_700_000_000.0)
    journal = RateJournal(tmp_path / "s.db", clock=wall, database_url=database_url)
    journal.record("alice", 1)
    journal.record("alice", 2)  # the same second: one row
    assert journal.load() == [("alice", 1_700_000_000, 3)]
    wall.now += RETAIN_S
    assert journal.purge() == 0
    wall.now += 1
    assert journal.load() == []
    assert journal.purge() == 1


def test_an_hour_old_request_still_counts_in_the_hour_after_a_restart(
    database_url: str | None, tmp_path: Path
) -> None:
    wall = Clock(1_700_000_000.0)
    first = RateLimiter(
        Clock(0.0), journal=RateJournal(tmp_path / "s.db", clock=wall, database_url=database_url)
    )
    for _ in range(50):
        first.check_and_consume("alice", USER)
    wall.now += 1800.0  # half an hour later: the minute is clear, the hour is not
    second = RateLimiter(
        Clock(0.0), journal=RateJournal(tmp_path / "s.db", clock=wall, database_url=database_url)
    )
    states = {s.name: s for s in second.peek("alice", USER).policies}
    assert states["minute"].remaining == 59
    assert states["hour"].remaining == 1000 - 51


def test_older_requests_load_as_one_row_per_key_and_minute(
    database_url: str | None, tmp_path: Path
) -> None:
    wall = Clock(1_700_000_000.0)
    journal = RateJournal(tmp_path / "s.db", clock=wall, database_url=database_url)
    for _ in range(120):  # two busy minutes, a request a second
        journal.record("alice", 1)
        wall.now += 1.0
    wall.now += 600.0
    journal.record("alice", 1)
    rows = journal.load()
    assert sum(n for _, _, n in rows) == 121
    assert len(rows) <= 4  # the old minutes summed (a minute boundary may split one), now's row
    assert rows == sorted(rows, key=lambda r: r[1])
    assert rows[-1] == ("alice", int(wall.now), 1)

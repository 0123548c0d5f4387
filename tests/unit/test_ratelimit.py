"""The request-rate limiter with a fake clock: tiers, windows, headers, refusals.

Tests taking the ``limiter`` fixture run twice: on the embedded in-memory windows (the SQLite
state store's) and on the windows shared in PostgreSQL (``RLM_DATABASE_URL``), which must
decide and report exactly the same."""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

import rlm.ratelimit
from rlm.auth import TIERS, Principal, TierLimits
from rlm.errors import RateLimited
from rlm.ratelimit import RateDecision, RateLimiter, SharedWindows, enforce

ANON = TIERS["anonymous"]
USER = TIERS["user"]


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock, database_url: str | None) -> Iterator[RateLimiter]:
    if database_url is None:
        yield RateLimiter(clock)
        return
    shared = SharedWindows(database_url, clock=clock)
    yield RateLimiter(shared=shared)
    shared.close()


def test_anonymous_eleventh_request_in_a_minute_is_refused(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    key = Principal.anonymous("198.51.100.4").rate_limit_key
    for i in range(10):
        decision = limiter.check_and_consume(key, ANON)
        assert decision.allowed
        assert decision.remaining == 9 - i
        clock.advance(0.5)
    refused = limiter.check_and_consume(key, ANON)
    assert not refused.allowed
    assert refused.policy == "minute"
    assert refused.limit == 10
    assert refused.remaining == 0
    # The first request (t=1000.0) leaves the window at t=1060.0; now is t=1005.0.
    assert refused.retry_after_s == pytest.approx(55.0)
    assert 1 <= refused.retry_after_header_s <= 60
    assert refused.headers()["Retry-After"] == "55"


def test_retry_after_is_at_most_sixty_for_a_burst(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(10):
        assert limiter.check_and_consume("burst", ANON).allowed
    clock.advance(0.25)
    refused = limiter.check_and_consume("burst", ANON)
    assert not refused.allowed
    assert 59 < refused.retry_after_s <= 60
    assert refused.headers()["Retry-After"] == "60"


def test_window_rolls_over(limiter: RateLimiter, clock: FakeClock) -> None:
    for _ in range(10):
        limiter.check_and_consume("k", ANON)
    clock.advance(59.999)
    assert not limiter.check_and_consume("k", ANON).allowed
    clock.advance(0.001)
    after = limiter.check_and_consume("k", ANON)
    assert after.allowed
    # All ten left the window at once, so nine remain after this request.
    assert after.remaining == 9


def test_sliding_not_fixed_windows(limiter: RateLimiter, clock: FakeClock) -> None:
    # 5 at t=0 and 5 at t=30: at t=61 only the first five have left, so exactly five fit.
    for _ in range(5):
        limiter.check_and_consume("k", ANON)
    clock.advance(30)
    for _ in range(5):
        limiter.check_and_consume("k", ANON)
    clock.advance(31)
    admitted = sum(limiter.check_and_consume("k", ANON).allowed for _ in range(10))
    assert admitted == 5


def test_hour_limit(limiter: RateLimiter, clock: FakeClock) -> None:
    # Ten a minute for ten minutes stays under the minute limit and fills the hour (100).
    for _ in range(10):
        for _ in range(10):
            assert limiter.check_and_consume("k", ANON).allowed
        clock.advance(60)
    refused = limiter.check_and_consume("k", ANON)
    assert not refused.allowed
    assert refused.policy == "hour"
    assert refused.limit == 100
    assert refused.window_s == 3600
    # The first minute's requests leave the (bucketed) hour at most one bucket late.
    assert 3000 <= refused.retry_after_s <= 3600
    headers = refused.headers()
    assert headers["RateLimit"].startswith("limit=100, remaining=0, reset=")
    assert 1 <= int(headers["Retry-After"]) <= 3660
    clock.advance(refused.retry_after_s)
    assert limiter.check_and_consume("k", ANON).allowed


def test_refused_request_consumes_nothing(limiter: RateLimiter, clock: FakeClock) -> None:
    tier = TierLimits(requests_per_minute=5, requests_per_hour=7, concurrent_agents=0)
    for _ in range(5):
        assert limiter.check_and_consume("k", tier).allowed
    clock.advance(60)
    assert limiter.check_and_consume("k", tier, cost=2).allowed  # hour: 7 of 7
    before = limiter.peek("k", tier)
    assert not before.allowed
    assert before.policy == "hour"
    minute_before = before.policies[0]
    for _ in range(20):
        assert not limiter.check_and_consume("k", tier).allowed
    after = limiter.peek("k", tier)
    assert after == before
    # The minute window kept its count: the refusals by the hour left it untouched.
    assert after.policies[0].remaining == minute_before.remaining == 3


def test_cost_counts_against_both_windows(limiter: RateLimiter) -> None:
    decision = limiter.check_and_consume("k", USER, cost=25)
    assert decision.allowed
    minute, hour = decision.policies
    assert (minute.remaining, hour.remaining) == (35, 975)
    refused = limiter.check_and_consume("k", USER, cost=36)
    assert not refused.allowed
    assert refused.remaining == 35


def test_cost_above_limit_is_never_admitted(limiter: RateLimiter) -> None:
    refused = limiter.check_and_consume("k", ANON, cost=11)
    assert not refused.allowed
    assert refused.retry_after_s == 60
    assert limiter.tracked_keys() == 0


def test_zero_limit_refuses(limiter: RateLimiter) -> None:
    closed = TierLimits(0, 0, 0)
    decision = limiter.check_and_consume("k", closed)
    assert not decision.allowed
    assert decision.retry_after_header_s >= 1


def test_keys_are_independent(limiter: RateLimiter) -> None:
    for _ in range(10):
        limiter.check_and_consume("a", ANON)
    assert not limiter.check_and_consume("a", ANON).allowed
    assert limiter.check_and_consume("b", ANON).allowed


def test_tier_change_keeps_counts(limiter: RateLimiter) -> None:
    for _ in range(10):
        limiter.check_and_consume("k", USER)
    assert not limiter.check_and_consume("k", ANON).allowed
    assert limiter.check_and_consume("k", USER).remaining == 49


def test_headers_draft_07(limiter: RateLimiter, clock: FakeClock) -> None:
    first = limiter.check_and_consume("k", USER)
    assert first.headers() == {
        "RateLimit-Policy": "60;w=60, 1000;w=3600",
        "RateLimit": "limit=60, remaining=59, reset=60",
    }
    clock.advance(30.5)
    second = limiter.check_and_consume("k", USER)
    # reset: the first request leaves the minute window in 29.5 s, rounded up.
    assert second.headers()["RateLimit"] == "limit=60, remaining=58, reset=30"
    assert "Retry-After" not in second.headers()


def test_binding_policy_is_the_one_closest_to_running_out(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    tier = TierLimits(requests_per_minute=10, requests_per_hour=12, concurrent_agents=0)
    for _ in range(9):
        limiter.check_and_consume("k", tier)
    decision = limiter.check_and_consume("k", tier)
    # minute: 0 left, hour: 2 left -> the minute policy is advertised.
    assert (decision.policy, decision.remaining) == ("minute", 0)
    clock.advance(60)
    decision = limiter.check_and_consume("k", tier)
    assert (decision.policy, decision.limit, decision.remaining) == ("hour", 12, 1)


def test_enforce_raises_rate_limited(limiter: RateLimiter) -> None:
    for _ in range(10):
        assert enforce(limiter, "k", ANON).allowed
    with pytest.raises(RateLimited) as excinfo:
        enforce(limiter, "k", ANON)
    err = excinfo.value
    assert err.status == 429
    assert err.code == "RATE_LIMITED"
    assert err.details["limit"] == 10
    assert err.details["window"] == 60
    assert err.details["policy"] == "minute"
    assert 1 <= err.details["retryAfterS"] <= 60
    assert err.retry_after_s == err.details["retryAfterS"]
    # The error carries the response headers for the 429 answer.
    assert err.headers["Retry-After"] == str(err.details["retryAfterS"])
    assert err.headers["RateLimit-Policy"] == "10;w=60, 100;w=3600"
    assert err.headers["RateLimit"].startswith("limit=10, remaining=0, reset=")
    # Survives the trip through a Ray actor boundary.
    assert pickle.loads(pickle.dumps(err)).details == err.details


def test_decisions_pickle(limiter: RateLimiter) -> None:
    decision = limiter.check_and_consume("k", USER)
    again = pickle.loads(pickle.dumps(decision))
    assert isinstance(again, RateDecision)
    assert again == decision


def test_clock_going_back_does_not_reopen_the_window(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for _ in range(10):
        limiter.check_and_consume("k", ANON)
    clock.advance(-120)
    assert not limiter.check_and_consume("k", ANON).allowed


def test_idle_keys_are_forgotten(clock: FakeClock) -> None:
    limiter = RateLimiter(clock, sweep_every=3)
    limiter.check_and_consume("a", USER)
    limiter.check_and_consume("b", USER)
    assert limiter.tracked_keys() == 2
    clock.advance(3600 + 61)
    limiter.check_and_consume("c", USER)  # the third check sweeps
    assert limiter.tracked_keys() == 1
    clock.advance(3600 + 61)
    assert limiter.sweep() == 1
    assert limiter.tracked_keys() == 0


def test_reset(limiter: RateLimiter) -> None:
    for _ in range(10):
        limiter.check_and_consume("k", ANON)
    limiter.reset("k")
    assert limiter.check_and_consume("k", ANON).allowed
    limiter.reset()
    assert limiter.tracked_keys() == 0


@pytest.mark.parametrize(("key", "cost"), [("", 1), ("k", 0), ("k", -1)])
def test_invalid_arguments(limiter: RateLimiter, key: str, cost: int) -> None:
    with pytest.raises(ValueError):
        limiter.check_and_consume(key, USER, cost)


@pytest.mark.parametrize(
    "module",
    [
        "rlm.ratelimit",
        "rlm.ratelimit.concurrency",
        "rlm.ratelimit.decision",
        "rlm.ratelimit.journal",
        "rlm.ratelimit.limiter",
        "rlm.ratelimit.shared",
        "rlm.ratelimit.shared_leases",
        "rlm.ratelimit.window",
    ],
)
def test_modules_export_sorted_existing_names(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    for name in names:
        assert hasattr(mod, name), f"{module}.{name}"


def test_package_exports_what_it_means_to() -> None:
    assert set(rlm.ratelimit.__all__) == {
        "HOUR_GRANULARITY_S",
        "AgentLeases",
        "ConcurrencyDecision",
        "PolicyState",
        "RateDecision",
        "RateJournal",
        "RateLimiter",
        "RequestLimiter",
        "SharedLeases",
        "SharedTake",
        "SharedWindows",
        "SlidingWindow",
        "enforce",
    }


def test_ratelimit_does_not_import_ray() -> None:
    for source in Path(rlm.ratelimit.__file__).parent.glob("*.py"):
        text = source.read_text()
        assert "import ray" not in text, source.name
        assert "from ray" not in text, source.name


def test_two_instances_on_postgres_share_one_window(postgres_url: str) -> None:
    from rlm.db.connect import ensure_schema

    ensure_schema(postgres_url)
    clock = FakeClock()
    shared = [SharedWindows(postgres_url, clock=clock) for _ in range(2)]
    a, b = (RateLimiter(shared=windows) for windows in shared)
    assert b.check_and_consume("k", ANON).allowed
    for left in range(8, -1, -1):  # A sees B's request: nine more fit, not ten
        assert a.check_and_consume("k", ANON).remaining == left
    # B's look is answered from what it last saw (one request), but its count is the
    # database's: refused, with the figures of the one window.
    assert b.peek("k", ANON).allowed
    refused = b.check_and_consume("k", ANON)
    assert not refused.allowed and refused.remaining == 0
    assert refused.retry_after_s == pytest.approx(60.0)
    assert not a.peek("k", ANON).allowed  # a look its own view refuses is asked of the database
    clock.advance(60)
    assert b.check_and_consume("k", ANON).allowed
    for windows in shared:
        windows.close()

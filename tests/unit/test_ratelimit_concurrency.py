"""Concurrent-agent leases: limits, idempotent release, expiry, and the never-negative rule.

Tests taking ``make`` run on this process's leases (the embedded store's) and on the leases
shared in PostgreSQL (``RLM_DATABASE_URL``), where two limiters stand for two instances."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlm.auth import TIERS
from rlm.errors import RateLimited
from rlm.ratelimit import AgentLeases, RateLimiter, SharedLeases


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


Make = Callable[[FakeClock], RateLimiter]


@pytest.fixture
def make(database_url: str | None) -> Iterator[Make]:
    """Limiters on the store under test (on PostgreSQL, each one like another instance)."""
    opened: list[SharedLeases] = []

    def limiter(clock: FakeClock) -> RateLimiter:
        if database_url is None:
            return RateLimiter(clock)
        leases = SharedLeases(database_url, clock=clock)
        opened.append(leases)
        return RateLimiter(clock, leases=leases)

    yield limiter
    for leases in opened:
        leases.close()


def test_two_instances_on_postgres_share_one_limit(postgres_url: str) -> None:
    from rlm.db.connect import ensure_schema

    ensure_schema(postgres_url)
    clock = FakeClock()
    shared = [SharedLeases(postgres_url, clock=clock) for _ in range(2)]
    a, b = (RateLimiter(clock, leases=leases) for leases in shared)
    assert a.acquire("alice", 3, 5, lease_id="t1").allowed
    # B sees A's three agents (per process, B would have granted three more).
    refused = b.acquire("alice", 3, 5, lease_id="t2")
    assert not refused.allowed and refused.in_use == 3
    assert b.acquire("alice", 2, 5, lease_id="t2").in_use == 5
    assert b.release("t1") == 3  # a lease released through another instance
    assert (a.in_use("alice"), b.in_use("alice")) == (2, 2)
    for leases in shared:
        leases.close()


def test_acquire_within_limit_and_refuse_beyond(make: Make) -> None:
    limiter = make(FakeClock())
    limit = TIERS["user"].concurrent_agents
    first = limiter.acquire("alice", 3, limit)
    assert first.allowed
    assert first.in_use == 3
    assert first.lease_id
    refused = limiter.acquire("alice", 3, limit)
    assert not refused.allowed
    assert refused.lease_id is None
    assert refused.in_use == 3
    assert limiter.in_use("alice") == 3
    second = limiter.acquire("alice", 2, limit)
    assert second.allowed
    assert second.in_use == 5


def test_release_is_idempotent_and_never_negative(make: Make) -> None:
    limiter = make(FakeClock())
    lease = limiter.acquire("alice", 2, 5).lease_id
    assert lease is not None
    assert limiter.release(lease) == 2
    assert limiter.release(lease) == 0
    assert limiter.release("never-issued") == 0
    assert limiter.in_use("alice") == 0


def test_release_frees_only_its_own_lease(make: Make) -> None:
    limiter = make(FakeClock())
    a = limiter.acquire("alice", 2, 5).lease_id
    b = limiter.acquire("alice", 3, 5).lease_id
    assert a is not None
    assert b is not None
    limiter.release(a)
    limiter.release(a)
    assert limiter.in_use("alice") == 3


def test_anonymous_gets_no_agents(make: Make) -> None:
    limiter = make(FakeClock())
    decision = limiter.acquire("anonymous:1.2.3.4", 1, TIERS["anonymous"].concurrent_agents)
    assert not decision.allowed
    with pytest.raises(RateLimited) as excinfo:
        decision.raise_if_rejected()
    assert excinfo.value.details["limit"] == 0
    assert excinfo.value.details["requested"] == 1
    assert excinfo.value.retry_after_s >= 1
    assert excinfo.value.headers == {"Retry-After": "1"}


def test_acquire_with_lease_id_is_idempotent(make: Make) -> None:
    limiter = make(FakeClock())
    first = limiter.acquire("alice", 2, 5, lease_id="task-1")
    again = limiter.acquire("alice", 2, 5, lease_id="task-1")
    assert first.allowed
    assert again.allowed
    assert again.lease_id == "task-1"
    assert limiter.in_use("alice") == 2
    with pytest.raises(ValueError):
        limiter.acquire("alice", 3, 5, lease_id="task-1")
    with pytest.raises(ValueError):
        limiter.acquire("bob", 2, 5, lease_id="task-1")


def test_leases_expire_and_renew(make: Make) -> None:
    clock = FakeClock()
    limiter = make(clock)
    lease = limiter.acquire("alice", 5, 5, ttl_s=30).lease_id
    assert lease is not None
    clock.now = 20
    assert limiter.renew(lease, 30)
    clock.now = 45
    assert limiter.in_use("alice") == 5
    clock.now = 50
    assert limiter.in_use("alice") == 0
    assert not limiter.renew(lease, 30)
    assert limiter.release(lease) == 0
    assert limiter.acquire("alice", 5, 5).allowed


@pytest.mark.parametrize(("n", "limit"), [(0, 5), (-1, 5), (1, -1)])
def test_invalid_acquire(n: int, limit: int) -> None:
    with pytest.raises(ValueError):
        AgentLeases().acquire("k", n, limit)


def test_decisions_pickle(make: Make) -> None:
    decision = make(FakeClock()).acquire("alice", 1, 5)
    assert pickle.loads(pickle.dumps(decision)) == decision


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.sampled_from(["a", "b"]), st.integers(1, 4)),
        st.tuples(st.just("release"), st.integers(0, 30), st.just(0)),
    ),
    max_size=60,
)


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(ops=_ops, limit=st.integers(0, 6))
def test_counts_match_live_leases_and_stay_in_bounds(
    ops: list[tuple[str, object, int]], limit: int
) -> None:
    limiter = RateLimiter(FakeClock())
    issued: list[str] = []
    live: dict[str, tuple[str, int]] = {}
    for op, arg, n in ops:
        if op == "acquire":
            key = str(arg)
            decision = limiter.acquire(key, n, limit)
            if decision.allowed:
                assert decision.lease_id is not None
                issued.append(decision.lease_id)
                live[decision.lease_id] = (key, n)
        elif issued:
            lease_id = issued[int(str(arg)) % len(issued)]  # may repeat: releases are idempotent
            freed = limiter.release(lease_id)
            expected = live.pop(lease_id, ("", 0))[1]
            assert freed == expected
        for key in ("a", "b"):
            held = sum(count for owner, count in live.values() if owner == key)
            assert limiter.in_use(key) == held
            assert 0 <= held <= limit

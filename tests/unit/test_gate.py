"""The admission gate without Ray: refusals count nothing, holds are settled once, the reaper
spares running tasks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rlm.admission import Admission
from rlm.auth.tiers import TierLimits
from rlm.errors import QuotaExceeded, RateLimited
from rlm.gate import AdmissionGate
from rlm.models.quotas import QuotaConfig
from rlm.planning import Plan, plan_task
from rlm.quotas import FrozenClock
from rlm.quotas.service import QuotaLedgerService
from rlm.ratelimit import RateLimiter

NOW = datetime(2028, 2, 29, 12, tzinfo=UTC)
LIMITS = TierLimits(requests_per_minute=3, requests_per_hour=100, concurrent_agents=4)


@dataclass
class Claim:
    task_id: str
    plan: Plan
    team_id: str | None = None


def claim(task_id: str, calls: int = 3) -> Claim:
    plan = plan_task("parallel", calls, leaf_size=1)
    assert plan.agent_calls > 1
    return Claim(task_id, plan)


def admission(user: str = "ada") -> Admission:
    return Admission(f"user:{user}", LIMITS, user_id=user, tier="user")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def quotas(tmp_path: Path, clock: FrozenClock) -> QuotaLedgerService:
    return QuotaLedgerService(tmp_path / "quotas.db", clock=clock)


@pytest.fixture
def limiter() -> RateLimiter:
    return RateLimiter(clock=lambda: 1000.0)


@pytest.fixture
def gate(quotas: QuotaLedgerService, limiter: RateLimiter, clock: FrozenClock) -> AdmissionGate:
    return AdmissionGate(quotas, hold_ttl_s=60.0, limiter=limiter, clock=clock)


def daily_limit(quotas: QuotaLedgerService, user: str, limit: int) -> None:
    quotas.set_user_config(
        QuotaConfig(
            user_id=user,
            daily_agent_limit=limit,
            weekly_agent_limit=1000,
            monthly_agent_limit=1000,
            daily_compute_hours=10.0,
            max_concurrent_agents=5,
            max_storage_gb=1.0,
        )
    )


def remaining(limiter: RateLimiter, user: str = "ada") -> int:
    return limiter.peek(f"user:{user}", LIMITS).remaining


def test_a_trusted_caller_passes_without_counting(
    gate: AdmissionGate, limiter: RateLimiter, quotas: QuotaLedgerService
) -> None:
    before = remaining(limiter)
    assert gate.admit(None, claim("t"), agents=2) == {}
    assert remaining(limiter) == before
    assert not gate.holds("t")
    assert quotas.open_reservations() == []


def test_an_admitted_task_is_counted_leased_and_held(
    gate: AdmissionGate, limiter: RateLimiter, quotas: QuotaLedgerService
) -> None:
    before = remaining(limiter)
    task = claim("t")
    headers = gate.admit(admission(), task, agents=2)
    assert f"remaining={before}," in headers["RateLimit"]  # peek counts the request it checks
    assert remaining(limiter) == before - 1
    assert limiter.in_use("user:ada") == 2
    assert gate.holds("t")
    [held] = quotas.open_reservations()
    assert (held.task_id, held.agents) == ("t", task.plan.agent_calls)


def test_a_rate_refusal_counts_nothing(
    gate: AdmissionGate, limiter: RateLimiter, quotas: QuotaLedgerService
) -> None:
    for _ in range(LIMITS.requests_per_minute):
        gate.admit(admission())
    with pytest.raises(RateLimited) as info:
        gate.admit(admission(), claim("t"), agents=2)
    assert "Retry-After" in info.value.headers
    assert limiter.in_use("user:ada") == 0
    assert not gate.holds("t")
    assert quotas.open_reservations() == []


def test_a_concurrency_refusal_holds_no_quota(
    gate: AdmissionGate, limiter: RateLimiter, quotas: QuotaLedgerService
) -> None:
    before = remaining(limiter)
    with pytest.raises(RateLimited) as info:
        gate.admit(admission(), claim("t"), agents=LIMITS.concurrent_agents + 1)
    assert info.value.headers["Retry-After"] == "1"
    assert remaining(limiter) == before
    assert quotas.open_reservations() == []


def test_a_quota_refusal_gives_the_lease_back_and_counts_nothing(
    gate: AdmissionGate, limiter: RateLimiter, quotas: QuotaLedgerService
) -> None:
    daily_limit(quotas, "ada", 2)
    before = remaining(limiter)
    task = claim("t", calls=3)
    with pytest.raises(QuotaExceeded) as info:
        gate.admit(admission(), task, agents=2)
    assert f"remaining={before}," in info.value.headers["RateLimit"]  # as if it were counted
    assert remaining(limiter) == before
    assert limiter.in_use("user:ada") == 0
    assert not gate.holds("t")
    assert quotas.open_reservations() == []
    assert quotas.user_status("ada").daily.agents_used == 0


def test_a_task_is_settled_exactly_once(
    gate: AdmissionGate, limiter: RateLimiter, quotas: QuotaLedgerService
) -> None:
    adm = admission()
    gate.admit(adm, claim("t"), agents=2)
    gate.release("t", adm)
    gate.settle("t", 2, 36.0)
    assert limiter.in_use("user:ada") == 0
    assert not gate.holds("t")
    assert quotas.open_reservations() == []
    status = quotas.user_status("ada")
    assert (status.daily.agents_used, status.current_concurrent_agents) == (2, 0)
    gate.release("t", adm)
    gate.settle("t", 5, 36.0)
    assert quotas.user_status("ada").daily.agents_used == 2


def test_the_reaper_spares_running_tasks_holds(
    gate: AdmissionGate, quotas: QuotaLedgerService, clock: FrozenClock
) -> None:
    [orphan] = gate.quota_batch([("reserve", ("bob", 3), {"tier": "user", "task_id": "gone"})])
    assert orphan[0] == "res"  # a reservation, as a compact tuple (rlm.quotas.wire)
    gate.admit(admission(), claim("running"), agents=2)
    assert gate.reap_holds() == 0  # neither is old enough yet
    clock.advance(timedelta(seconds=61))
    assert gate.reap_holds() == 1
    assert [h.task_id for h in quotas.open_reservations()] == ["running"]
    assert quotas.user_status("bob").daily.agents_used == 0  # released, not charged
    gate.settle("running", 3, 0.0)
    assert quotas.open_reservations() == []


def test_an_unknown_team_claim_counts_as_no_claim(
    gate: AdmissionGate, quotas: QuotaLedgerService
) -> None:
    task = claim("t")
    task.team_id = "claimed"
    adm = Admission("user:ada", LIMITS, user_id="ada", tier="user", team_id="nowhere")
    gate.admit(adm, task, agents=1)
    assert task.team_id is None  # the team charged: the ledger's, and ada belongs to none
    [held] = quotas.open_reservations()
    assert held.team_id is None


def test_quota_calls_carry_the_request_headers(gate: AdmissionGate) -> None:
    headers = gate.admit(admission())
    assert gate.quota("user_status", ("ada",), {}, headers).user_id == "ada"
    with pytest.raises(QuotaExceeded) as info:
        gate.quota("reserve", ("anon", 1), {"tier": "anonymous", "task_id": "x"}, headers)
    assert info.value.headers == headers
    [slot] = gate.quota_batch([("reserve", ("anon", 1), {"tier": "anonymous", "task_id": "y"})])
    assert slot[0] == "err"
    assert slot[1]["code"] == "QUOTA_EXCEEDED"


def test_an_engine_starting_releases_every_open_hold(
    gate: AdmissionGate, quotas: QuotaLedgerService
) -> None:
    gate.admit(admission(), claim("t"), agents=1)
    assert gate.release_open_holds() == 1
    assert quotas.open_reservations() == []


def test_calls_beyond_the_plan_are_held_before_they_are_sent(
    gate: AdmissionGate, quotas: QuotaLedgerService, clock: FrozenClock
) -> None:
    daily_limit(quotas, "ada", 5)
    adm = admission()
    plan = claim("t").plan  # 4 calls: three leaves and a combine
    gate.admit(adm, Claim("t", plan), agents=2)
    gate.extend("t", adm)  # the fifth call fits
    status = quotas.user_status("ada")
    assert (status.daily.agents_used, status.current_concurrent_agents) == (5, 2)  # no lease
    with pytest.raises(QuotaExceeded):
        gate.extend("t", adm)  # a sixth does not; nothing changed
    assert quotas.user_status("ada").daily.agents_used == 5
    clock.advance(timedelta(seconds=61))
    assert gate.reap_holds() == 0  # the extension belongs to a running task
    gate.release("t", adm)
    gate.settle("t", 3, 0.0)  # fewer calls than held: three are charged in all
    assert quotas.open_reservations() == []
    assert quotas.user_status("ada").daily.agents_used == 3


def test_every_held_call_can_be_charged(gate: AdmissionGate, quotas: QuotaLedgerService) -> None:
    adm = admission()
    gate.admit(adm, claim("t"), agents=2)
    gate.extend("t", adm)
    gate.extend("t", adm)
    gate.settle("t", 6, 0.0)
    assert quotas.open_reservations() == []
    assert quotas.user_status("ada").daily.agents_used == 6
    gate.extend("t", adm)  # a settled task holds nothing more
    assert quotas.open_reservations() == []


def test_a_batch_of_calls_is_held_all_or_none_and_charged_as_used(
    gate: AdmissionGate, quotas: QuotaLedgerService
) -> None:
    # An RLM session holds a whole sub-call batch at once, before any of it is sent.
    daily_limit(quotas, "ada", 10)
    adm = admission()
    gate.admit(adm, claim("t"), agents=2)  # 4 planned calls
    with pytest.raises(QuotaExceeded):
        gate.extend("t", adm, 7)  # 11 > 10: none of the batch is held
    assert quotas.user_status("ada").daily.agents_used == 4
    gate.extend("t", adm, 6)
    assert quotas.user_status("ada").daily.agents_used == 10
    gate.release("t", adm)
    gate.settle("t", 7, 0.0)  # the batch partly ran: seven calls in all are charged
    assert quotas.open_reservations() == []
    assert quotas.user_status("ada").daily.agents_used == 7


def test_an_extension_survives_a_restart_and_is_released_like_any_hold(
    gate: AdmissionGate, quotas: QuotaLedgerService, tmp_path: Path, clock: FrozenClock
) -> None:
    adm = admission()
    gate.admit(adm, claim("t"), agents=2)
    gate.extend("t", adm)
    quotas.close()  # the engine stopped
    reopened = QuotaLedgerService(tmp_path / "quotas.db", clock=clock)
    held = {h.task_id: h.concurrent_agents for h in reopened.open_reservations()}
    assert held == {"t": 2, "t+1": 0}
    after = AdmissionGate(reopened, hold_ttl_s=60.0, clock=clock)
    assert after.release_open_holds() == 2
    assert reopened.user_status("ada").daily.agents_used == 0


def test_a_dead_instances_tasks_give_back_their_holds_and_agents(
    gate: AdmissionGate, limiter: RateLimiter, quotas: QuotaLedgerService
) -> None:
    # What a live instance does for the tasks of one that died (on a shared store, the dead
    # one's leases would otherwise keep its agents held against the client).
    gate.admit(admission(), claim("t1"), agents=2)
    gate.admit(admission(), claim("t2"), agents=1)
    assert limiter.in_use("user:ada") == 3
    assert gate.release_task_holds(["t1"]) == 1
    assert limiter.in_use("user:ada") == 1
    assert [r.task_id for r in quotas.open_reservations()] == ["t2"]


def test_a_request_without_a_task_is_counted_in_one_check(
    gate: AdmissionGate, limiter: RateLimiter
) -> None:
    for left in (2, 1, 0):
        assert f"remaining={left}," in gate.admit(admission())["RateLimit"]
    with pytest.raises(RateLimited):
        gate.admit(admission())
    # The refusal counted nothing: under a looser limit, three are counted (and the look).
    looser = TierLimits(requests_per_minute=10, requests_per_hour=100, concurrent_agents=4)
    assert limiter.peek("user:ada", looser).remaining == 10 - 3 - 1


def test_a_count_refused_after_the_look_gives_back_lease_and_holds(
    quotas: QuotaLedgerService, clock: FrozenClock, postgres_url: str
) -> None:
    # Two instances on one PostgreSQL: B's look admits from its last view, A fills the window
    # meanwhile, B's count is refused. B must not keep the lease or the quota hold it took.
    from rlm.db.connect import ensure_schema
    from rlm.ratelimit import SharedLeases, SharedWindows

    ensure_schema(postgres_url)
    opened = [SharedWindows(postgres_url, clock=lambda: 1000.0) for _ in range(2)]
    leases = SharedLeases(postgres_url, clock=lambda: 1000.0)
    a = RateLimiter(shared=opened[0])
    b = RateLimiter(shared=opened[1], leases=leases)
    gate_b = AdmissionGate(quotas, hold_ttl_s=60.0, limiter=b, clock=clock)
    gate_b.admit(admission())  # B has seen the key: one of three
    assert a.check_and_consume("user:ada", LIMITS).allowed
    assert a.check_and_consume("user:ada", LIMITS).allowed  # three of three
    with pytest.raises(RateLimited):
        gate_b.admit(admission(), claim("t"), agents=2)
    assert b.in_use("user:ada") == 0
    assert quotas.open_reservations() == []
    assert not gate_b.holds("t")
    for windows in opened:
        windows.close()
    leases.close()

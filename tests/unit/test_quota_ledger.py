"""The quota ledger's rules, one example at a time: admission, settlement, leases, alerts,
teams, transfers and the org tree."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rlm.errors import InvalidInput, QuotaExceeded
from rlm.models.quotas import QuotaConfig
from rlm.quotas import FrozenClock, QuotaLedger, QuotaSettings, TierQuota

NOW = datetime(2028, 2, 29, 12, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def ledger(clock: FrozenClock) -> QuotaLedger:
    return QuotaLedger(clock)


def config(
    user_id: str, daily: int = 100, weekly: int = 300, monthly: int = 1000, **kw: float
) -> QuotaConfig:
    return QuotaConfig(
        user_id=user_id,
        daily_agent_limit=daily,
        weekly_agent_limit=weekly,
        monthly_agent_limit=monthly,
        daily_compute_hours=kw.get("compute", 10.0),
        max_concurrent_agents=int(kw.get("concurrent", 5)),
        max_storage_gb=1.0,
    )


# -- tiers and user views ----------------------------------------------------------------------


def test_tier_defaults_follow_the_rate_limit_table(ledger: QuotaLedger) -> None:
    expected = {"anonymous": 0, "user": 5, "power_user": 20, "admin": 100, "enterprise": 500}
    for tier, concurrent in expected.items():
        status = ledger.user_status(f"x-{tier}", tier=tier)  # type: ignore[arg-type]
        assert status.max_concurrent_agents == concurrent
    user = ledger.user_config("x", tier="user")
    assert (user.daily_agent_limit, user.weekly_agent_limit, user.monthly_agent_limit) == (
        10_000,
        50_000,
        200_000,
    )


def test_settings_refuse_windows_that_do_not_nest() -> None:
    with pytest.raises(ValueError, match="daily <= weekly <= monthly"):
        TierQuota(
            daily_agent_limit=10,
            weekly_agent_limit=5,
            monthly_agent_limit=50,
            daily_compute_hours=1.0,
            max_concurrent_agents=1,
            max_storage_gb=0.0,
        )


def test_anonymous_tier_admits_nothing(ledger: QuotaLedger) -> None:
    decision = ledger.check("anon", 1, tier="anonymous")
    assert not decision.allowed
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("anon", 1, tier="anonymous", task_id="t")
    assert info.value.details["limit"] == 0  # a limit of 0 is zero, not unlimited
    assert ledger.snapshot()["user"] == {}


def test_unknown_tier_is_invalid(ledger: QuotaLedger) -> None:
    with pytest.raises(InvalidInput):
        ledger.reserve("ada", 1, tier="gold", task_id="t")  # type: ignore[arg-type]


def test_status_reports_remaining_and_exceeded(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", daily=10))
    res = ledger.reserve("ada", 10, tier="user", task_id="t")
    status = ledger.user_status("ada")
    # A reservation in flight counts as used: remaining is exactly what can still be reserved.
    assert (status.daily.agents_used, status.daily.agents_remaining) == (10, 0)
    assert status.daily.exceeded
    assert status.current_concurrent_agents == 1
    ledger.reconcile(res.reservation_id, 6, 0.25)
    status = ledger.user_status("ada")
    assert (status.daily.agents_used, status.daily.agents_remaining) == (6, 4)
    assert not status.daily.exceeded
    assert status.daily.compute_hours_used == 0.25
    assert status.to_wire()["daily"]["resetTime"] == "2028-03-01T00:00:00Z"


def test_explicit_config_replaces_tier_defaults_and_can_be_cleared(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", daily=3))
    assert ledger.user_config("ada").daily_agent_limit == 3
    assert not ledger.check("ada", 4, tier="enterprise").allowed
    ledger.clear_user_config("ada")
    assert ledger.check("ada", 4, tier="enterprise").allowed


def test_lowering_a_limit_below_usage_shows_exceeded(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", daily=50))
    res = ledger.reserve("ada", 30, tier="user", task_id="t")
    ledger.reconcile(res.reservation_id, 30)
    ledger.set_user_config(config("ada", daily=20))
    daily = ledger.user_status("ada").daily
    assert (daily.agents_used, daily.agents_remaining, daily.exceeded) == (30, 0, True)


# -- admission ---------------------------------------------------------------------------------


def test_refusal_carries_details_and_changes_nothing(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", daily=10))
    ledger.reserve("ada", 8, tier="user", task_id="t1")
    before = ledger.snapshot()
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 3, tier="user", task_id="t2")
    assert info.value.details == {
        "resource": "agents",
        "period": "daily",
        "limit": 10,
        "used": 8,
        "requested": 3,
        "resetTime": "2028-03-01T00:00:00Z",
        "scope": "user",
        "scopeId": "ada",
    }
    assert info.value.status == 429
    assert ledger.snapshot() == before
    assert ledger.pop_changes().upserts  # only the first reservation's rows
    with pytest.raises(QuotaExceeded):
        ledger.reserve("ada", 3, tier="user", task_id="t2")
    assert not ledger.pop_changes()


def test_check_is_a_dry_run(ledger: QuotaLedger) -> None:
    before = ledger.snapshot()
    decision = ledger.check("ada", 5, tier="user")
    assert (decision.allowed, decision.reason) == (True, "Quota available")
    assert ledger.snapshot() == before
    ledger.set_user_config(config("ada", daily=4))
    decision = ledger.check("ada", 5, tier="user")
    assert not decision.allowed
    assert "agent calls today (daily quota)" in decision.reason


def test_concurrency_lease(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", concurrent=3))
    first = ledger.reserve("ada", 10, tier="user", task_id="a", concurrent_agents=2)
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 10, tier="user", task_id="b", concurrent_agents=2)
    assert info.value.details["resource"] == "concurrentAgents"
    assert (info.value.details["used"], info.value.details["limit"]) == (2, 3)
    ledger.reserve("ada", 10, tier="user", task_id="c", concurrent_agents=1)
    assert ledger.user_status("ada").current_concurrent_agents == 3
    ledger.release(first.reservation_id)
    assert ledger.user_status("ada").current_concurrent_agents == 1
    ledger.reserve("ada", 10, tier="user", task_id="b", concurrent_agents=2)


def test_exhausted_compute_refuses_even_without_planned_compute(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", compute=1.0))
    res = ledger.reserve("ada", 1, tier="user", task_id="a")
    ledger.reconcile(res.reservation_id, 1, 1.0)
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 1, tier="user", task_id="b")
    assert info.value.details["resource"] == "computeHours"
    assert ledger.user_status("ada").daily.exceeded


def test_invalid_arguments(ledger: QuotaLedger) -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InvalidInput):
            ledger.reserve("ada", bad, tier="user", task_id="t")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ledger.reserve("", 1, tier="user", task_id="t")
    with pytest.raises(InvalidInput):
        ledger.reserve("ada", 1, tier="user", task_id="t", compute_hours=float("nan"))
    with pytest.raises(InvalidInput):
        ledger.reserve("ada", 1, tier="user", task_id="t", concurrent_agents=0)
    with pytest.raises(InvalidInput):
        ledger.reserve("ada", 1, tier="user", task_id="t", team_id="nope")
    with pytest.raises(InvalidInput):
        ledger.reserve("ada", 1, tier="user", task_id="t", org_id="nope")
    assert ledger.snapshot()["user"] == {}


def test_a_malformed_request_is_invalid_even_when_over_quota(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", daily=1))
    ledger.reserve("ada", 1, tier="user", task_id="t1")
    with pytest.raises(InvalidInput):
        ledger.reserve("ada", 1, tier="user", task_id="t2", team_id="nope")
    with pytest.raises(InvalidInput):
        ledger.check("ada", 1, tier="user", org_id="nope")


def test_reserve_is_idempotent_per_open_task(ledger: QuotaLedger) -> None:
    first = ledger.reserve("ada", 5, tier="user", task_id="t")
    assert ledger.reserve("ada", 5, tier="user", task_id="t") == first
    assert ledger.user_status("ada").daily.agents_used == 5
    with pytest.raises(InvalidInput):
        ledger.reserve("ada", 6, tier="user", task_id="t")


# -- settlement --------------------------------------------------------------------------------


def test_reconcile_exactly_once(ledger: QuotaLedger) -> None:
    res = ledger.reserve("ada", 10, tier="user", task_id="t")
    done = ledger.reconcile(res.reservation_id, 7, 0.5)
    assert (done.agent_calls, done.compute_hours, done.released) == (7, 0.5, False)
    assert ledger.reconcile(res.reservation_id, 9, 2.0) == done
    assert ledger.release(res.reservation_id) == done
    assert ledger.user_status("ada").daily.agents_used == 7
    assert ledger.reservation(res.reservation_id) is None


def test_release_charges_nothing_and_is_idempotent(ledger: QuotaLedger) -> None:
    res = ledger.reserve("ada", 10, tier="user", task_id="t")
    done = ledger.release(res.reservation_id)
    assert (done.agent_calls, done.released) == (0, True)
    assert ledger.release(res.reservation_id) == done
    assert ledger.reconcile(res.reservation_id, 5) == done
    assert ledger.user_status("ada").daily.agents_used == 0


def test_unknown_reservation_is_invalid(ledger: QuotaLedger) -> None:
    with pytest.raises(InvalidInput):
        ledger.reconcile("res_nope", 1)
    with pytest.raises(InvalidInput):
        ledger.release("res_nope")


def test_overspend_is_charged_in_full(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", daily=10))
    res = ledger.reserve("ada", 8, tier="user", task_id="t")
    ledger.reconcile(res.reservation_id, 12, 0.0)
    daily = ledger.user_status("ada").daily
    assert (daily.agents_used, daily.agents_remaining, daily.exceeded) == (12, 0, True)
    assert not ledger.check("ada", 1, tier="user").allowed


def test_reaper_settles_only_stale_leases(ledger: QuotaLedger, clock: FrozenClock) -> None:
    old = ledger.reserve("ada", 10, tier="user", task_id="old", concurrent_agents=2)
    clock.advance(timedelta(minutes=50))
    fresh = ledger.reserve("ada", 5, tier="user", task_id="fresh")
    clock.advance(timedelta(minutes=10))
    reaped = ledger.reap_expired(timedelta(hours=1))
    assert [s.reservation_id for s in reaped] == [old.reservation_id]
    assert reaped[0].released
    assert [r.reservation_id for r in ledger.open_reservations()] == [fresh.reservation_id]
    status = ledger.user_status("ada")
    assert (status.current_concurrent_agents, status.daily.agents_used) == (1, 5)
    assert ledger.reconcile(old.reservation_id, 10) == reaped[0]


def test_reaper_can_charge_the_plan(ledger: QuotaLedger, clock: FrozenClock) -> None:
    ledger.reserve("ada", 10, tier="user", task_id="old")
    clock.advance(timedelta(hours=2))
    [done] = ledger.reap_expired(timedelta(hours=1), charge_planned=True)
    assert (done.agent_calls, done.released) == (10, False)
    assert ledger.user_status("ada").daily.agents_used == 10


def test_prune_history_forgets_old_settlements(ledger: QuotaLedger, clock: FrozenClock) -> None:
    res = ledger.reserve("ada", 1, tier="user", task_id="t")
    ledger.reconcile(res.reservation_id, 1)
    clock.advance(timedelta(days=2))
    assert ledger.prune_history(timedelta(days=1)) == 1
    with pytest.raises(InvalidInput):
        ledger.reconcile(res.reservation_id, 1)


def test_prune_history_keeps_only_the_newest_settlements(
    ledger: QuotaLedger, clock: FrozenClock
) -> None:
    ids = []
    for i in range(5):
        res = ledger.reserve("ada", 1, tier="user", task_id=f"t{i}")
        ledger.reconcile(res.reservation_id, 1)
        ids.append(res.reservation_id)
        clock.advance(timedelta(seconds=1))
    # Young enough by age; the count cap alone forgets the three oldest.
    assert ledger.prune_history(timedelta(days=1), max_count=2) == 3
    for old in ids[:3]:
        with pytest.raises(InvalidInput):
            ledger.reconcile(old, 1)
    for kept in ids[3:]:
        assert ledger.reconcile(kept, 1).agent_calls == 1  # still recognised as a repeat
    assert ledger.prune_history(timedelta(days=1), max_count=2) == 0


# -- alerts ------------------------------------------------------------------------------------


def test_threshold_alerts_fire_once_per_window(ledger: QuotaLedger, clock: FrozenClock) -> None:
    ledger.set_user_config(config("ada", daily=10, weekly=100, monthly=1000))

    def spend(agents: int) -> None:
        res = ledger.reserve("ada", agents, tier="user", task_id=f"t{clock.now()}{agents}")
        ledger.reconcile(res.reservation_id, agents)

    spend(7)
    assert ledger.drain_events() == []
    spend(1)  # 8 of 10: 80 %
    [event] = ledger.drain_events()
    assert event["event"] == "quota.threshold_exceeded"
    assert event["timestamp"] == "2028-02-29T12:00:00Z"
    assert event["data"]["userId"] == "ada"
    assert (event["data"]["threshold"], event["data"]["period"]) == (80, "daily")
    assert event["data"]["usage"]["daily"]["agentsUsed"] == 8
    spend(1)
    assert ledger.drain_events() == []  # 80 % already announced today
    spend(1)
    assert [(e["data"]["period"], e["data"]["threshold"]) for e in ledger.drain_events()] == [
        ("daily", 100)
    ]
    clock.set(datetime(2028, 3, 1, 9, tzinfo=UTC))
    spend(8)
    assert [(e["data"]["period"], e["data"]["threshold"]) for e in ledger.drain_events()] == [
        ("daily", 80)
    ]
    assert ledger.drain_events() == []


def test_a_reservation_alone_raises_no_alert(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", daily=10))
    res = ledger.reserve("ada", 10, tier="user", task_id="t")
    ledger.release(res.reservation_id)
    assert ledger.pending_events() == []


def test_custom_thresholds() -> None:
    ledger = QuotaLedger(FrozenClock(NOW), QuotaSettings(alert_thresholds=(50,)))
    ledger.set_user_config(config("ada", daily=10))
    res = ledger.reserve("ada", 5, tier="user", task_id="t")
    ledger.reconcile(res.reservation_id, 5)
    assert [e["data"]["threshold"] for e in ledger.drain_events()] == [50]


def test_a_team_pool_alerts_once_per_month_to_its_org(
    ledger: QuotaLedger, clock: FrozenClock
) -> None:
    ledger.create_org("acme", "Acme", None, 10_000, 100.0, 10.0)
    ledger.create_team("t", "Team", 10, 10.0, 1.0, org_id="acme")
    for user in ("a", "b"):
        ledger.add_member("t", user, "member")
        ledger.set_user_config(config(user, daily=100, weekly=100, monthly=100))

    def spend(user: str, agents: int) -> list[dict[str, Any]]:
        res = ledger.reserve(user, agents, tier="user", task_id=f"t{user}{clock.now()}{agents}")
        ledger.reconcile(res.reservation_id, agents)
        return [e for e in ledger.drain_events() if "teamId" in e["data"]]

    assert spend("a", 5) == []
    [alert] = spend("b", 3)  # 8 of the pool's 10, by two members: the pool's 80 %
    assert alert["event"] == "quota.threshold_exceeded"
    assert alert["data"] == {
        "teamId": "t",
        "orgId": "acme",
        "threshold": 80,
        "period": "monthly",
        "usage": {"agentsUsed": 8, "agentsTotal": 10, "computeUsed": 0.0, "computeTotal": 10.0},
    }
    assert spend("a", 1) == []  # announced this month already
    assert [e["data"]["threshold"] for e in spend("b", 1)] == [100]
    clock.set(datetime(2028, 3, 1, 9, tzinfo=UTC))  # a new month: the pool starts again
    assert spend("a", 7) == []
    assert [e["data"]["threshold"] for e in spend("a", 1)] == [80]


def test_an_org_alerts_on_its_subtree_usage_once_per_month(
    org_ledger: QuotaLedger, clock: FrozenClock
) -> None:
    org_ledger.set_user_config(config("bob", daily=2000, weekly=2000, monthly=2000))

    def spend(org: str, agents: int) -> list[tuple[str, int]]:
        user = "ada" if org == "ml" else "bob"  # a user belongs to one org
        res = org_ledger.reserve(
            user, agents, tier="user", task_id=f"t{clock.now()}{agents}{org}", org_id=org
        )
        org_ledger.reconcile(res.reservation_id, agents)
        return [
            (e["data"]["orgId"], e["data"]["threshold"])
            for e in org_ledger.drain_events()
            if "userId" not in e["data"]
        ]

    assert spend("ml", 319) == []  # ml 319 of 400
    assert spend("ml", 1) == [("ml", 80)]  # ml 320 of 400; eng 320 of 600; acme 320 of 1000
    assert spend("ml", 80) == [("ml", 100)]  # ml 400 of 400; eng 400 of 600 (66 %)
    assert spend("eng", 80) == [("eng", 80)]  # eng's subtree: 480 of 600; acme 480 of 1000
    assert spend("eng", 10) == []
    # The marks are state: a restored ledger does not announce them again.
    restored = QuotaLedger.restore(org_ledger.snapshot(), clock)
    res = restored.reserve("bob", 5, tier="user", task_id="after-restore", org_id="eng")
    restored.reconcile(res.reservation_id, 5)
    assert [e for e in restored.drain_events() if "userId" not in e["data"]] == []


# -- teams -------------------------------------------------------------------------------------


@pytest.fixture
def team_ledger(ledger: QuotaLedger) -> QuotaLedger:
    ledger.create_team("t", "Team", 100, 10.0, 50.0)
    for user, role in (("a", "lead"), ("b", "member"), ("c", "member")):
        ledger.add_member("t", user, role)
        ledger.set_user_config(config(user))
    ledger.set_member_allocation("t", "a", 40, 4.0)
    ledger.set_member_allocation("t", "b", 30, 3.0)
    return ledger


def test_team_status_view(team_ledger: QuotaLedger) -> None:
    res = team_ledger.reserve("a", 10, tier="user", task_id="t", team_id="t")
    team_ledger.reconcile(res.reservation_id, 6, 0.5)
    status = team_ledger.team_status("t")
    config = status.config
    assert (config.team_name, config.total_agent_pool) == ("Team", 100)
    assert (config.total_compute_hours, config.total_storage_gb) == (10.0, 50.0)
    wire = status.to_wire()
    assert wire["usage"]["agentsUsed"] == 6
    assert wire["usage"]["computeUsed"] == 0.5
    member = next(m for m in status.members if m.user_id == "a")
    assert (member.role, member.agents_allocated, member.agents_used) == ("lead", 40, 6)


def test_member_allocation_and_pool_bind(team_ledger: QuotaLedger) -> None:
    team_ledger.reserve("a", 40, tier="user", task_id="a1", team_id="t")
    with pytest.raises(QuotaExceeded) as info:
        team_ledger.reserve("a", 1, tier="user", task_id="a2", team_id="t")
    assert info.value.details["scope"] == "member"
    # c has no allocation: only the pool (100 - 40 held) binds.
    team_ledger.reserve("c", 60, tier="user", task_id="c1", team_id="t")
    with pytest.raises(QuotaExceeded) as info:
        team_ledger.reserve("c", 1, tier="user", task_id="c2", team_id="t")
    assert info.value.details["scope"] == "team"
    assert info.value.details["period"] == "monthly"
    assert info.value.details["resetTime"] == "2028-03-01T00:00:00Z"
    # Without team_id a member still draws on its (only) team's pool: no way around it.
    before = team_ledger.snapshot()
    with pytest.raises(QuotaExceeded) as info:
        team_ledger.reserve("c", 1, tier="user", task_id="c3")
    assert info.value.details["scope"] == "team"
    assert team_ledger.check("c", 1, tier="user").allowed is False
    assert team_ledger.snapshot() == before


def test_a_member_of_several_teams_must_name_one(team_ledger: QuotaLedger) -> None:
    team_ledger.create_team("u", "Other", 50, 5.0)
    team_ledger.add_member("u", "c")
    team_ledger.add_member("u", "c")  # adding twice is one membership
    before = team_ledger.snapshot()
    with pytest.raises(InvalidInput) as info:
        team_ledger.reserve("c", 1, tier="user", task_id="c1")
    assert info.value.details == {"userId": "c", "teams": ["t", "u"], "field": "teamId"}
    assert team_ledger.snapshot() == before
    held = team_ledger.reserve("c", 2, tier="user", task_id="c1", team_id="u")
    assert held.team_id == "u"
    assert team_ledger.team_status("u").usage.agents_used == 2
    assert team_ledger.team_status("t").usage.agents_used == 0
    # A user in no team charges no team.
    assert team_ledger.reserve("zed", 1, tier="user", task_id="z1").team_id is None


def test_non_member_cannot_charge_the_team(team_ledger: QuotaLedger) -> None:
    with pytest.raises(InvalidInput):
        team_ledger.reserve("zed", 1, tier="user", task_id="t", team_id="t")


def test_allocations_never_exceed_the_pool(team_ledger: QuotaLedger) -> None:
    before = team_ledger.snapshot()
    with pytest.raises(InvalidInput):
        team_ledger.set_member_allocation("t", "c", 31, 1.0)  # 40 + 30 + 31 > 100
    with pytest.raises(InvalidInput):
        team_ledger.set_member_allocation("t", "c", 10, 3.5)  # 4 + 3 + 3.5 > 10 h
    assert team_ledger.snapshot() == before
    team_ledger.set_member_allocation("t", "c", 30, 3.0)


def test_allocation_not_below_usage(team_ledger: QuotaLedger) -> None:
    team_ledger.reserve("a", 20, tier="user", task_id="t", team_id="t")
    with pytest.raises(InvalidInput):
        team_ledger.set_member_allocation("t", "a", 19, 4.0)
    team_ledger.set_member_allocation("t", "a", 20, 4.0)


def test_project_allocations(team_ledger: QuotaLedger) -> None:
    team_ledger.set_project_allocation("t", "p1", 60, 5.0, name="One")
    with pytest.raises(InvalidInput):
        team_ledger.set_project_allocation("t", "p2", 41, 1.0)
    status = team_ledger.set_project_allocation("t", "p2", 40, 5.0)
    assert [(p.project_id, p.agents_allocated) for p in status.projects] == [("p1", 60), ("p2", 40)]


def test_transfer_conserves_and_is_idempotent(team_ledger: QuotaLedger) -> None:
    receipt = team_ledger.transfer("t", "a", "b", 10, 1.5, idempotency_key="k1")
    assert (receipt.from_agents_allocated, receipt.to_agents_allocated) == (30, 40)
    assert receipt.compute_hours == 1.5
    again = team_ledger.transfer("t", "a", "b", 10, 1.5, idempotency_key="k1")
    assert again == receipt
    members = {m.user_id: m for m in team_ledger.team_status("t").members}
    assert (members["a"].agents_allocated, members["b"].agents_allocated) == (30, 40)
    assert members["a"].compute_hours_allocated + members["b"].compute_hours_allocated == 7.0
    before = team_ledger.snapshot()
    with pytest.raises(InvalidInput):
        team_ledger.transfer("t", "a", "b", 11, 1.5, idempotency_key="k1")
    assert team_ledger.snapshot() == before


def test_transfer_never_leaves_the_giver_below_its_usage(team_ledger: QuotaLedger) -> None:
    team_ledger.reserve("a", 35, tier="user", task_id="t", team_id="t")
    before = team_ledger.snapshot()
    with pytest.raises(InvalidInput):
        team_ledger.transfer("t", "a", "b", 6)
    assert team_ledger.snapshot() == before
    team_ledger.transfer("t", "a", "b", 5)


@pytest.mark.parametrize(
    ("giver", "taker", "agents", "hours"),
    [
        ("a", "c", 1, 0.0),  # c has no allocation
        ("c", "a", 1, 0.0),
        ("a", "zed", 1, 0.0),  # not a member
        ("a", "b", 0, 0.0),  # nothing to move
        ("a", "b", 41, 0.0),  # more than a has
        ("a", "b", -1, 0.0),
    ],
)
def test_bad_transfers_change_nothing(
    team_ledger: QuotaLedger, giver: str, taker: str, agents: int, hours: float
) -> None:
    before = team_ledger.snapshot()
    with pytest.raises(InvalidInput):
        team_ledger.transfer("t", giver, taker, agents, hours, idempotency_key="k")
    assert team_ledger.snapshot() == before


def test_team_pool_resets_monthly(team_ledger: QuotaLedger, clock: FrozenClock) -> None:
    res = team_ledger.reserve("c", 20, tier="user", task_id="t", team_id="t")
    team_ledger.reconcile(res.reservation_id, 20)
    clock.set(datetime(2028, 3, 1, tzinfo=UTC))
    assert team_ledger.team_status("t").usage.agents_used == 0


# -- orgs --------------------------------------------------------------------------------------


@pytest.fixture
def org_ledger(ledger: QuotaLedger) -> QuotaLedger:
    ledger.create_org("acme", "Acme", None, 1000, 100.0, 500.0)
    ledger.create_org("eng", "Eng", "acme", 600, 60.0, 300.0)
    ledger.create_org("ops", "Ops", "acme", 300, 30.0, 100.0)
    ledger.create_org("ml", "ML", "eng", 400, 40.0, 200.0)
    ledger.set_user_config(config("ada", daily=2000, weekly=2000, monthly=2000))
    return ledger


def test_org_create_validation(org_ledger: QuotaLedger) -> None:
    before = org_ledger.snapshot()
    cases = [
        ("acme", "x", None, 1, 1.0, 1.0),  # duplicate id
        ("x", "x", "nope", 1, 1.0, 1.0),  # unknown parent
        ("x", "x", "x", 1, 1.0, 1.0),  # its own parent
        ("x", "x", "acme", 101, 1.0, 1.0),  # 600 + 300 + 101 > 1000
        ("x", "x", "ml", 401, 1.0, 1.0),  # above its parent
        ("x", "x", "ops", 1, 31.0, 1.0),  # compute above its parent
        ("x", "x", "ops", 1, 1.0, 101.0),  # storage above its parent
    ]
    for org_id, name, parent, agents, hours, storage in cases:
        with pytest.raises(InvalidInput):
            org_ledger.create_org(org_id, name, parent, agents, hours, storage)
    assert org_ledger.snapshot() == before
    org_ledger.create_org("x", "X", "acme", 100, 10.0, 100.0)


def test_hierarchy_view(org_ledger: QuotaLedger) -> None:
    view = org_ledger.hierarchy("ml")
    assert view.org.org_id == "ml"
    assert [o.org_id for o in view.ancestors] == ["acme", "eng"]  # root first
    assert view.descendants == []
    assert view.siblings == []
    top = org_ledger.hierarchy("acme")
    assert [o.org_id for o in top.descendants] == ["eng", "ml", "ops"]
    assert top.ancestors == [] and top.siblings == []
    assert [o.org_id for o in org_ledger.hierarchy("ops").siblings] == ["eng"]
    assert top.org.storage_gb == 500.0


def test_charges_count_toward_every_ancestor(org_ledger: QuotaLedger) -> None:
    res = org_ledger.reserve("ada", 50, tier="user", task_id="t", org_id="ml")
    assert res.org_ids == ("ml", "eng", "acme")
    org_ledger.reconcile(res.reservation_id, 40, 2.0)
    for org_id in ("ml", "eng", "acme"):
        view = org_ledger.organization(org_id)
        assert (view.agents_used, view.compute_hours_used) == (40, 2.0)
    assert org_ledger.organization("ops").agents_used == 0


def test_the_tightest_ancestor_binds(org_ledger: QuotaLedger) -> None:
    org_ledger.patch_org("ml", agents=50)
    org_ledger.reserve("ada", 50, tier="user", task_id="t1", org_id="ml")
    before = org_ledger.snapshot()
    with pytest.raises(QuotaExceeded) as info:
        org_ledger.reserve("ada", 1, tier="user", task_id="t2")  # the recorded org: ml
    assert (info.value.details["scope"], info.value.details["scopeId"]) == ("org", "ml")
    assert org_ledger.snapshot() == before


def test_a_user_belongs_to_one_org(org_ledger: QuotaLedger) -> None:
    org_ledger.reserve("ada", 1, tier="user", task_id="t1", org_id="ml")
    with pytest.raises(InvalidInput):
        org_ledger.reserve("ada", 1, tier="user", task_id="t2", org_id="ops")
    org_ledger.set_user_org("ada", "ops")
    res = org_ledger.reserve("ada", 1, tier="user", task_id="t3")
    assert res.org_ids == ("ops", "acme")


def test_patch_validated_against_the_whole_tree(org_ledger: QuotaLedger) -> None:
    res = org_ledger.reserve("ada", 100, tier="user", task_id="t", org_id="ml")
    del res
    before = org_ledger.snapshot()
    bad = [
        ("ml", {"agents": 601}),  # above its parent
        ("eng", {"agents": 399}),  # below its child ml
        ("ops", {"agents": 401}),  # 600 + 401 > 1000
        ("acme", {"agents": 899}),  # below Σ children (900)
        ("ml", {"agents": 99}),  # below this month's usage
        ("eng", {"compute_hours": 39.0}),  # below its child's compute
        ("ops", {"storage_gb": 201.0}),  # 300 + 201 > 500
    ]
    for org_id, change in bad:
        with pytest.raises(InvalidInput):
            org_ledger.patch_org(org_id, **change)  # type: ignore[arg-type]
    assert org_ledger.snapshot() == before
    view = org_ledger.patch_org("ops", agents=400)
    assert (view.agents, view.compute_hours) == (400, 30.0)
    with pytest.raises(InvalidInput):
        org_ledger.patch_org("nope", agents=1)


def test_org_usage_resets_monthly(org_ledger: QuotaLedger, clock: FrozenClock) -> None:
    res = org_ledger.reserve("ada", 10, tier="user", task_id="t", org_id="ml")
    org_ledger.reconcile(res.reservation_id, 10)
    clock.set(datetime(2028, 3, 1, tzinfo=UTC))
    assert org_ledger.organization("acme").agents_used == 0


# -- all levels at once ------------------------------------------------------------------------


def test_all_or_nothing_across_levels(org_ledger: QuotaLedger) -> None:
    org_ledger.create_team("t", "T", 30, 5.0)
    org_ledger.add_member("t", "ada")
    res = org_ledger.reserve("ada", 25, tier="user", task_id="t1", team_id="t", org_id="ml")
    before = org_ledger.snapshot()
    # The user, its org and all ancestors have room; only the team pool does not.
    with pytest.raises(QuotaExceeded) as info:
        org_ledger.reserve("ada", 10, tier="user", task_id="t2", team_id="t")
    assert info.value.details["scope"] == "team"
    assert org_ledger.snapshot() == before
    assert org_ledger.user_status("ada").daily.agents_used == 25
    assert org_ledger.organization("acme").agents_used == 25
    org_ledger.reconcile(res.reservation_id, 20, 1.0)
    assert org_ledger.team_status("t").usage.agents_used == 20
    assert org_ledger.organization("ml").agents_used == 20


# -- the Ray boundary --------------------------------------------------------------------------


def test_results_pickle(team_ledger: QuotaLedger) -> None:
    res = team_ledger.reserve("a", 1, tier="user", task_id="t", team_id="t")
    receipt = team_ledger.transfer("t", "a", "b", 1)
    done = team_ledger.reconcile(res.reservation_id, 1)
    for value in (res, done, receipt, team_ledger.team_status("t"), team_ledger.user_status("a")):
        assert pickle.loads(pickle.dumps(value)) == value
    with pytest.raises(QuotaExceeded) as info:
        team_ledger.reserve("a", 10_000, tier="user", task_id="big")
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.details == info.value.details


def test_the_quota_core_does_not_import_ray() -> None:
    code = (
        "import sys, rlm.quotas, rlm.quotas.service, rlm.quotas.store; "
        "assert 'ray' not in sys.modules, 'rlm.quotas imported ray'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_exports_are_sorted() -> None:
    import rlm.quotas as package
    from rlm.quotas import (
        accounts,
        admission,
        alerts,
        changes,
        clock,
        counters,
        inputs,
        journal,
        ledger,
        ledger_batch,
        ledger_core,
        ledger_orgs,
        ledger_reservations,
        ledger_teams,
        ledger_tokens,
        ledger_users,
        orgs,
        records,
        service,
        settings,
        state,
        store,
        teams,
        tokens,
        windows,
        wire,
    )

    modules = (package, accounts, admission, alerts, changes, clock, counters, inputs, journal)
    modules += (ledger, ledger_core, ledger_orgs, ledger_reservations, ledger_teams)
    modules += (ledger_tokens, ledger_users, ledger_batch, wire)
    modules += (orgs, records, service, settings, state, store, teams, tokens, windows)
    for module in modules:
        assert module.__all__ == sorted(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_joining_with_an_allocation_is_all_or_nothing(team_ledger: QuotaLedger) -> None:
    before = team_ledger.snapshot()
    with pytest.raises(InvalidInput):
        team_ledger.add_member("t", "newcomer", "member", 31, 0.0)  # 40 + 30 + 31 > 100
    with pytest.raises(InvalidInput):
        team_ledger.add_member("t", "b", "lead", 61, 0.0)  # b may not grow to 61 either
    assert team_ledger.snapshot() == before  # no half-joined member, b's role unchanged
    assert team_ledger.reserve("newcomer", 1, tier="user", task_id="n1").team_id is None
    joined = team_ledger.add_member("t", "d", "member", 30, 3.0)
    assert (joined.agents_allocated, joined.compute_hours_allocated) == (30, 3.0)


def test_governing_orgs_follow_placement(ledger: QuotaLedger) -> None:
    ledger.create_org("acme", "Acme", None, 1000, 10.0)
    ledger.create_org("eng", "Eng", "acme", 500, 5.0)
    ledger.create_team("t", "Team", 100, 1.0, org_id="eng")
    ledger.create_team("loose", "Loose", 100, 1.0)
    ledger.set_user_org("ada", "eng")
    assert ledger.governing_orgs("user", "ada") == ["eng", "acme"]
    assert ledger.governing_orgs("user", "never-seen") == []
    assert ledger.governing_orgs("team", "t") == ["eng", "acme"]
    assert ledger.team_status("t").org_id == "eng"
    assert ledger.governing_orgs("team", "loose") == []
    assert ledger.governing_orgs("org", "acme") == ["acme"]
    for kind, name in (("team", "nope"), ("org", "nope"), ("planet", "x")):
        with pytest.raises(InvalidInput):
            ledger.governing_orgs(kind, name)
    with pytest.raises(InvalidInput):
        ledger.create_team("orphan", "Orphan", 1, 1.0, org_id="nope")


def test_refusals_read_as_a_person_wrote_them(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("ada", concurrent=3))
    ledger.reserve("ada", 10, tier="user", task_id="a", concurrent_agents=2)
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve("ada", 10, tier="user", task_id="b", concurrent_agents=2)
    assert info.value.message == (
        "user 'ada' may hold at most 3 agents at once: running tasks hold 2 and this one "
        "needs 2 (they free up as tasks end)"
    )
    assert "concurrentAgents" not in info.value.message  # field names stay in details
    assert info.value.details["resource"] == "concurrentAgents"


def test_a_transfer_to_the_same_member_moves_nothing(team_ledger: QuotaLedger) -> None:
    before = {m.user_id: m.agents_allocated for m in team_ledger.team_status("t").members}
    receipt = team_ledger.transfer("t", "a", "a", 5, 0.0, idempotency_key="self")
    assert receipt.from_agents_allocated == receipt.to_agents_allocated == before["a"]
    after = {m.user_id: m.agents_allocated for m in team_ledger.team_status("t").members}
    assert after == before
    assert team_ledger.transfer("t", "a", "a", 5, 0.0, idempotency_key="self") == receipt

"""Language-model tokens in the quota ledger: holds, settlement, the daily token limit, who is
charged, windows, views and persistence."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rlm.errors import InvalidInput, QuotaExceeded
from rlm.models.quotas import QuotaConfig
from rlm.quotas import (
    FrozenClock,
    QuotaLedger,
    QuotaLedgerService,
    QuotaSettings,
    TierQuota,
    TokenHold,
)
from rlm.quotas.counters import WindowCounter
from rlm.quotas.windows import iso_z
from rlm.tenants import apply_tenants, load_tenant_file

NOW = datetime(2028, 2, 29, 12, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def config(user_id: str, tokens: int | None = 1000, daily: int = 100) -> QuotaConfig:
    return QuotaConfig(
        user_id=user_id,
        daily_agent_limit=daily,
        weekly_agent_limit=300,
        monthly_agent_limit=1000,
        daily_compute_hours=10.0,
        max_concurrent_agents=5,
        max_storage_gb=1.0,
        daily_token_limit=tokens,
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def ledger(clock: FrozenClock) -> QuotaLedger:
    led = QuotaLedger(clock)
    led.set_user_config(config("ada"))
    return led


def _spend(ledger: QuotaLedger, user: str, tokens: int, cost: float = 0.0) -> None:
    hold = ledger.reserve_tokens(user, tokens)
    ledger.settle_tokens(hold.hold_id, tokens // 2, tokens - tokens // 2, cost)


# -- the daily limit ---------------------------------------------------------------------------


def test_a_refusal_fills_the_details_and_changes_nothing(ledger: QuotaLedger) -> None:
    _spend(ledger, "ada", 300)
    ledger.reserve_tokens("ada", 500, task_id="t1")
    before = ledger.snapshot()
    changes_before = ledger.pop_changes()
    assert changes_before  # the calls above were recorded...
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve_tokens("ada", 201, task_id="t1")
    details = info.value.details
    assert details["resource"] == "tokens"
    assert details["period"] == "daily"
    assert (details["limit"], details["used"], details["requested"]) == (1000, 800, 201)
    assert details["resetTime"] == iso_z(utc(2028, 3, 1))
    assert (details["scope"], details["scopeId"]) == ("user", "ada")
    assert ledger.snapshot() == before
    assert not ledger.pop_changes()  # ...and the refusal wrote nothing
    assert len(ledger.open_token_holds("ada")) == 1
    ledger.reserve_tokens("ada", 200)  # exactly the limit fits


def test_a_limit_of_zero_admits_no_token(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("zed", tokens=0))
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve_tokens("zed", 1)
    assert info.value.details["limit"] == 0
    assert ledger.user_status("zed").daily.tokens_remaining == 0


def test_no_limit_means_unlimited(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("free", tokens=None))
    hold = ledger.reserve_tokens("free", 10**12)
    assert not hold.durable
    daily = ledger.user_status("free").daily
    assert daily.token_limit is None and daily.tokens_remaining is None
    wire = ledger.user_status("free").to_wire()
    assert "tokenLimit" not in wire["daily"] and "tokensRemaining" not in wire["daily"]
    assert (wire["daily"]["tokensUsed"], wire["daily"]["costUsd"]) == (0, 0.0)


def test_a_hold_without_a_limit_writes_nothing(ledger: QuotaLedger) -> None:
    ledger.set_user_config(config("free", tokens=None))
    ledger.pop_changes()
    hold = ledger.reserve_tokens("free", 50)
    assert not ledger.pop_changes()
    assert hold.hold_id not in ledger.snapshot()["token_hold"]
    limited = ledger.reserve_tokens("ada", 50)
    assert limited.durable
    upserts = ledger.pop_changes().upserts
    assert [(k, key) for k, key, _ in upserts] == [("token_hold", limited.hold_id)]
    # Settling (or releasing) is always recorded: it charges, and repeats must be recognised.
    ledger.settle_tokens(hold.hold_id, 10, 5, 0.001)
    kinds = {k for k, _, _ in ledger.pop_changes().upserts}
    assert kinds == {"token_hold", "user", "usage"}  # usage: the hour's bucket (over time)


def test_open_holds_and_usage_count_against_the_day(ledger: QuotaLedger) -> None:
    first = ledger.reserve_tokens("ada", 600)
    assert ledger.user_status("ada").daily.tokens_remaining == 400
    assert ledger.user_status("ada").daily.tokens_used == 0  # held, not used
    with pytest.raises(QuotaExceeded):
        ledger.reserve_tokens("ada", 401)
    ledger.settle_tokens(first.hold_id, 100, 150, 0.01)  # usage below the worst case
    daily = ledger.user_status("ada").daily
    assert (daily.tokens_used, daily.tokens_remaining, daily.token_limit) == (250, 750, 1000)
    ledger.reserve_tokens("ada", 750)


def test_the_tier_default_applies_without_a_config(clock: FrozenClock) -> None:
    base = QuotaSettings().user.model_dump()
    settings = QuotaSettings(user=TierQuota(**{**base, "daily_token_limit": 100}))
    ledger = QuotaLedger(clock, settings)
    assert ledger.user_config("new").daily_token_limit == 100
    hold = ledger.reserve_tokens("new", 100)
    assert hold.durable
    with pytest.raises(QuotaExceeded):
        ledger.reserve_tokens("new", 1)
    assert ledger.snapshot()["user"] == {}  # a hold creates no account
    ledger.settle_tokens(hold.hold_id, 60, 40, 0.5)
    assert ledger.user_status("new").daily.tokens_used == 100


# -- settlement --------------------------------------------------------------------------------


def test_settle_exactly_once(ledger: QuotaLedger) -> None:
    hold = ledger.reserve_tokens("ada", 100, task_id="t")
    first = ledger.settle_tokens(hold.hold_id, 30, 20, 0.0125)
    assert (first.tokens, first.cost_usd, first.released) == (50, 0.0125, False)
    assert (first.input_tokens, first.output_tokens, first.tokens_held) == (30, 20, 100)
    before = ledger.snapshot()
    assert ledger.settle_tokens(hold.hold_id, 99, 99, 9.0) == first
    assert ledger.release_tokens(hold.hold_id) == first
    assert ledger.snapshot() == before
    assert ledger.token_hold(hold.hold_id) is None
    monthly = ledger.user_status("ada").monthly
    assert (monthly.tokens_used, monthly.cost_usd) == (50, 0.0125)


def test_release_charges_nothing_and_is_idempotent(ledger: QuotaLedger) -> None:
    hold = ledger.reserve_tokens("ada", 900)
    done = ledger.release_tokens(hold.hold_id)
    assert done.released and done.tokens == 0 and done.cost_nano == 0
    assert ledger.release_tokens(hold.hold_id) == done
    assert ledger.settle_tokens(hold.hold_id, 5, 5, 1.0) == done
    daily = ledger.user_status("ada").daily
    assert (daily.tokens_used, daily.cost_usd, daily.tokens_remaining) == (0, 0.0, 1000)
    assert ledger.open_token_holds() == []


def test_overspend_is_charged_in_full(ledger: QuotaLedger) -> None:
    hold = ledger.reserve_tokens("ada", 100)
    ledger.settle_tokens(hold.hold_id, 800, 400, 0.0)  # the provider reported more
    daily = ledger.user_status("ada").daily
    assert (daily.tokens_used, daily.tokens_remaining) == (1200, 0)
    with pytest.raises(QuotaExceeded):
        ledger.reserve_tokens("ada", 1)


def test_tiny_costs_add_up_exactly(ledger: QuotaLedger) -> None:
    for _ in range(1000):
        hold = ledger.reserve_tokens("ada", 1)
        ledger.settle_tokens(hold.hold_id, 1, 0, 0.0000003)  # below a micro-dollar
    assert ledger.user_status("ada").daily.cost_usd == pytest.approx(0.0003, abs=1e-12)


def test_invalid_arguments(ledger: QuotaLedger) -> None:
    before = ledger.snapshot()
    for args in (("ada", 0), ("ada", -1), ("ada", True), ("ada", 1.5), ("", 1), ("ada", 10**13)):
        with pytest.raises(InvalidInput):
            ledger.reserve_tokens(*args)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ledger.reserve_tokens("ada", 1, tier="nobody")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ledger.reserve_tokens("ada", 1, team_id="no-such-team")
    with pytest.raises(InvalidInput):
        ledger.reserve_tokens("ada", 1, org_id="no-such-org")
    with pytest.raises(InvalidInput):
        ledger.settle_tokens("tok_unknown", 1, 1, 0.0)
    with pytest.raises(InvalidInput):
        ledger.release_tokens("tok_unknown")
    hold = ledger.reserve_tokens("ada", 10)
    for bad in ((-1, 0, 0.0), (0, -1, 0.0), (0, 0, -0.1), (0, 0, float("nan")), (0, 0, 1e10)):
        with pytest.raises(InvalidInput):
            ledger.settle_tokens(hold.hold_id, *bad)
    assert ledger.token_hold(hold.hold_id) == hold  # still open after the bad calls
    ledger.release_tokens(hold.hold_id)
    snap = ledger.snapshot()
    assert snap["user"] == before["user"] and snap["config"] == before["config"]


def test_reaper_releases_only_stale_holds(ledger: QuotaLedger, clock: FrozenClock) -> None:
    old = ledger.reserve_tokens("ada", 100, task_id="old")
    clock.advance(timedelta(hours=2))
    fresh = ledger.reserve_tokens("ada", 100, task_id="fresh")
    reaped = ledger.reap_expired_tokens(timedelta(hours=1))
    assert [(s.hold_id, s.released) for s in reaped] == [(old.hold_id, True)]
    assert [h.hold_id for h in ledger.open_token_holds()] == [fresh.hold_id]
    assert ledger.user_status("ada").daily.tokens_used == 0


def test_prune_history_forgets_old_token_settlements(
    ledger: QuotaLedger, clock: FrozenClock
) -> None:
    hold = ledger.reserve_tokens("ada", 10)
    ledger.settle_tokens(hold.hold_id, 5, 5, 0.0)
    clock.advance(timedelta(days=2))
    assert ledger.prune_history(timedelta(days=1)) == 1
    assert ledger.snapshot()["token_hold"] == {}
    with pytest.raises(InvalidInput):
        ledger.settle_tokens(hold.hold_id, 5, 5, 0.0)


# -- who is charged ----------------------------------------------------------------------------


@pytest.fixture
def tenant_ledger(ledger: QuotaLedger) -> QuotaLedger:
    ledger.create_org("acme", "Acme", None, 1000, 100.0, 500.0)
    ledger.create_org("eng", "Eng", "acme", 600, 60.0, 300.0)
    ledger.create_org("ml", "ML", "eng", 400, 40.0, 200.0)
    ledger.create_org("ops", "Ops", "acme", 300, 30.0, 100.0)
    ledger.create_team("t", "Team", 100, 10.0, 50.0, "ml")
    ledger.add_member("t", "ada")
    ledger.set_user_org("ada", "ml")
    return ledger


def test_team_org_and_every_ancestor_are_charged(tenant_ledger: QuotaLedger) -> None:
    led = tenant_ledger
    hold = led.reserve_tokens("ada", 500)  # team and org default as for reserve
    assert (hold.team_id, hold.org_ids) == ("t", ("ml", "eng", "acme"))
    led.settle_tokens(hold.hold_id, 300, 100, 0.25)
    for period in ("daily", "weekly", "monthly"):
        view = getattr(led.user_status("ada"), period)
        assert (view.tokens_used, view.cost_usd) == (400, 0.25)
    usage = led.team_status("t").usage
    assert (usage.tokens_used, usage.cost_usd) == (400, 0.25)
    assert led.team_status("t").to_wire()["usage"]["tokensUsed"] == 400
    for org in ("ml", "eng", "acme"):
        view = led.organization(org)
        assert (view.tokens_used, view.cost_usd) == (400, 0.25)
    assert led.organization("ops").tokens_used == 0
    tree = led.hierarchy("eng")
    assert [(o.org_id, o.tokens_used) for o in tree.ancestors] == [("acme", 400)]
    assert [(o.org_id, o.cost_usd) for o in tree.descendants] == [("ml", 0.25)]
    assert tree.to_wire()["org"]["costUsd"] == 0.25
    # Agent usage is untouched by tokens.
    assert led.user_status("ada").daily.agents_used == 0
    assert led.organization("acme").agents_used == 0


def test_tokens_follow_the_same_rules_as_reservations(tenant_ledger: QuotaLedger) -> None:
    led = tenant_ledger
    led.create_team("t2", "Two", 100, 10.0, 50.0)
    led.add_member("t2", "ada")
    before = led.snapshot()
    with pytest.raises(InvalidInput, match="name the team"):
        led.reserve_tokens("ada", 10)
    with pytest.raises(InvalidInput, match="belongs to org"):
        led.reserve_tokens("ada", 10, team_id="t", org_id="ops")
    with pytest.raises(InvalidInput, match="not a member"):
        led.reserve_tokens("bob", 10, team_id="t")
    assert led.snapshot() == before
    hold = led.reserve_tokens("ada", 10, team_id="t2", org_id="ml")
    assert (hold.team_id, hold.org_ids) == ("t2", ("ml", "eng", "acme"))
    led.settle_tokens(hold.hold_id, 10, 0, 0.0)
    assert (led.team_status("t2").usage.tokens_used, led.team_status("t").usage.tokens_used) == (
        10,
        0,
    )


def test_a_user_in_no_org_charges_only_itself(ledger: QuotaLedger) -> None:
    hold = ledger.reserve_tokens("ada", 10)
    assert (hold.team_id, hold.org_ids) == (None, ())
    ledger.settle_tokens(hold.hold_id, 4, 6, 0.5)
    assert ledger.user_status("ada").weekly.tokens_used == 10


# -- windows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "boundary",
    [
        utc(2028, 2, 29),  # into the leap day
        utc(2028, 3, 1),  # out of the leap day and of February
        utc(2028, 5, 1),  # 30 April -> 1 May (also a Monday)
        utc(2028, 1, 1),  # new year, mid ISO week
    ],
)
def test_daily_tokens_reset_exactly_at_midnight(boundary: datetime) -> None:
    clock = FrozenClock(boundary - timedelta(hours=1))
    ledger = QuotaLedger(clock)
    ledger.set_user_config(config("ada", tokens=100))
    _spend(ledger, "ada", 100, 1.0)
    with pytest.raises(QuotaExceeded) as info:
        ledger.reserve_tokens("ada", 1)
    assert info.value.details["resetTime"] == iso_z(boundary)

    clock.set(boundary - TICK)
    assert ledger.user_status("ada").daily.tokens_used == 100
    with pytest.raises(QuotaExceeded):
        ledger.reserve_tokens("ada", 1)

    clock.set(boundary)
    status = ledger.user_status("ada")
    assert (status.daily.tokens_used, status.daily.cost_usd) == (0, 0.0)
    assert status.daily.tokens_remaining == 100
    same_week = boundary.weekday() != 0
    same_month = boundary.day != 1
    assert status.weekly.tokens_used == (100 if same_week else 0)
    assert status.monthly.tokens_used == (100 if same_month else 0)
    _spend(ledger, "ada", 100)
    assert ledger.user_status("ada").daily.tokens_remaining == 0


def test_a_hold_survives_midnight_and_its_usage_lands_in_the_new_day() -> None:
    clock = FrozenClock(utc(2028, 2, 29, 23, 59))
    ledger = QuotaLedger(clock)
    ledger.set_user_config(config("ada", tokens=100))
    _spend(ledger, "ada", 40)
    hold = ledger.reserve_tokens("ada", 60)
    clock.set(utc(2028, 3, 1))
    # Yesterday's usage is gone; the open hold still counts.
    assert ledger.user_status("ada").daily.tokens_remaining == 40
    with pytest.raises(QuotaExceeded):
        ledger.reserve_tokens("ada", 41)
    ledger.settle_tokens(hold.hold_id, 30, 20, 0.0)
    status = ledger.user_status("ada")
    assert (status.daily.tokens_used, status.weekly.tokens_used) == (50, 90)
    assert status.monthly.tokens_used == 50  # March: February's 40 are not in it


def test_old_counter_rows_load_without_tokens() -> None:
    counter = WindowCounter.from_row(["2028-02-29", 1, 2, 3, 4])
    assert (counter.tokens_used, counter.cost_used) == (0, 0)
    assert counter.to_row() == ["2028-02-29", 1, 2, 3, 4, 0, 0]


# -- views, persistence and the service --------------------------------------------------------


def test_config_wire_name_and_bounds() -> None:
    wire = config("ada", tokens=5000).to_wire()
    assert wire["dailyTokenLimit"] == 5000
    assert "dailyTokenLimit" not in config("ada", tokens=None).to_wire()
    parsed = QuotaConfig.model_validate({**wire, "dailyTokenLimit": 0})
    assert parsed.daily_token_limit == 0
    with pytest.raises(ValueError):
        QuotaConfig.model_validate({**wire, "dailyTokenLimit": -1})
    without = {k: v for k, v in wire.items() if k != "dailyTokenLimit"}
    assert QuotaConfig.model_validate(without).daily_token_limit is None


def test_results_pickle(ledger: QuotaLedger) -> None:
    hold = ledger.reserve_tokens("ada", 10, task_id="t")
    done = ledger.settle_tokens(hold.hold_id, 1, 2, 0.5)
    for value in (hold, done):
        assert pickle.loads(pickle.dumps(value)) == value


def test_token_usage_and_holds_survive_a_reopen(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    path = tmp_path / "quotas.db"
    service = QuotaLedgerService(path, clock=clock)
    service.create_org("acme", "Acme", None, 1000, 100.0, 50.0)
    service.create_team("t", "Team", 100, 10.0, 5.0, "acme")
    service.set_user_config(config("ada", tokens=1000))
    service.set_user_config(config("free", tokens=None))
    service.add_member("t", "ada")
    service.set_user_org("ada", "acme")
    settled = service.reserve_tokens("ada", 500)
    first = service.settle_tokens(settled.hold_id, 200, 100, 0.75)
    held = service.reserve_tokens("ada", 400, task_id="running")
    lost = service.reserve_tokens("free", 10)  # no limit: never stored
    released = service.release_tokens(service.reserve_tokens("free", 10).hold_id)
    snapshot = service.snapshot()
    service.close()

    again = QuotaLedgerService(path, clock=clock)
    assert again.snapshot() == snapshot
    assert again.user_config("ada").daily_token_limit == 1000
    daily = again.user_status("ada").daily
    assert (daily.tokens_used, daily.cost_usd, daily.tokens_remaining) == (300, 0.75, 300)
    assert (again.team_status("t").usage.tokens_used, again.organization("acme").cost_usd) == (
        300,
        0.75,
    )
    assert [h.hold_id for h in again.open_token_holds()] == [held.hold_id]
    assert again.token_hold(lost.hold_id) is None
    assert again.settle_tokens(settled.hold_id, 1, 1, 1.0) == first  # remembered
    assert again.release_tokens(released.hold_id) == released
    with pytest.raises(QuotaExceeded):
        again.reserve_tokens("ada", 301)
    # What an engine does at start: release what the previous one held.
    for hold in again.open_token_holds():
        again.release_tokens(hold.hold_id)
    assert again.user_status("ada").daily.tokens_remaining == 700
    after = again.snapshot()
    again.close()
    third = QuotaLedgerService(path, clock=clock)
    assert third.snapshot() == after
    third.close()


def test_a_batch_holds_and_settles_tokens(tmp_path: Path) -> None:
    service = QuotaLedgerService(tmp_path / "quotas.db", clock=FrozenClock(NOW))
    service.set_user_config(config("ada", tokens=100))
    held = service.batch([("reserve_tokens", ("ada", 60), {}) for _ in range(2)])
    assert isinstance(held[0], TokenHold)
    assert isinstance(held[1], QuotaExceeded)
    assert held[1].details["resource"] == "tokens"
    done = service.batch(
        [("settle_tokens", (held[0].hold_id, 20, 10, 0.1), {}), ("user_status", ("ada",), {})]
    )
    assert done[0].tokens == 30
    assert done[1].daily.tokens_used == 30
    service.close()


def test_tenants_file_sets_the_daily_token_limit(tmp_path: Path, clock: FrozenClock) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        "users:\n"
        "  - userId: alice\n"
        "    dailyAgentLimit: 50\n"
        "    weeklyAgentLimit: 200\n"
        "    monthlyAgentLimit: 800\n"
        "    dailyComputeHours: 1\n"
        "    maxConcurrentAgents: 2\n"
        "    maxStorageGB: 1\n"
        "    dailyTokenLimit: 250000\n"
    )
    ledger = QuotaLedger(clock)
    apply_tenants(load_tenant_file(path), lambda m, *a, **k: getattr(ledger, m)(*a, **k))
    assert ledger.user_config("alice").daily_token_limit == 250_000
    assert ledger.user_status("alice").daily.token_limit == 250_000

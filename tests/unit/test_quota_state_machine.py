"""A random walk over the quota ledger, checked against a plain reference model.

The reference model keeps every charge with the instant it was made and every open
reservation; the usage any level should report is then just a sum over the charges whose
window is the current one, plus the open holds. It also keeps every member's allocation, every
org's caps and every idempotency key, so it predicts, before each call, whether the call must
succeed or must be refused and why (which level, resource and window; which field). Rules
reserve, reconcile, release, reap, transfer, re-allocate, patch orgs and move the clock (across
day, ISO week and month boundaries, including 29 February 2028). After every step, refusals
included, the ledger's counters, allocations and caps must equal the model's. Language-model
token holds have rules and an invariant of their own (the last section of the machine), with a
model of their own.
"""

from __future__ import annotations

import calendar
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from rlm.db.connect import ensure_schema
from rlm.errors import InvalidInput, QuotaExceeded
from rlm.models.quotas import QuotaConfig
from rlm.quotas import (
    PERIODS,
    FrozenClock,
    QuotaLedger,
    QuotaStore,
    Reservation,
    TokenHold,
    window_start,
)
from rlm.quotas.counters import from_micro
from rlm.quotas.pg_store import PostgresQuotaStore
from rlm.testing.postgres import ThrowawayPostgres

USERS = ("u0", "u1", "u2", "u3", "u4")
# u1 is an uncapped team member; u3 is charged at the root directly (the only way an ancestor's
# cap can bind, since children's caps sum to at most their parent's); u4 is in no org or team.
USER_ORG = {"u0": "a1", "u1": "a", "u2": "b", "u3": "root", "u4": None}
MEMBERS = ("u0", "u1", "u2")
ORGS = ("root", "a", "b", "a1")
PARENT = {"root": None, "a": "root", "b": "root", "a1": "a"}
LIMITS = {"daily": 40, "weekly": 100, "monthly": 200}
# u4's small windows fill often, so threshold alerts fire (and roll over) in most runs.
SMALL_LIMITS = {"daily": 10, "weekly": 25, "monthly": 50}


def _limits(user: str) -> dict[str, int]:
    return SMALL_LIMITS if user == "u4" else LIMITS


DAILY_COMPUTE_MICRO = 1_000_000
MAX_CONCURRENT = 3

STARTS = (
    datetime(2028, 2, 28, 20, tzinfo=UTC),  # leap day next, then March
    datetime(2027, 12, 31, 22, tzinfo=UTC),  # new year inside ISO week 52 of 2027
    datetime(2028, 4, 30, 23, tzinfo=UTC),  # a Sunday: day, week and month end together
    datetime(2028, 1, 31, 23, 30, tzinfo=UTC),  # 31st -> 1st
)

COMPUTE_STEPS = (0.0, 0.125, 0.25, 0.5)
RESOURCES = ("agents", "computeHours", "storageGB")


@dataclass
class Charge:
    at: datetime
    entities: frozenset[tuple[str, str]]
    agents: int
    compute: int


def _entities(res: Reservation) -> frozenset[tuple[str, str]]:
    out = {("user", res.user_id)}
    if res.team_id is not None:
        out |= {("team", res.team_id), ("member", res.user_id)}
    out |= {("org", o) for o in res.org_ids}
    return frozenset(out)


def _micro(hours: float) -> int:
    return round(hours * 1_000_000)


# Caps tight enough that every level, not only the user's day, refuses now and then.
# (agents, compute micro-hours, storage micro-GB)
ORG_CAPS = {
    "root": (80, _micro(8.0), _micro(100.0)),
    "a": (40, _micro(5.0), _micro(50.0)),
    "b": (30, _micro(2.0), _micro(40.0)),
    "a1": (25, _micro(3.0), _micro(20.0)),
}
TEAM_POOL = (100, _micro(6.0))
# None: an uncapped member, bound by the pool alone.
ALLOCATIONS: dict[str, tuple[int, int] | None] = {
    "u0": (45, _micro(2.0)),
    "u1": None,
    "u2": (35, _micro(1.5)),
}

# A predicted refusal: (field, a fragment of the message saying why).
Why = tuple[str, str]


def _held(row: list[Any], month_start: datetime) -> tuple[int, int]:
    start = datetime.fromisoformat(row[0]).replace(tzinfo=UTC)
    if start < month_start:
        return row[2], row[4]
    return row[1] + row[2], row[3] + row[4]


# Language-model tokens: each user's dailyTokenLimit (u2 has none: its holds are not stored;
# u3 has 0: every hold is refused), and the costs a settlement reports.
TOKEN_LIMITS: dict[str, int | None] = {"u0": 400, "u1": 150, "u2": None, "u3": 0, "u4": 250}
TOKEN_COSTS = (0.0, 0.000_000_3, 0.000_15, 0.25)


@dataclass
class TokenCharge:
    at: datetime
    entities: frozenset[tuple[str, str]]
    tokens: int
    cost: int


def _token_entities(hold: TokenHold) -> frozenset[tuple[str, str]]:
    # Like a reservation's, without the membership: tokens are charged to the team itself.
    out = {("user", hold.user_id)}
    if hold.team_id is not None:
        out.add(("team", hold.team_id))
    out |= {("org", o) for o in hold.org_ids}
    return frozenset(out)


class QuotaMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")
    token_holds = Bundle("token_holds")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock(STARTS[0])
        self.ledger = QuotaLedger(self.clock)
        self.charges: list[Charge] = []
        self.open: dict[str, Reservation] = {}
        self.settled: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.keys: dict[str, tuple[str, str, int, int]] = {}
        self.receipts: dict[str, Any] = {}
        self.allocations = dict(ALLOCATIONS)
        self.caps = dict(ORG_CAPS)
        self.task_seq = 0
        # Every step's changes go to a real store (compacting often), which must then hold
        # exactly the ledger's state: the change tracking misses nothing.
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "quotas.db"
        self.store = self.open_store()
        # The token model: open holds and every settled charge (released holds charge nothing).
        self.token_limits_set = False
        self.token_open: dict[str, TokenHold] = {}
        self.token_charges: list[TokenCharge] = []

    def open_store(self) -> QuotaStore | PostgresQuotaStore:
        """The store every step's changes go to (a SQLite file compacting often)."""
        return QuotaStore(self.path, compact_every=5)

    def reopen_store(self) -> QuotaStore | PostgresQuotaStore:
        """The same state, opened afresh."""
        return QuotaStore(self.path)

    def teardown(self) -> None:
        try:
            snap = self.ledger.snapshot()
            assert QuotaLedger.restore(snap, self.clock).snapshot() == snap
            self.store.apply(self.ledger.pop_changes())
            self.store.close()
            with self.reopen_store() as reopened:
                assert reopened.load() == snap
        finally:
            self.tmp.cleanup()

    # -- setup -----------------------------------------------------------------------------

    @initialize(start=st.sampled_from(STARTS))
    def setup(self, start: datetime) -> None:
        self.clock.set(start)
        led = self.ledger
        for org in ORGS:
            agents, compute, storage = ORG_CAPS[org]
            led.create_org(
                org, org.upper(), PARENT[org], agents, from_micro(compute), from_micro(storage)
            )
        for user in USERS:
            led.set_user_config(
                QuotaConfig(
                    user_id=user,
                    daily_agent_limit=_limits(user)["daily"],
                    weekly_agent_limit=_limits(user)["weekly"],
                    monthly_agent_limit=_limits(user)["monthly"],
                    daily_compute_hours=DAILY_COMPUTE_MICRO / 1e6,
                    max_concurrent_agents=MAX_CONCURRENT,
                    max_storage_gb=1.0,
                )
            )
            led.set_user_org(user, USER_ORG[user])
        led.create_team("t", "Team", TEAM_POOL[0], from_micro(TEAM_POOL[1]), 10.0)
        for user in MEMBERS:
            led.add_member("t", user)
        for user, allocation in ALLOCATIONS.items():
            if allocation is not None:
                led.set_member_allocation("t", user, allocation[0], from_micro(allocation[1]))

    # -- helpers ---------------------------------------------------------------------------

    def _expect_unchanged(self, before: dict[str, Any]) -> None:
        assert self.ledger.snapshot() == before, "a refused call changed the ledger"

    def _record_settlement(self, res: Reservation, agents: int, compute: int) -> None:
        del self.open[res.reservation_id]
        self.charges.append(Charge(self.clock.now(), _entities(res), agents, compute))
        self.events.extend(self.ledger.drain_events())

    def _monthly(self, entity: tuple[str, str]) -> tuple[int, int]:
        held, _ = self._model_usage()
        return held[entity, "monthly", "agents"], held[entity, "monthly", "compute"]

    def _admission_refusal(
        self, user: str, agents: int, concurrent: int, compute: int
    ) -> tuple[Any, ...] | None:
        """The refusal the ledger must answer, in its order of checks; ``None``: admitted.

        Returns ``(scope, scopeId, resource, period, limit, used)``.
        """
        held, _ = self._model_usage()
        now = self.clock.now()
        daily = DAILY_COMPUTE_MICRO
        compute_limits = {
            "daily": daily,
            "weekly": 7 * daily,
            "monthly": calendar.monthrange(now.year, now.month)[1] * daily,
        }

        def fit(
            scope: str,
            scope_id: str,
            period: str,
            agents_limit: int | None,
            compute_limit: int | None,
        ) -> tuple[Any, ...] | None:
            entity = (scope, scope_id)
            used = held[entity, period, "agents"]
            if agents_limit is not None and used + agents > agents_limit:
                return (scope, scope_id, "agents", period, agents_limit, used)
            used = held[entity, period, "compute"]
            # Compute is charged after the fact: an exhausted window refuses even 0 planned.
            if compute_limit is not None and (
                used >= compute_limit or used + compute > compute_limit
            ):
                return (
                    scope,
                    scope_id,
                    "computeHours",
                    period,
                    from_micro(compute_limit),
                    from_micro(used),
                )
            return None

        levels: list[tuple[str, str, str, int | None, int | None]] = [
            ("user", user, p, _limits(user)[p], compute_limits[p]) for p in PERIODS
        ]
        for level in levels:
            if (refusal := fit(*level)) is not None:
                return refusal
        leased = sum(r.concurrent_agents for r in self.open.values() if r.user_id == user)
        if leased + concurrent > MAX_CONCURRENT:
            return ("user", user, "concurrentAgents", "concurrent", MAX_CONCURRENT, leased)
        rest: list[tuple[str, str, str, int | None, int | None]] = []
        if user in MEMBERS:
            allocation = self.allocations[user]
            cap = (None, None) if allocation is None else allocation
            rest.append(("member", user, "monthly", *cap))
            rest.append(("team", "t", "monthly", *TEAM_POOL))
        for org in self._chain(USER_ORG[user]):
            rest.append(("org", org, "monthly", *self.caps[org][:2]))
        for level in rest:
            if (refusal := fit(*level)) is not None:
                return refusal
        return None

    def _transfer_refusal(self, body: tuple[str, str, int, int], key: str | None) -> Why | None:
        giver, taker, agents, compute = body
        if key is not None and key in self.keys:
            if self.keys[key] != body:
                return ("idempotencyKey", "idempotency key was already used")
            return None  # a replay: the first receipt again
        if agents == 0 and compute == 0:
            return ("agents", "must move agents or compute hours")
        if giver == taker:
            return None  # from a member to itself: nothing moves
        for member, field in ((giver, "fromUserId"), (taker, "toUserId")):
            if self.allocations[member] is None:
                return (field, f"member {member!r} has no allocation")
        allocated = self.allocations[giver]
        assert allocated is not None
        held = self._monthly(("member", giver))
        if allocated[0] - agents < held[0]:
            return ("agents", "would keep less than")
        if allocated[1] - compute < held[1]:
            return ("computeHours", "would keep less compute")
        return None

    def _allocation_refusal(self, member: str, agents: int, compute: int) -> Why | None:
        others = [a for m, a in self.allocations.items() if m != member and a is not None]
        for i, field in enumerate(("agents", "computeHours")):
            if sum(a[i] for a in others) + (agents, compute)[i] > TEAM_POOL[i]:
                return (field, f"would exceed its {field} pool")
        held = self._monthly(("member", member))
        if agents < held[0] or compute < held[1]:
            field = "agents" if agents < held[0] else "computeHours"
            return (field, "would fall below what it already used")
        return None

    def _patch_refusal(self, org: str, caps: tuple[int, int, int]) -> Why | None:
        parent = PARENT[org]
        if parent is not None:
            siblings = [c for c in ORGS if PARENT[c] == parent and c != org]
            for i, field in enumerate(RESOURCES):
                if caps[i] > self.caps[parent][i]:
                    return (field, f"exceeds parent {parent!r}'s cap")
                if sum(self.caps[c][i] for c in siblings) + caps[i] > self.caps[parent][i]:
                    return (field, "with its siblings exceeds parent")
        children = [c for c in ORGS if PARENT[c] == org]
        for i, field in enumerate(RESOURCES):
            if sum(self.caps[c][i] for c in children) > caps[i]:
                return (field, "below the sum of its children's caps")
        held = self._monthly(("org", org))
        for i, field in enumerate(("agents", "computeHours")):
            if caps[i] < held[i]:
                return (field, "below this month's usage")
        return None

    def _expect_refused(self, err: InvalidInput, why: Why | None, before: Any) -> None:
        assert why is not None, f"refused, but the model admits it: {err}"
        assert (err.details.get("field"), why[1] in err.message) == (why[0], True), (
            f"refused for {err.message!r} ({err.details}), the model expected {why}"
        )
        self._expect_unchanged(before)

    # -- rules -----------------------------------------------------------------------------

    @rule(
        target=reservations,
        user=st.sampled_from(USERS),
        agents=st.one_of(st.integers(1, 6), st.integers(1, 30)),
        concurrent=st.integers(1, 2),
        use_team=st.booleans(),
        explicit_org=st.booleans(),
        compute=st.sampled_from(COMPUTE_STEPS),
    )
    def reserve(
        self,
        user: str,
        agents: int,
        concurrent: int,
        use_team: bool,
        explicit_org: bool,
        compute: float,
    ) -> str:
        team = "t" if use_team and user in MEMBERS else None
        org = USER_ORG[user] if explicit_org else None
        self.task_seq += 1
        kwargs: dict[str, Any] = {
            "tier": "user",
            "team_id": team,
            "org_id": org,
            "concurrent_agents": concurrent,
            "compute_hours": compute,
        }
        expected = self._admission_refusal(user, agents, concurrent, _micro(compute))
        before = self.ledger.snapshot()
        decision = self.ledger.check(user, agents, **kwargs)
        self._expect_unchanged(before)
        try:
            res = self.ledger.reserve(user, agents, task_id=f"task-{self.task_seq}", **kwargs)
        except QuotaExceeded as err:
            refusal = err
        else:
            assert expected is None, f"admitted, but the model refuses it: {expected}"
            assert decision.allowed
            assert res.org_ids == self._chain(USER_ORG[user])
            # Members draw on their team's pool whether or not the caller names it.
            assert res.team_id == ("t" if user in MEMBERS else None)
            assert (res.agents, res.concurrent_agents, res.compute_micro) == (
                agents,
                concurrent,
                _micro(compute),
            )
            self.open[res.reservation_id] = res
            event("reserve: admitted")
            return res.reservation_id
        assert not decision.allowed
        assert decision.reason == refusal.message
        assert {"resource", "period", "limit", "used", "resetTime"} <= set(refusal.details)
        datetime.fromisoformat(refusal.details["resetTime"].replace("Z", "+00:00"))
        details = refusal.details
        got = tuple(details[k] for k in ("scope", "scopeId", "resource", "period", "limit", "used"))
        assert got == expected, f"refused with {got}, the model expected {expected}"
        self._expect_unchanged(before)
        event(f"reserve: refused by {details['scope']} {details['resource']}")
        return "refused"

    @rule(
        target=reservations,
        user=st.sampled_from(MEMBERS),
        agents=st.integers(1, 25),
        compute=st.sampled_from(COMPUTE_STEPS),
    )
    def reserve_in_team(self, user: str, agents: int, compute: float) -> str:
        # Rules are drawn uniformly; a second admission rule keeps the pools under pressure.
        return self.reserve(user, agents, 1, True, False, compute)

    @rule(agents=st.integers(1, 6), compute=st.sampled_from(COMPUTE_STEPS))
    def run_small_task(self, agents: int, compute: float) -> None:
        # Reserve and settle in full at once for u4, whose small windows then cross the alert
        # thresholds (and roll over) in most runs.
        res_id = self.reserve("u4", agents, 1, False, False, compute)
        self.reconcile(res_id, 1.0, 1.0)

    def _chain(self, org: str | None) -> tuple[str, ...]:
        out: list[str] = []
        while org is not None:
            out.append(org)
            org = PARENT[org]
        return tuple(out)

    @rule(
        res_id=consumes(reservations),
        fraction=st.one_of(st.sampled_from((0.0, 1.0)), st.floats(0, 1)),
        compute_share=st.one_of(st.just(1.0), st.floats(0, 1)),
    )
    def reconcile(self, res_id: str, fraction: float, compute_share: float) -> None:
        res = self.open.get(res_id)
        if res is None:
            return
        agents = int(res.agents * fraction)
        steps = [c for c in COMPUTE_STEPS if _micro(c) <= res.compute_micro]
        compute = steps[int(compute_share * (len(steps) - 1))]
        first = self.ledger.reconcile(res_id, agents, compute)
        assert first.agent_calls == agents
        assert first.compute_micro == _micro(compute)
        before = self.ledger.snapshot()
        assert self.ledger.reconcile(res_id, agents + 1, compute) == first
        assert self.ledger.release(res_id) == first
        self._expect_unchanged(before)
        self._record_settlement(res, agents, _micro(compute))

    @rule(res_id=consumes(reservations))
    def reconcile_in_full(self, res_id: str) -> None:
        self.reconcile(res_id, 1.0, 1.0)

    @rule(res_id=consumes(reservations))
    def release(self, res_id: str) -> None:
        res = self.open.get(res_id)
        if res is None:
            return
        done = self.ledger.release(res_id)
        assert done.released
        assert done.agent_calls == 0
        assert self.ledger.release(res_id) == done
        self._record_settlement(res, 0, 0)

    def reap(self, hours: int) -> None:
        cutoff = self.clock.now() - timedelta(hours=hours)
        expected = {r for r, res in self.open.items() if res.created_at <= cutoff}
        done = self.ledger.reap_expired(timedelta(hours=hours))
        assert {s.reservation_id for s in done} == expected
        for settlement in done:
            self._record_settlement(self.open[settlement.reservation_id], 0, 0)

    @rule(
        minutes=st.one_of(
            st.integers(1, 180),
            st.integers(1, 48).map(lambda h: 60 * h),
            st.integers(1, 40).map(lambda d: 1440 * d),
        ),
        reap_after=st.one_of(st.none(), st.integers(1, 72)),
    )
    def advance(self, minutes: int, reap_after: int | None) -> None:
        self.clock.advance(timedelta(minutes=minutes))
        if reap_after is not None:
            self.reap(reap_after)

    @rule(
        # Mostly the capped members: transfers involving uncapped u1 are refused.
        giver=st.sampled_from(("u0", "u2", "u0", "u2", "u1")),
        taker=st.sampled_from(("u2", "u0", "u2", "u0", "u1")),
        agents=st.integers(0, 30),
        compute=st.sampled_from((0.0, 0.5, 1.0, 4.0)),
        key=st.sampled_from((None, "k1", "k2", "k3")),
    )
    def transfer(
        self, giver: str, taker: str, agents: int, compute: float, key: str | None
    ) -> None:
        body = (giver, taker, agents, _micro(compute))
        why = self._transfer_refusal(body, key)
        replay = key is not None and self.keys.get(key) == body
        before = self.ledger.snapshot()
        try:
            receipt = self.ledger.transfer("t", giver, taker, agents, compute, key)
        except InvalidInput as err:
            self._expect_refused(err, why, before)
            event(f"transfer: refused ({err.details.get('field')})")
            return
        assert why is None, f"transferred, but the model refuses it: {why}"
        if replay:
            assert key is not None
            assert receipt == self.receipts[key]
            self._expect_unchanged(before)
            event("transfer: replayed")
            return
        if giver == taker:
            after = self.ledger.snapshot()
            kept = {k: v for k, v in after.items() if k != "transfer"}
            assert kept == {k: v for k, v in before.items() if k != "transfer"}
            mine = self.allocations[giver] or (0, 0)
            assert (receipt.from_agents_allocated, receipt.to_agents_allocated) == (
                mine[0],
                mine[0],
            )
            if key is not None:
                self.keys[key] = body
                self.receipts[key] = receipt
            event("transfer: to itself")
            return
        gave, took = self.allocations[giver], self.allocations[taker]
        assert gave is not None and took is not None
        self.allocations[giver] = (gave[0] - agents, gave[1] - _micro(compute))
        self.allocations[taker] = (took[0] + agents, took[1] + _micro(compute))
        assert (receipt.team_id, receipt.from_user_id, receipt.to_user_id) == ("t", giver, taker)
        assert (receipt.agents, receipt.compute_micro) == (agents, _micro(compute))
        assert (receipt.from_agents_allocated, receipt.from_compute_micro_allocated) == (
            self.allocations[giver]
        )
        assert (receipt.to_agents_allocated, receipt.to_compute_micro_allocated) == (
            self.allocations[taker]
        )
        assert receipt.transferred_at == self.clock.now()
        if key is None:
            assert receipt.transfer_id.startswith("xfer_")
        else:
            assert receipt.transfer_id == key
            self.keys[key] = body
            self.receipts[key] = receipt
        event("transfer: moved")

    @rule(member=st.sampled_from(MEMBERS), agents=st.integers(0, 80), compute=st.integers(0, 4))
    def allocate(self, member: str, agents: int, compute: int) -> None:
        why = self._allocation_refusal(member, agents, _micro(compute))
        before = self.ledger.snapshot()
        try:
            view = self.ledger.set_member_allocation("t", member, agents, float(compute))
        except InvalidInput as err:
            self._expect_refused(err, why, before)
            event(f"allocate: refused ({err.details.get('field')})")
            return
        assert why is None, f"allocated, but the model refuses it: {why}"
        assert (view.agents_allocated, view.compute_hours_allocated) == (agents, compute)
        self.allocations[member] = (agents, _micro(compute))
        event("allocate: set")

    @rule(
        org=st.sampled_from(ORGS),
        agents=st.one_of(st.none(), st.integers(0, 100)),
        compute=st.one_of(st.none(), st.integers(0, 15)),
    )
    def patch(self, org: str, agents: int | None, compute: int | None) -> None:
        current = self.caps[org]
        caps = (
            current[0] if agents is None else agents,
            current[1] if compute is None else _micro(compute),
            current[2],
        )
        why = self._patch_refusal(org, caps)
        before = self.ledger.snapshot()
        try:
            view = self.ledger.patch_org(org, agents, None if compute is None else float(compute))
        except InvalidInput as err:
            self._expect_refused(err, why, before)
            event(f"patch: refused ({err.details.get('field')})")
            return
        assert why is None, f"patched, but the model refuses it: {why}"
        assert (view.agents, _micro(view.compute_hours), _micro(view.storage_gb)) == caps
        self.caps[org] = caps
        event("patch: set")

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_the_model(self) -> None:
        # One invariant reading the ledger once per step: the checks below share the reads.
        held, charged = self._model_usage()
        statuses = {user: self.ledger.user_status(user) for user in USERS}
        snap = self.ledger.snapshot()
        self.store.apply(self.ledger.pop_changes())
        assert self.store.load() == snap
        self._check_users(statuses, held)
        self._check_team(snap, held)
        self._check_orgs(snap, held)
        self._check_alerts(statuses, charged)

    def _model_usage(
        self,
    ) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
        """(entity, period, unit) -> amount held (charged + open) and charged, this window."""
        now = self.clock.now()
        current = {p: window_start(p, now) for p in PERIODS}
        held: Counter[tuple[Any, ...]] = Counter()
        charged: Counter[tuple[Any, ...]] = Counter()
        for c in self.charges:
            for period in PERIODS:
                if window_start(period, c.at) == current[period]:
                    for entity in c.entities:
                        for out in (held, charged):
                            out[entity, period, "agents"] += c.agents
                            out[entity, period, "compute"] += c.compute
        for res in self.open.values():
            for entity in _entities(res):
                for period in PERIODS:
                    held[entity, period, "agents"] += res.agents
                    held[entity, period, "compute"] += res.compute_micro
        return held, charged

    def _check_users(self, statuses: dict[str, Any], held: Counter[tuple[Any, ...]]) -> None:
        for user, status in statuses.items():
            for period in PERIODS:
                view = getattr(status, period)
                assert view.agents_used == held[("user", user), period, "agents"]
                assert _micro(view.compute_hours_used) == held[("user", user), period, "compute"]
                assert view.agents_limit == _limits(user)[period]
                assert view.agents_used <= view.agents_limit
                assert view.compute_hours_used <= view.compute_hours_limit
                assert view.agents_remaining == max(0, view.agents_limit - view.agents_used)
                assert view.exceeded == (
                    view.agents_used >= view.agents_limit
                    or view.compute_hours_used >= view.compute_hours_limit
                )
            leased = sum(r.concurrent_agents for r in self.open.values() if r.user_id == user)
            assert status.current_concurrent_agents == leased <= status.max_concurrent_agents

    def _check_team(self, snap: dict[str, Any], held: Counter[tuple[Any, ...]]) -> None:
        status = self.ledger.team_status("t")
        capped = {u for u in MEMBERS if snap["member"][f'["t", "{u}"]']["allocated"]}
        # An uncapped member shows null allocations, never a 0 that reads as "capped at 0".
        shown = {m.user_id: (m.agents_allocated, m.compute_hours_allocated) for m in status.members}
        assert {u for u, (a, c) in shown.items() if a is not None and c is not None} == capped
        assert all(a is None and c is None for u, (a, c) in shown.items() if u not in capped)
        # Every member's allocation is the model's (transfers move allocation; only
        # set_member_allocation changes the total).
        assert capped == {u for u, a in self.allocations.items() if a is not None}
        assert {u: (a, None if c is None else _micro(c)) for u, (a, c) in shown.items()} == {
            u: (None, None) if a is None else a for u, a in self.allocations.items()
        }
        total_agents = sum(shown[u][0] or 0 for u in capped)
        total_compute = sum(_micro(shown[u][1] or 0.0) for u in capped)
        assert (status.config.total_agent_pool, _micro(status.config.total_compute_hours)) == (
            TEAM_POOL
        )
        assert total_agents <= status.config.total_agent_pool
        assert total_compute <= _micro(status.config.total_compute_hours)
        usage = status.usage
        assert usage.agents_used == held[("team", "t"), "monthly", "agents"] <= usage.agents_total
        assert _micro(usage.compute_used) == held[("team", "t"), "monthly", "compute"]
        assert usage.compute_used <= usage.compute_total
        for member in status.members:
            entity = ("member", member.user_id)
            assert member.agents_used == held[entity, "monthly", "agents"]
            if member.user_id in capped:
                assert member.agents_used <= member.agents_allocated
                assert member.compute_hours_used <= member.compute_hours_allocated

    def _check_orgs(self, snap: dict[str, Any], held: Counter[tuple[Any, ...]]) -> None:
        orgs = snap["org"]
        month = window_start("monthly", self.clock.now())
        for org in ORGS:
            view = self.ledger.organization(org)
            assert (orgs[org]["agents"], orgs[org]["compute"], orgs[org]["storage"]) == (
                self.caps[org]
            )
            assert (view.agents, _micro(view.compute_hours), _micro(view.storage_gb)) == (
                self.caps[org]
            )
            assert view.agents_used == held[("org", org), "monthly", "agents"] <= view.agents
            assert _micro(view.compute_hours_used) == held[("org", org), "monthly", "compute"]
            assert view.compute_hours_used <= view.compute_hours
            children = [c for c in ORGS if PARENT[c] == org]
            for field in ("agents", "compute", "storage"):
                assert all(orgs[c][field] <= orgs[org][field] for c in children)
                assert sum(orgs[c][field] for c in children) <= orgs[org][field]
            direct = _held(orgs[org]["direct"], month)
            subtree = _held(orgs[org]["subtree"], month)
            below = [_held(orgs[c]["subtree"], month) for c in children]
            assert subtree[0] == direct[0] + sum(b[0] for b in below)
            assert subtree[1] == direct[1] + sum(b[1] for b in below)

    def _check_alerts(self, statuses: dict[str, Any], charged: Counter[tuple[Any, ...]]) -> None:
        seen: set[tuple[str, str, int, str]] = set()
        pools: set[tuple[tuple[str, str], int, str]] = set()
        for alert in self.events:
            data = alert["data"]
            period = data["period"]
            if "userId" not in data:  # a team's pool or an org's caps, per month
                entity = ("team", data["teamId"]) if "teamId" in data else ("org", data["orgId"])
                month = alert["timestamp"][:7]
                pool_mark = (entity, data["threshold"], month)
                assert period == "monthly" and pool_mark not in pools, f"duplicate {pool_mark}"
                pools.add(pool_mark)
                continue
            mark = (data["userId"], period, data["threshold"], data["usage"][period]["resetTime"])
            assert mark not in seen, f"duplicate alert {mark}"
            seen.add(mark)
        # The team's pool never changes here, so every threshold its charged usage reached
        # this month was announced. (An org's caps can be lowered under its usage, which
        # announces nothing until the next charge: for orgs only the once-a-month rule holds.)
        month = self.clock.now().strftime("%Y-%m")
        for entity, (agents_cap, compute_cap) in {("team", "t"): TEAM_POOL}.items():
            agents = charged[entity, "monthly", "agents"]
            compute = charged[entity, "monthly", "compute"]
            for threshold in (80, 100):
                reached = (agents_cap > 0 and agents * 100 >= threshold * agents_cap) or (
                    compute_cap > 0 and compute * 100 >= threshold * compute_cap
                )
                if reached:
                    assert (entity, threshold, month) in pools, (entity, threshold, month)
        for user, status in statuses.items():
            for period in PERIODS:
                agents = charged[("user", user), period, "agents"]
                compute = charged[("user", user), period, "compute"]
                view = getattr(status, period)
                reset = view.reset_time.isoformat().replace("+00:00", "Z")
                for threshold in (80, 100):
                    reached = agents * 100 >= threshold * view.agents_limit or (
                        compute * 100 >= threshold * _micro(view.compute_hours_limit)
                    )
                    if reached and (agents or compute):
                        assert (user, period, threshold, reset) in seen

    # -- language-model tokens: rules and an invariant apart from the agent ones -------------

    def _ensure_token_limits(self) -> None:
        # Set once, at the first token step, so the setup above stays as it is.
        if self.token_limits_set:
            return
        for user in USERS:
            current = self.ledger.user_config(user)
            update = {"daily_token_limit": TOKEN_LIMITS[user]}
            self.ledger.set_user_config(current.model_copy(update=update))
        self.token_limits_set = True

    def _tokens_today(self, user: str) -> int:
        today = window_start("daily", self.clock.now())
        return sum(
            c.tokens
            for c in self.token_charges
            if ("user", user) in c.entities and window_start("daily", c.at) == today
        )

    def _tokens_held(self, user: str) -> int:
        return sum(h.tokens for h in self.token_open.values() if h.user_id == user)

    @rule(
        target=token_holds,
        user=st.sampled_from(USERS),
        tokens=st.one_of(st.integers(1, 40), st.integers(1, 300)),
        use_team=st.booleans(),
        explicit_org=st.booleans(),
    )
    def reserve_tokens(self, user: str, tokens: int, use_team: bool, explicit_org: bool) -> str:
        self._ensure_token_limits()
        team = "t" if use_team and user in MEMBERS else None
        org = USER_ORG[user] if explicit_org else None
        limit = TOKEN_LIMITS[user]
        held = self._tokens_today(user) + self._tokens_held(user)
        before = self.ledger.snapshot()
        try:
            hold = self.ledger.reserve_tokens(user, tokens, tier="user", team_id=team, org_id=org)
        except QuotaExceeded as err:
            assert limit is not None and held + tokens > limit
            details = err.details
            assert (details["resource"], details["period"]) == ("tokens", "daily")
            assert (details["limit"], details["used"], details["requested"]) == (
                limit,
                held,
                tokens,
            )
            datetime.fromisoformat(details["resetTime"].replace("Z", "+00:00"))
            self._expect_unchanged(before)
            event("tokens refused")
            return "refused"
        assert limit is None or held + tokens <= limit
        assert hold.org_ids == self._chain(USER_ORG[user])
        assert hold.team_id == ("t" if user in MEMBERS else None)
        # Only a hold against a limit is stored; an unlimited one costs no write.
        assert hold.durable == (limit is not None)
        assert (hold.hold_id in self.ledger.snapshot()["token_hold"]) == hold.durable
        self.token_open[hold.hold_id] = hold
        event("tokens held")
        return hold.hold_id

    @rule(target=token_holds, user=st.sampled_from(USERS), over=st.integers(0, 1))
    def reserve_the_rest_of_the_day(self, user: str, over: int) -> str:
        # Exactly the room left (which fits), or one token more (which does not).
        self._ensure_token_limits()
        limit = TOKEN_LIMITS[user]
        room = 50 if limit is None else limit - self._tokens_today(user) - self._tokens_held(user)
        if room + over < 1:
            return "refused"
        return self.reserve_tokens(user, room + over, False, False)

    @rule(
        hold_id=consumes(token_holds),
        fraction=st.one_of(st.sampled_from((0.0, 1.0)), st.floats(0, 1)),
        output_share=st.floats(0, 1),
        cost=st.sampled_from(TOKEN_COSTS),
    )
    def settle_tokens(
        self, hold_id: str, fraction: float, output_share: float, cost: float
    ) -> None:
        hold = self.token_open.get(hold_id)
        if hold is None:
            return
        # The hold is the request's worst case: the reported usage never exceeds it.
        used = int(hold.tokens * fraction)
        output = int(used * output_share)
        first = self.ledger.settle_tokens(hold_id, used - output, output, cost)
        assert (first.tokens, first.cost_nano, first.released) == (used, _nano(cost), False)
        before = self.ledger.snapshot()
        assert self.ledger.settle_tokens(hold_id, used + 1, 0, cost + 1) == first
        assert self.ledger.release_tokens(hold_id) == first
        self._expect_unchanged(before)
        del self.token_open[hold_id]
        self.token_charges.append(
            TokenCharge(self.clock.now(), _token_entities(hold), used, _nano(cost))
        )

    @rule(hold_id=consumes(token_holds))
    def release_tokens(self, hold_id: str) -> None:
        hold = self.token_open.get(hold_id)
        if hold is None:
            return
        used_before = self.ledger.user_status(hold.user_id).daily.tokens_used
        done = self.ledger.release_tokens(hold_id)
        assert done.released and done.tokens == 0 and done.cost_nano == 0
        assert self.ledger.release_tokens(hold_id) == done
        assert self.ledger.user_status(hold.user_id).daily.tokens_used == used_before
        del self.token_open[hold_id]

    @rule(hours=st.integers(1, 72))
    def reap_tokens(self, hours: int) -> None:
        cutoff = self.clock.now() - timedelta(hours=hours)
        expected = {h for h, hold in self.token_open.items() if hold.created_at <= cutoff}
        done = self.ledger.reap_expired_tokens(timedelta(hours=hours))
        assert {s.hold_id for s in done} == expected
        assert all(s.released and s.tokens == 0 for s in done)
        for settlement in done:
            del self.token_open[settlement.hold_id]

    @invariant()
    def tokens_agree_with_the_model(self) -> None:
        now = self.clock.now()
        current = {p: window_start(p, now) for p in PERIODS}
        used: Counter[tuple[Any, ...]] = Counter()
        for c in self.token_charges:
            for period in PERIODS:
                if window_start(period, c.at) == current[period]:
                    for entity in c.entities:
                        used[entity, period, "tokens"] += c.tokens
                        used[entity, period, "cost"] += c.cost
        assert {h.hold_id for h in self.ledger.open_token_holds()} == set(self.token_open)
        for user in USERS:
            status = self.ledger.user_status(user)
            for period in PERIODS:
                view = getattr(status, period)
                assert view.tokens_used == used[("user", user), period, "tokens"]
                assert _nano(view.cost_usd) == used[("user", user), period, "cost"]
            limit = TOKEN_LIMITS[user] if self.token_limits_set else None
            daily = status.daily
            assert daily.token_limit == limit
            if limit is None:
                assert daily.tokens_remaining is None
                continue
            # Settled tokens today never pass the limit (every settlement is within its hold),
            # nor do they with the holds still open; released holds count nowhere.
            held = self._tokens_held(user)
            assert daily.tokens_used + held <= limit
            assert daily.tokens_remaining == max(0, limit - daily.tokens_used - held)
        team = self.ledger.team_status("t").usage
        assert team.tokens_used == used[("team", "t"), "monthly", "tokens"]
        assert _nano(team.cost_usd) == used[("team", "t"), "monthly", "cost"]
        for org in ORGS:
            view = self.ledger.organization(org)
            assert view.tokens_used == used[("org", org), "monthly", "tokens"]
            assert _nano(view.cost_usd) == used[("org", org), "monthly", "cost"]


def _nano(dollars: float) -> int:
    return round(dollars * 1_000_000_000)


TestQuotaMachine = QuotaMachine.TestCase
TestQuotaMachine.settings = settings(
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class PostgresQuotaMachine(QuotaMachine):
    """The same machine with every step's changes on PostgreSQL (a fresh database each run)."""

    server: ClassVar[ThrowawayPostgres | None] = None

    def open_store(self) -> QuotaStore | PostgresQuotaStore:
        assert self.server is not None, "the module fixture sets the server"
        self.url = self.server.database_url(f"m_{uuid.uuid4().hex[:12]}")
        ensure_schema(self.url)
        return PostgresQuotaStore(self.url)

    def reopen_store(self) -> QuotaStore | PostgresQuotaStore:
        return PostgresQuotaStore(self.url)


@pytest.fixture(autouse=True, scope="module")
def _postgres_for_the_machine(postgres_server: ThrowawayPostgres) -> Iterator[None]:
    PostgresQuotaMachine.server = postgres_server
    yield
    PostgresQuotaMachine.server = None


TestPostgresQuotaMachine = PostgresQuotaMachine.TestCase
TestPostgresQuotaMachine.settings = settings(
    max_examples=15,  # each run is a new database: fewer runs than on SQLite, same rules
    stateful_step_count=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

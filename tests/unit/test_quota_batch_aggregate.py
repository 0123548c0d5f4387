"""A batch applied with runs aggregated ends exactly where the same calls one by one end.

The aggregated path (:mod:`rlm.quotas.ledger_batch`) holds a run of alike reserves, or settles
a run of reconciles of one payer chain, once per counter. Random batches of runs — reserves of
several users over a team, a member allocation and an org tree, with limits small enough that
runs overflow midway (so the one-by-one fallback runs), retried and duplicated task ids,
malformed calls, reconciles that cross alert thresholds, releases and reads — are applied to
two copies of one ledger, aggregated and one by one, with the same reservation ids: the
answers, the full state (counters, reservations, settlements, alert marks, the event outbox,
usage buckets) and the rows each would persist must be equal.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rlm.errors import RLMError
from rlm.models.quotas import QuotaConfig
from rlm.quotas import FrozenClock, QuotaLedger
from rlm.quotas import ledger_batch as ledger_batch_module
from rlm.quotas.service import QuotaLedgerService

NOW = datetime(2028, 2, 29, 13, 30, tzinfo=UTC)
USERS = ("u0", "u1", "u2", "u3")
# u0 has a member allocation of team t, u1 is an uncapped member; both are in org a.
CHAINS: dict[str, tuple[str | None, str | None]] = {
    "u0": ("t", "a"),
    "u1": ("t", "a"),
    "u2": (None, "b"),
    "u3": (None, None),
}


def _base_ledger() -> QuotaLedger:
    ledger = QuotaLedger(FrozenClock(NOW))
    ledger.create_org("root", "", None, 400, 20.0)
    ledger.create_org("a", "", "root", 150, 8.0)
    ledger.create_org("b", "", "root", 150, 8.0)
    ledger.create_team("t", "T", 90, 3.0, 0.0, "a")
    ledger.add_member("t", "u0", agents=40, compute_hours=1.0)
    ledger.add_member("t", "u1")
    for user in USERS:
        ledger.set_user_config(
            QuotaConfig(
                user_id=user,
                daily_agent_limit=50,
                weekly_agent_limit=90,
                monthly_agent_limit=120,
                daily_compute_hours=1.0,
                max_concurrent_agents=12,
                max_storage_gb=1.0,
            )
        )
        org = CHAINS[user][1]
        if org is not None:
            ledger.set_user_org(user, org)
    return ledger


@contextmanager
def _ids(first: int) -> Iterator[None]:
    # Reservation ids come from OS randomness; both runs must draw the same ones in order
    # (from ``first``, so a batch's ids never repeat those of the batch before it).
    counter = itertools.count(first)

    def next_hex() -> str:
        return f"{next(counter):032x}"

    # Both paths draw their reservation ids in ``LedgerReservations._open``.
    with mock.patch("rlm.quotas.ledger_reservations.random_hex", next_hex):
        yield


def _reserve(data: st.DataObject, user: str, task: str) -> tuple[str, tuple[Any, ...], dict]:
    agents = data.draw(st.integers(1, 5), label="agents")
    kwargs: dict[str, Any] = {"tier": "user", "task_id": task}
    team, org = CHAINS[user]
    if team is not None and data.draw(st.booleans(), label="name team"):
        kwargs["team_id"] = team
    if data.draw(st.integers(0, 19), label="org") == 0:
        kwargs["org_id"] = "b" if org != "b" else "a"  # not the user's org: INVALID_INPUT
    elif org is not None and data.draw(st.booleans(), label="name org"):
        kwargs["org_id"] = org
    if data.draw(st.booleans(), label="compute"):
        kwargs["compute_hours"] = data.draw(st.sampled_from([0.05, 0.3]))
    if data.draw(st.integers(0, 3), label="lease") == 0:
        kwargs["concurrent_agents"] = 2
    return "reserve", (user, agents), kwargs


def _batch(data: st.DataObject, open_ids: list[str], taken: list[str]) -> list[Any]:
    """Runs of alike calls: reserves differing only in their task ids, reconciles of
    consecutive open reservations, and single releases and reads between them."""
    calls: list[Any] = []
    fresh = itertools.count()
    for _ in range(data.draw(st.integers(1, 6), label="runs")):
        kind = data.draw(st.sampled_from(["reserve", "reserve", "reconcile", "one"]))
        size = data.draw(st.integers(1, 10), label="run size")
        if kind == "reserve":
            user = data.draw(st.sampled_from(USERS), label="user")
            template = _reserve(data, user, "")
            for _ in range(size):
                pick = data.draw(st.integers(0, 59), label="task id")
                if pick == 0 and taken:  # a retry of a task holding a reservation already
                    task = data.draw(st.sampled_from(taken))
                elif pick == 1 and calls:  # the same task twice in one batch
                    task = f"new-{next(fresh) - 1}"
                else:
                    task = f"new-{next(fresh)}"
                calls.append(("reserve", template[1], {**template[2], "task_id": task}))
        elif kind == "reconcile" and open_ids:
            first = data.draw(st.integers(0, len(open_ids) - 1), label="first")
            for rid in [*open_ids, "res_missing"][first : first + size]:
                used = data.draw(
                    st.one_of(st.integers(0, 5), st.integers(5, 25)), label="agent calls"
                )
                hours = data.draw(st.sampled_from([0.0, 0.0, 0.1]), label="hours")
                if data.draw(st.integers(0, 59), label="bad") == 0:
                    used = -1  # refused on its own: INVALID_INPUT
                calls.append(("reconcile", (rid, used, hours), {}))
        else:
            user = data.draw(st.sampled_from(USERS))
            calls.append(
                data.draw(
                    st.sampled_from(
                        [
                            ("user_status", (user,), {}),
                            ("check", (user, 3), {"tier": "user"}),
                            ("release", (open_ids[0] if open_ids else "res_x",), {}),
                            ("reserve", (user,), {"tier": "user"}),  # missing arguments
                        ]
                    )
                )
            )
    return calls


def _answer(outcome: Any) -> Any:
    if isinstance(outcome, RLMError):
        return type(outcome).__name__, outcome.to_payload()
    return outcome


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_an_aggregated_batch_equals_the_same_calls_one_by_one(data: st.DataObject) -> None:
    base = _base_ledger()
    with _ids(10**6):
        # A first batch, one by one, leaves open reservations and usage near thresholds.
        base.apply_batch(_batch(data, [], []), aggregate=False)
        # Some settled, so windows start part full (some past a threshold), some still open.
        first = base.open_reservations()
        for res in first[: data.draw(st.integers(0, len(first) // 2), label="settled first")]:
            base.reconcile(res.reservation_id, data.draw(st.integers(0, 15)), 0.0)
    base.pop_changes()
    # By user, so reconciles of one payer chain stand next to each other and form runs.
    held = sorted(base.open_reservations(), key=lambda r: r.user_id)
    open_ids = [r.reservation_id for r in held]
    taken = [r.task_id for r in held]
    calls = _batch(data, open_ids, taken)
    snapshot = base.snapshot()
    sides = []
    runs: list[str] = []
    for aggregate in (True, False):
        ledger = QuotaLedger.restore(snapshot, FrozenClock(NOW))
        if aggregate:
            _count_runs(ledger, runs)
        with _ids(0):
            outcomes = ledger.apply_batch(calls, aggregate=aggregate)
        changes = ledger.pop_changes()
        sides.append(
            (
                [_answer(o) for o in outcomes],
                ledger.snapshot(),
                sorted(changes.upserts, key=lambda row: (row[0], row[1])),
                sorted(changes.deletes),
            )
        )
    aggregated, one_by_one = sides
    assert aggregated[0] == one_by_one[0]  # the answers, refusals included
    assert aggregated[1] == one_by_one[1]  # the state: counters, marks, events, usage
    assert aggregated[2:] == one_by_one[2:]  # the rows persisted
    refused = sum(isinstance(o, tuple) for o in aggregated[0])
    event(f"refused calls: {min(refused, 3)}")
    event(f"threshold events fired: {len(aggregated[1]['event']) > len(snapshot['event'])}")
    for run in sorted(set(runs)):
        event(run)


def _count_runs(ledger: QuotaLedger, runs: list[str]) -> None:
    # Which paths the aggregated side took (for the statistics: both must occur).
    for name in ("_reserve_run", "_reconcile_run"):
        real = getattr(ledger, name)

        def spy(run: Any, starts: Any, real: Any = real, name: str = name) -> Any:
            done = real(run, starts)
            runs.append(f"{name}: {'aggregated' if done is not None else 'one by one'}")
            return done

        setattr(ledger, name, spy)


def test_a_run_of_alike_reserves_is_planned_once_and_persisted(tmp_path: Path) -> None:
    service = QuotaLedgerService(tmp_path / "q.db", clock=FrozenClock(NOW))
    service.create_org("root", "", None, 10_000, 10.0)
    service.create_team("t", "T", 10_000, 10.0, 0.0, "root")
    service.add_member("t", "ada")
    big = 10**6
    service.set_user_config(
        QuotaConfig(
            user_id="ada",
            daily_agent_limit=big,
            weekly_agent_limit=big,
            monthly_agent_limit=big,
            daily_compute_hours=1.0,
            max_concurrent_agents=big,
            max_storage_gb=1.0,
        )
    )
    plans = []
    real = ledger_batch_module.plan_admission

    def counting(*args: Any, **kwargs: Any) -> Any:
        plans.append(args[0].agents)
        return real(*args, **kwargs)

    with mock.patch.object(ledger_batch_module, "plan_admission", counting):
        held = service.batch(
            [("reserve", ("ada", 5), {"tier": "user", "task_id": f"t{i}"}) for i in range(40)]
        )
    assert plans == [200]  # one plan for the run's 40 x 5 calls, not 40
    assert [r.task_id for r in held] == [f"t{i}" for i in range(40)]
    assert len({r.reservation_id for r in held}) == 40
    settled = service.batch([("reconcile", (r.reservation_id, 4, 0.0), {}) for r in held])
    assert [s.agent_calls for s in settled] == [4] * 40
    status = service.user_status("ada")
    assert (status.daily.agents_used, status.current_concurrent_agents) == (160, 0)
    state = service.snapshot()
    service.close()
    reopened = QuotaLedgerService(tmp_path / "q.db", clock=FrozenClock(NOW))
    assert reopened.snapshot() == state  # as durable as one by one: every row was written
    reopened.close()


def test_a_run_crossing_a_threshold_fires_each_event_at_its_own_moment() -> None:
    # u3's daily window holds 50: settling 10 x 6 calls crosses 80 % at the 7th and 100 % at
    # the 9th; each event carries the usage of its moment (charged plus the holds still
    # open: 42 + 3, then 54 + 1), not the run's total (60).
    base = _base_ledger()
    with _ids(10**6):
        held = base.apply_batch(
            [("reserve", ("u3", 1), {"tier": "user", "task_id": f"t{i}"}) for i in range(10)]
        )
    calls = [("reconcile", (r.reservation_id, 6, 0.0), {}) for r in held]
    snapshot = base.snapshot()
    sides = []
    for aggregate in (True, False):
        ledger = QuotaLedger.restore(snapshot, FrozenClock(NOW))
        runs: list[str] = []
        _count_runs(ledger, runs)
        outcomes = ledger.apply_batch(calls, aggregate=aggregate)
        sides.append((outcomes, ledger.snapshot(), runs))
    (agg, agg_state, agg_runs), (one, one_state, _) = sides
    assert agg_runs == ["_reconcile_run: one by one"]  # the total crosses: no aggregate
    assert agg == one
    assert agg_state == one_state
    fired = [e["data"] for e in agg_state["event"].values()]
    daily = [(d["threshold"], d["usage"]["daily"]["agentsUsed"]) for d in fired]
    assert daily == [(80, 45), (100, 55)]

"""Provider limits: fair concurrency slots and the requests/tokens-per-minute pacer."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.lm.limits import FairSlots, RatePacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slots_serve_waiting_tenants_round_robin() -> None:
    async def scenario() -> list[str]:
        slots = FairSlots(1)
        order: list[str] = []
        await slots.acquire("busy")

        async def one(tenant: str) -> None:
            await slots.acquire(tenant)
            order.append(tenant)
            slots.release(tenant)

        # Tenant a queues ten calls before b queues one: b must not wait behind all of a's.
        waiters = [asyncio.create_task(one("a")) for _ in range(10)]
        await asyncio.sleep(0)
        waiters.append(asyncio.create_task(one("b")))
        await asyncio.sleep(0)
        slots.release("busy")
        await asyncio.gather(*waiters)
        assert slots.inflight == 0
        return order

    order = asyncio.run(scenario())
    assert order.index("b") <= 1
    assert sorted(order) == ["a"] * 10 + ["b"]


@settings(max_examples=30, deadline=None)
@given(
    capacity=st.integers(1, 6),
    per_tenant=st.one_of(st.none(), st.integers(1, 4)),
    calls=st.lists(st.sampled_from("abc"), min_size=1, max_size=40),
)
def test_slots_never_exceed_capacity_or_tenant_cap(
    capacity: int, per_tenant: int | None, calls: list[str]
) -> None:
    async def scenario() -> FairSlots:
        slots = FairSlots(capacity, per_tenant)
        live = {"all": 0}
        by: dict[str, int] = {}

        async def one(tenant: str) -> None:
            await slots.acquire(tenant)
            live["all"] += 1
            by[tenant] = by.get(tenant, 0) + 1
            assert live["all"] <= capacity
            assert per_tenant is None or by[tenant] <= per_tenant
            await asyncio.sleep(0)
            live["all"] -= 1
            by[tenant] -= 1
            slots.release(tenant)

        await asyncio.gather(*(one(t) for t in calls))
        return slots

    slots = asyncio.run(scenario())
    assert slots.inflight == 0
    assert slots.max_inflight <= capacity
    assert slots.max_inflight == min(capacity, len(calls)) or per_tenant is not None


def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    async def scenario() -> None:
        slots = FairSlots(1)
        await slots.acquire("a")
        gone = asyncio.create_task(slots.acquire("b"))
        later = asyncio.create_task(slots.acquire("c"))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        slots.release("a")
        await asyncio.wait_for(later, 1.0)
        assert slots.tenant_inflight("c") == 1 and slots.tenant_inflight("b") == 0

    asyncio.run(scenario())


def test_pacer_keeps_every_minute_within_the_request_limit() -> None:
    clock = FakeClock()
    pacer = RatePacer(requests_per_minute=3, tokens_per_minute=None, clock=clock)
    sent = []
    for _ in range(7):
        wait = pacer.delay(1)
        clock.now += wait
        assert pacer.delay(1) == 0
        pacer.record(1)
        sent.append(clock.now)
    for i in range(len(sent) - 3):
        assert sent[i + 3] - sent[i] >= 60.0


def test_pacer_counts_tokens_and_refuses_what_never_fits() -> None:
    clock = FakeClock()
    pacer = RatePacer(requests_per_minute=None, tokens_per_minute=100, clock=clock)
    pacer.record(80)
    assert pacer.delay(20) == 0
    assert pacer.delay(21) > 0
    clock.now += 61.0
    assert pacer.delay(100) == 0
    with pytest.raises(InvalidInput, match="tokens per minute"):
        pacer.check(101)


def test_pacer_wait_turn_sleeps_until_the_window_frees() -> None:
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        pacer = RatePacer(requests_per_minute=600, tokens_per_minute=None, clock=loop.time)
        for _ in range(600):
            pacer.record(0)
        assert pacer.delay(0) > 59.0  # the 601st request waits for the first to leave
        return pacer.delay(0)

    assert asyncio.run(scenario()) <= 60.0

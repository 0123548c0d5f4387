"""The per-task event log: numbering, resuming after a sequence number, waiting, closing."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.tasks.events import TERMINAL_EVENT, EventLog


def test_events_are_numbered_from_one_and_wire_shaped() -> None:
    log = EventLog("t1")
    first = log.append("task.started", {"operation": "sum"}, ts=0.0)
    assert first.seq == 1 and log.last_seq == 1
    assert first.to_wire() == {
        "id": 1,
        "event": "task.started",
        "timestamp": "1970-01-01T00:00:00Z",
        "data": {"operation": "sum"},
    }


@given(n=st.integers(0, 40), after=st.integers(-3, 50), first=st.integers(1, 1000))
def test_after_answers_exactly_the_newer_events(n: int, after: int, first: int) -> None:
    log = EventLog("t", first_seq=first)
    for i in range(n):
        log.append("task.progress", {"i": i})
    assert [e.seq for e in log.after(after)] == [s for s in range(first, first + n) if s > after]


def test_the_terminal_event_closes_the_log() -> None:
    log = EventLog("t")
    log.append(TERMINAL_EVENT, {"status": "completed"})
    assert log.closed
    with pytest.raises(ValueError, match="closed"):
        log.append("task.progress", {})


def test_a_waiter_wakes_on_the_next_event_and_times_out_without_one() -> None:
    async def main() -> tuple[list[int], list[int], list[int]]:
        log = EventLog("t")
        waiter = asyncio.create_task(log.wait(0, 5.0))
        await asyncio.sleep(0)
        log.append("task.started", {})
        woke = [e.seq for e in await waiter]
        idle = [e.seq for e in await log.wait(1, 0.01)]
        log.append(TERMINAL_EVENT, {})
        # A closed log answers at once, even with nothing new.
        ended = [e.seq for e in await log.wait(2, None)]
        return woke, idle, ended

    assert asyncio.run(main()) == ([1], [], [])

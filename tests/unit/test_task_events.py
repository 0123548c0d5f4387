"""The per-task event log: numbering, resuming, waiting, closing, the cap and what is saved."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.tasks.events import (
    PROGRESS_EVENTS,
    PROGRESS_TRUNCATED_EVENT,
    TERMINAL_EVENT,
    TRUNCATED_EVENT,
    EventLog,
    in_trajectory,
)


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


def test_the_cap_keeps_a_marker_then_only_the_terminal_event() -> None:
    appended: list[int] = []
    log = EventLog("t", max_events=5, on_append=lambda lg: appended.append(lg.last_seq))
    kept = [log.append("rlm.cell", {"i": i}) for i in range(10)]
    # Four events, then the marker in the fifth slot; the rest are dropped (None).
    assert [e is not None for e in kept] == [True] * 4 + [False] * 6
    assert [e.type for e in log.after(0)] == ["rlm.cell"] * 4 + [TRUNCATED_EVENT]
    assert log.after(0)[-1].data == {"limit": 5, "firstDropped": "rlm.cell"}
    assert log.truncated and log.dropped == 6
    terminal = log.append(TERMINAL_EVENT, {"status": "completed"})
    assert terminal is not None and terminal.seq == 6 and log.closed
    # Watchers and the store are told of kept events only.
    assert appended == [1, 2, 3, 4, 5, 6]


@given(cap=st.integers(2, 30), n=st.integers(0, 60))
def test_a_capped_log_never_holds_more_than_its_cap_plus_the_end(cap: int, n: int) -> None:
    log = EventLog("t", max_events=cap)
    for i in range(n):
        log.append("rlm.cell", {"i": i})
    log.append(TERMINAL_EVENT, {})
    events = log.after(0)
    assert len(events) <= cap + 1
    assert events[-1].type == TERMINAL_EVENT
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert (TRUNCATED_EVENT in [e.type for e in events]) == (n >= cap)
    assert log.dropped == max(0, n - (cap - 1))


def test_progress_has_its_own_budget_and_never_crowds_out_the_trajectory() -> None:
    log = EventLog("t", max_events=7, max_progress_events=4)
    log.append("task.started", {})
    # A long task: far more progress than either cap, with RLM steps between.
    for i in range(50):
        log.append("nodes.started" if i % 2 else "task.progress", {"i": i})
        if i % 10 == 0:
            log.append("rlm.turn", {"turn": i // 10})
    log.append(TERMINAL_EVENT, {"status": "completed"})
    types = [e.type for e in log.after(0)]
    # Every RLM step is kept: the progress cap took only progress.
    assert types.count("rlm.turn") == 5 and TRUNCATED_EVENT not in types
    # Three progress events, then the progress marker in the fourth slot, then none.
    progress = [t for t in types if t in PROGRESS_EVENTS or t == PROGRESS_TRUNCATED_EVENT]
    first = ["task.progress", "nodes.started", "task.progress"]
    assert progress == [*first, PROGRESS_TRUNCATED_EVENT]
    marker = next(e for e in log.after(0) if e.type == PROGRESS_TRUNCATED_EVENT)
    assert marker.data == {"limit": 4, "firstDropped": "nodes.started"}
    assert log.progress_dropped == 47 and log.dropped == 0
    assert types[-1] == TERMINAL_EVENT
    assert [e.seq for e in log.after(0)] == list(range(1, len(types) + 1))


def test_the_main_cap_still_bounds_everything_past_the_progress_budget() -> None:
    log = EventLog("t", max_events=4, max_progress_events=100)
    for i in range(20):
        log.append("task.progress", {"i": i})  # within the progress budget: all kept
    for i in range(5):
        log.append("rlm.cell", {"i": i})
    log.append("task.progress", {"late": True})  # the main cap was reached: dropped too
    log.append(TERMINAL_EVENT, {})
    types = [e.type for e in log.after(0)]
    assert types.count("task.progress") == 20
    assert [t for t in types if t != "task.progress"] == ["rlm.cell"] * 3 + [
        TRUNCATED_EVENT,
        TERMINAL_EVENT,
    ]
    assert log.dropped == 3


def test_a_cap_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        EventLog("t", max_events=1)


def test_unsaved_events_are_those_after_the_last_saved() -> None:
    log = EventLog("t")
    for i in range(5):
        log.append("task.progress", {"i": i})
    assert [e.seq for e in log.unsaved()] == [1, 2, 3, 4, 5]
    log.mark_saved(3)
    assert [e.seq for e in log.unsaved()] == [4, 5]
    log.mark_saved(2)  # never goes back
    assert [e.seq for e in log.unsaved()] == [4, 5]
    log.mark_saved()
    assert log.unsaved() == []


def test_the_trajectory_holds_rlm_steps_the_marker_and_the_end() -> None:
    assert all(in_trajectory(t) for t in ("rlm.turn", "rlm.cell", TRUNCATED_EVENT, TERMINAL_EVENT))
    assert not any(in_trajectory(t) for t in ("task.started", "task.progress", "rlmx"))

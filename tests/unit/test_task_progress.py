"""Progress events of built-in tasks: the plan's shape, coalescing, and the throttle (pure)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from rlm.planning import plan_task
from rlm.tasks.events import MAX_TREE_NODES
from rlm.tasks.progress import (
    PROGRESS_MIN_INTERVAL_S,
    ProgressTracker,
    coalesce,
    plan_shape,
    progress_interval,
)


def test_the_interval_is_100_ms_then_a_thousandth_of_the_age() -> None:
    assert progress_interval(0.0) == PROGRESS_MIN_INTERVAL_S == 0.1
    assert progress_interval(99.0) == 0.1
    assert progress_interval(1000.0) == 1.0
    assert progress_interval(86_400.0) == 86.4


@given(a=st.floats(0, 1e6), b=st.floats(0, 1e6))
def test_the_interval_never_shrinks_as_a_task_ages(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert PROGRESS_MIN_INTERVAL_S <= progress_interval(lo) <= progress_interval(hi)


def test_a_day_long_task_sends_under_8000_progress_events() -> None:
    # Calls finishing all the time: one event each time the throttle allows.
    t, sent = 0.0, 0
    while t < 86_400.0:
        t += progress_interval(t)
        sent += 1
    assert 1000 < sent < 8000


@given(st.lists(st.integers(0, 200), max_size=80))
def test_coalesced_ranges_cover_exactly_the_indices(indices: list[int]) -> None:
    ranges = coalesce(indices)
    covered = [i for start, end in ranges for i in range(start, end)]
    assert covered == sorted(set(indices))
    # Sorted, non-empty, and merged: two ranges never touch.
    for (s1, e1), (s2, e2) in itertools.pairwise(ranges):
        assert s1 < e1 < s2 < e2


def test_the_plan_shape_draws_the_tree() -> None:
    plan = plan_task("recursive", 16, leaf_size=1, fanout=2, max_depth=8)
    shape = plan_shape(plan)
    assert shape["nodes"] == 31 and shape["leaves"] == 16 and shape["depth"] == 4
    assert shape["perDepth"] == [1, 2, 4, 8, 16]
    parents = shape["parents"]
    assert parents[-1] == -1  # the root is last
    assert parents == [-1 if n.parent is None else n.parent for n in plan.nodes]
    # Children come before their parent, so a browser can build the tree in one pass.
    assert all(p == -1 or p > i for i, p in enumerate(parents))


def test_a_tree_too_big_to_draw_node_by_node_keeps_its_per_depth_counts() -> None:
    plan = plan_task("parallel", MAX_TREE_NODES + 10, leaf_size=1, max_leaves=10**6)
    shape = plan_shape(plan)
    assert "parents" not in shape
    assert shape["perDepth"] == [1, MAX_TREE_NODES + 10]
    tracker = ProgressTracker(plan, t0=0.0)
    tracker.mark(0, 1)
    data = tracker.take(now=0.0, completed=1)
    assert data is not None and "done" not in data and data["perDepth"] == [0, 1]


def test_the_first_event_goes_at_once_then_the_throttle_holds() -> None:
    plan = plan_task("parallel", 8, leaf_size=1)
    tracker = ProgressTracker(plan, t0=0.0)
    assert not tracker.pending and tracker.take(now=0.0, completed=0) is None
    tracker.mark(0, 1)
    assert tracker.wait_s(now=0.01) == 0.0
    first = tracker.take(now=0.01, completed=1)
    assert first is not None and first["done"] == [[0, 1]]
    tracker.mark(1, 1)
    tracker.mark(2, 1)
    assert abs(tracker.wait_s(now=0.05) - 0.06) < 1e-9  # 100 ms after the last one
    assert tracker.wait_s(now=0.2) == 0.0
    second = tracker.take(now=0.2, completed=3)
    assert second == {
        "completedCalls": 3,
        "plannedCalls": 9,
        "percent": 33.33,
        "perDepth": [0, 3],
        "done": [[1, 3]],
    }


def test_percent_stops_at_100_when_lm_calls_pass_the_plan() -> None:
    plan = plan_task("parallel", 1, leaf_size=1)
    tracker = ProgressTracker(plan, t0=0.0)
    tracker.mark(0, 0)
    data = tracker.take(now=0.0, completed=3)
    assert data is not None and data["percent"] == 100.0 and data["completedCalls"] == 3


@given(seed=st.integers(0, 2**32 - 1), leaves=st.integers(1, 64), fanout=st.integers(2, 5))
def test_the_events_of_a_run_add_up_to_the_whole_tree(seed: int, leaves: int, fanout: int) -> None:
    """Calls finish in any order a valid schedule allows, at random times; the events sent
    (throttled, plus the last one) mark every node exactly once, and the counts only grow."""
    plan = plan_task("recursive", leaves, leaf_size=1, fanout=fanout, max_depth=8)
    rng = random.Random(seed)
    tracker = ProgressTracker(plan, t0=0.0)
    remaining = {n.index: len(n.children) for n in plan.nodes}
    ready = [n.index for n in plan.nodes if not n.children]
    events: list[dict[str, object]] = []
    now, completed = 0.0, 0
    while ready:
        index = ready.pop(rng.randrange(len(ready)))
        node = plan.nodes[index]
        now += rng.choice((0.0, 0.001, 0.03, 0.2))
        completed += 1
        tracker.mark(index, node.depth)
        if node.parent is not None:
            remaining[node.parent] -= 1
            if remaining[node.parent] == 0:
                ready.append(node.parent)
        if tracker.wait_s(now) == 0.0:
            data = tracker.take(now, completed)
            assert data is not None
            events.append(data)
    last = tracker.take(now, completed)  # what the task table sends before task.completed
    if last is not None:
        events.append(last)
    done = [i for e in events for start, end in e["done"] for i in range(start, end)]  # type: ignore[attr-defined]
    assert sorted(done) == list(range(len(plan.nodes)))
    assert events[-1]["percent"] == 100.0
    assert events[-1]["perDepth"] == plan_shape(plan)["perDepth"]
    counts = [e["completedCalls"] for e in events]
    assert counts == sorted(counts)


def test_calls_sent_go_out_as_one_batched_started_event() -> None:
    plan = plan_task("recursive", 8, leaf_size=1, fanout=2, max_depth=8)
    tracker = ProgressTracker(plan, t0=0.0)
    assert tracker.take_started(now=0.0) is None
    leaves = [n for n in plan.nodes if not n.children]
    for node in reversed(leaves[:5]):  # in any order
        tracker.start(node.index, node.depth)
    assert tracker.pending  # started calls are worth an event even when none finished
    started = tracker.take_started(now=0.0)
    assert started is not None
    depth = leaves[0].depth
    assert started["startedCalls"] == 5 and started["perDepth"][depth] == 5
    assert started["started"] == coalesce(n.index for n in leaves[:5])
    # One throttle for both kinds: the next ones wait for the interval.
    assert not tracker.pending and tracker.wait_s(now=0.05) > 0.0
    root = plan.nodes[-1]
    tracker.start(root.index, root.depth)
    again = tracker.take_started(now=0.2)
    assert again is not None and again["started"] == [[root.index, root.index + 1]]
    assert again["perDepth"][0] == 1 and again["perDepth"][depth] == 5  # so far, per depth


def test_a_tree_too_big_to_draw_announces_started_calls_by_depth_only() -> None:
    plan = plan_task("parallel", MAX_TREE_NODES + 10, leaf_size=1, max_leaves=10**6)
    tracker = ProgressTracker(plan, t0=0.0)
    for index in range(300):
        tracker.start(index, 1)
    started = tracker.take_started(now=0.0)
    assert started == {"startedCalls": 300, "perDepth": [0, 300]}

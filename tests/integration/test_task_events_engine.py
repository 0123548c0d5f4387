"""Task events on a real engine: a built-in task's stream, resuming, RLM steps recorded through
``record_events``, the trajectory, the cap, and events read back after the engine restarts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import rlm
from rlm.admission import Viewer
from rlm.errors import TaskNotFound
from rlm.models import TaskEventMessage
from rlm.tasks import TaskStore
from tests.integration.conftest import make_settings, with_test_ops
from tests.support import wait_until

pytestmark = pytest.mark.integration


def _slow(seconds: float, n: int, **options: object) -> dict[str, object]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": list(range(n)), "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1, **options},
    }


RLM_STEPS: list[tuple[str, dict[str, Any]]] = [
    ("rlm.turn", {"path": "0", "depth": 0, "turn": 1, "reply": "```repl\nprint(1)\n```"}),
    ("rlm.cell", {"path": "0", "turn": 1, "index": 0, "code": "print(1)", "stdout": "1\n"}),
    ("rlm.subcalls", {"path": "0", "turn": 1, "kind": "llm_query_batched", "count": 3}),
]


def _check_stream(events: list[TaskEventMessage], planned: int) -> None:
    """The shape every built-in task's stream has: numbered from 1, started first, the result
    last, progress monotone and covering every node of the plan exactly once."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "task.started" and events[-1].event == "task.completed"
    assert [e.terminal for e in events].count(True) == 1
    plan = events[0].data["plan"]
    assert events[0].data["plannedCalls"] == plan["nodes"] == planned
    progress = [e.progress for e in events if e.progress is not None]
    assert progress, "a task that ran reports progress"
    counts = [p.completed_calls for p in progress]
    assert counts == sorted(counts)
    assert [p.percent for p in progress] == sorted(p.percent for p in progress)
    done = [i for p in progress for start, end in p.done or [] for i in range(start, end)]
    assert sorted(done) == list(range(planned))
    assert progress[-1].percent == 100.0 and progress[-1].per_depth == plan["perDepth"]
    assert events[-2].event == "task.progress"  # the last progress comes just before the end
    # Every node is announced started (nodes.started, batched) before it is announced done.
    started_at: dict[int, int] = {}
    for e in events:
        if e.event == "nodes.started":
            assert e.data["startedCalls"] >= 1
            for start, end in e.data["started"]:
                started_at.update((i, e.id) for i in range(start, end) if i not in started_at)
    assert sorted(started_at) == list(range(planned))
    for e in events:
        for start, end in (e.progress.done or []) if e.progress is not None else []:
            assert all(started_at[i] < e.id for i in range(start, end))
    started = [e for e in events if e.event == "nodes.started"]
    assert sum(e.data["startedCalls"] for e in started) == planned
    assert started[-1].data["perDepth"] == plan["perDepth"]
    # Batched: fewer events than calls (the leaves sent in one pump share one event).
    assert len(started) < planned


def test_a_built_in_tasks_events_from_started_to_completed(hv: rlm.Hypervisor) -> None:
    task_id = hv.submit(_slow(0.1, n=8))
    live = list(hv.events(task_id))  # while it runs
    _check_stream(live, planned=9)
    result = live[-1].result
    assert result is not None and result.output == sum(range(8))
    assert result == hv.result(task_id)
    # Once it has ended, the same events come back from the store.
    assert list(hv.events(task_id)) == live


def test_resume_after_an_event_mid_run_and_after_the_end(hv: rlm.Hypervisor) -> None:
    task_id = hv.submit(_slow(0.1, n=6))
    stream = hv.events(task_id)
    head = [next(stream), next(stream)]
    rest = list(hv.events(task_id, after=head[-1].id))  # a second watcher resumes
    assert [e.id for e in rest] == list(range(3, len(rest) + 3))
    assert rest[-1].terminal
    assert list(stream) == rest  # the first watcher, going on, saw the same
    everything = list(hv.events(task_id))
    assert everything == head + rest
    for after in (0, 1, len(everything) - 1, len(everything), len(everything) + 5):
        assert list(hv.events(task_id, after=after)) == everything[after:]


def test_another_users_task_is_not_found(hv: rlm.Hypervisor) -> None:
    done = hv.execute(
        {"type": "recursive", "description": "d", "input": {"items": [1, 2], "operation": "sum"}}
    )
    with pytest.raises(TaskNotFound):
        list(hv.events(done.task_id, viewer=Viewer("mallory")))
    with pytest.raises(TaskNotFound):
        hv.trajectory(done.task_id, viewer=Viewer("mallory"))
    with pytest.raises(TaskNotFound):
        list(hv.events("task-nope"))
    mine = list(hv.events(done.task_id, viewer=Viewer("local")))
    assert mine[-1].terminal


def test_rlm_steps_go_into_the_stream_and_the_trajectory(hv: rlm.Hypervisor) -> None:
    task_id = hv.submit(_slow(0.3, n=2))
    assert hv.record_events(task_id, RLM_STEPS[:2])
    running = hv.trajectory(task_id)
    assert running.status in ("pending", "running")
    assert [e.event for e in running.events] == ["rlm.turn", "rlm.cell"]
    # A session cannot end the task: its task.completed is ignored.
    assert hv.record_events(task_id, [RLM_STEPS[2], ("task.completed", {"status": "forged"})])
    result = hv.result(task_id, timeout=60)
    assert not hv.record_events(task_id, RLM_STEPS[:1])  # ended: the caller is told to stop

    ended = hv.trajectory(task_id)
    assert ended.status == "completed"
    assert [e.event for e in ended.events] == [
        "rlm.turn",
        "rlm.cell",
        "rlm.subcalls",
        "task.completed",
    ]
    assert ended.events[1].data["stdout"] == "1\n"
    assert ended.events[-1].result == result
    stream = list(hv.events(task_id))
    assert [e.event for e in stream].count("task.completed") == 1
    assert [e for e in stream if e.event.startswith("rlm.")] == ended.events[:-1]


def test_numbered_batches_are_kept_in_their_senders_order(hv: rlm.Hypervisor) -> None:
    # What a session host sends: numbered batches, fire and forget, which the async core may
    # run in another order (the cell's batch before its turn's), or twice (a retried call).
    import ray

    task_id = hv.submit(_slow(0.3, n=2))
    core = hv._core
    turn, cell, subcalls = ([step] for step in RLM_STEPS)
    assert ray.get(core.record_events.remote(task_id, cell, 2))
    assert ray.get(core.record_events.remote(task_id, subcalls, 4))  # 3 never comes
    assert hv.trajectory(task_id).events == []  # both wait for batch 1
    assert ray.get(core.record_events.remote(task_id, turn, 1))
    assert ray.get(core.record_events.remote(task_id, turn, 1))  # again: dropped
    running = hv.trajectory(task_id)
    assert [e.event for e in running.events] == ["rlm.turn", "rlm.cell"]
    hv.result(task_id, timeout=60)
    # Batch 4, held for the missing 3, goes in before the end, not lost with the task.
    ended = [e.event for e in hv.trajectory(task_id).events]
    assert ended == ["rlm.turn", "rlm.cell", "rlm.subcalls", "task.completed"]


def _exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_events_are_read_back_after_the_engine_restarts(ray_session: None, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_task_events=8)
    hv = with_test_ops(rlm.connect(settings=settings))
    done = hv.execute(_slow(0.0, n=4))
    before = list(hv.events(done.task_id))
    _check_stream(before, planned=5)
    capped = hv.submit(_slow(0.2, n=2))
    assert hv.record_events(capped, RLM_STEPS * 5)
    hv.result(capped, timeout=60)
    running = hv.submit(_slow(30.0, n=2))
    assert hv.record_events(running, RLM_STEPS[:1])
    wait_until(lambda: hv.status(running).status == "running", 30, "the long task runs")
    # The long task's events reach the store within a batch interval, before the kill.
    store = TaskStore(settings.database_path)
    wait_until(lambda: len(store.events(running)) >= 2, 30, "the running task's events are written")
    store.close()
    core_pid = hv.engine_info()["corePid"]
    hv.shutdown_engine()
    wait_until(lambda: _exited(core_pid), 30, f"the old core (pid {core_pid}) exits")

    again = rlm.connect(settings=settings)
    try:
        assert list(again.events(done.task_id)) == before
        assert list(again.events(done.task_id, after=2)) == before[2:]
        # Over the cap: the marker, then only the end (progress is counted apart).
        kept = list(again.events(capped))
        counted = [e for e in kept if e.event not in ("nodes.started", "task.progress")]
        assert len(counted) == 9
        assert kept[-2].event == "task.truncated" and kept[-2].data["limit"] == 8
        assert kept[-1].terminal and kept[-1].data["status"] == "completed"
        assert [e.event for e in again.trajectory(capped).events][-2:] == [
            "task.truncated",
            "task.completed",
        ]
        # Interrupted by the restart: what was written, then an end made from its record.
        interrupted = list(again.events(running))
        told = [e.event for e in interrupted if e.event != "nodes.started"]
        assert told[:2] == ["task.started", "rlm.turn"]
        # Its two leaves were running when the engine went: written before the kill.
        started = [e for e in interrupted if e.event == "nodes.started"]
        assert sum(e.data["startedCalls"] for e in started) == 2
        end = interrupted[-1]
        assert end.terminal and end.id == len(interrupted)
        assert end.data["status"] == "failed"
        assert end.result is not None and end.result.error is not None
        assert "interrupted" in end.result.error.message
    finally:
        again.shutdown_engine()


def test_progress_has_its_own_cap_and_never_crowds_out_rlm_steps(
    ray_session: None, tmp_path: Path
) -> None:
    # Caps far below the defaults, so a task of a second or two reaches the progress one.
    settings = make_settings(tmp_path, max_task_events=20, max_task_progress_events=4)
    hv = with_test_ops(rlm.connect(settings=settings))
    try:
        task_id = hv.submit(_slow(0.05, n=40))
        assert hv.record_events(task_id, RLM_STEPS)
        stream = hv.events(task_id)
        seen = []
        for event in stream:  # live, until the progress budget is spent
            seen.append(event)
            if event.event == "progress.truncated":
                break
        assert not seen[-1].terminal, "the task ended before its progress reached the cap"
        # Steps recorded after progress reached its cap are still kept.
        assert hv.record_events(task_id, RLM_STEPS)
        seen.extend(stream)
        assert seen[-1].terminal and seen[-1].data["status"] == "completed"
        types = [e.event for e in seen]
        assert [e.id for e in seen] == list(range(1, len(seen) + 1))
        assert [t for t in types if t.startswith("rlm.")] == [t for t, _ in RLM_STEPS] * 2
        assert "task.truncated" not in types
        progress = [t for t in types if t in ("nodes.started", "task.progress")]
        assert len(progress) == 3 and types.count("progress.truncated") == 1
        marker = seen[types.index("progress.truncated")]
        assert marker.data["limit"] == 4
        # The stored copy, read back once the task has ended, is the same; so is the trajectory.
        assert list(hv.events(task_id)) == seen
        trajectory = [e.event for e in hv.trajectory(task_id).events]
        assert trajectory == [t for t, _ in RLM_STEPS] * 2 + ["task.completed"]
    finally:
        hv.shutdown_engine()

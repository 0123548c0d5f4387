"""Timeouts, cancels, crashed agents, priorities and restarts on a real local Ray."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import rlm
from tests.integration.conftest import make_settings, with_test_ops
from tests.support import wait_until

pytestmark = pytest.mark.integration


def _slow(seconds: float, n: int = 8, **options: object) -> dict[str, object]:
    return {
        "type": "parallel",
        "description": "slow",
        "input": {"items": list(range(n)), "operation": "slow_sum", "params": {"seconds": seconds}},
        "options": {"leafSize": 1, **options},
    }


# Longer than the engine's cancel grace (5 s): a stop that is not cooperative leaves these
# leaves running past the grace, where _assert_nothing_runs sees them. No wall-clock bound.
LONG_LEAF_S = 30.0


def _wait_running(hv: rlm.Hypervisor, task_id: str) -> None:
    wait_until(lambda: hv.status(task_id).status == "running", 30, f"{task_id} runs", interval=0.02)


def _agent_running(hv: rlm.Hypervisor, task_id: str) -> int | None:
    """The pid of an agent running a leaf of ``task_id`` now, if any."""
    return next(
        (
            pid
            for pid, busy in zip(hv.agent_pids(), hv.agents_busy(), strict=False)
            if busy["running"] == task_id
        ),
        None,
    )


def _exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _assert_nothing_runs(hv: rlm.Hypervisor, task_id: str) -> None:
    for agent in hv.agents_busy():
        assert agent["running"] != task_id
        assert task_id not in agent["active"]


def test_timeout_stops_the_whole_tree(hv: rlm.Hypervisor) -> None:
    pids = hv.agent_pids()
    result = hv.execute(_slow(LONG_LEAF_S, timeoutMs=400))
    assert result.status == "failed" and not result.success
    assert result.agent_calls == 0  # no leaf finished: they were stopped, not waited out
    assert result.error is not None and result.error.code == "TIMEOUT"
    assert result.error.details == {"timeoutMs": 400}
    assert hv.status(result.task_id).status == "failed"
    _assert_nothing_runs(hv, result.task_id)
    assert hv.agent_pids() == pids  # the leaves stopped themselves; no agent was killed


def test_cancel_mid_run_leaves_nothing_running(hv: rlm.Hypervisor) -> None:
    pids = hv.agent_pids()
    task_id = hv.submit(_slow(LONG_LEAF_S))
    wait_until(lambda: _agent_running(hv, task_id), 30, f"an agent runs a leaf of {task_id}")
    response = hv.cancel(task_id)
    assert response.status == "cancelled"
    assert hv.agent_pids() == pids  # the leaves stopped themselves; no agent was killed
    _assert_nothing_runs(hv, task_id)
    status = hv.status(task_id)
    assert status.status == "cancelled"
    assert status.result is not None and status.result.agent_calls == 0
    assert hv.cancel(task_id).status == "already_completed"
    assert hv.cancel("task-nope").status == "not_found"


def test_a_call_lost_with_a_killed_agent_is_sent_again_and_the_task_completes(
    hv: rlm.Hypervisor,
) -> None:
    task_id = hv.submit(_slow(3.0, n=4))
    victim = wait_until(
        lambda: _agent_running(hv, task_id), 30, f"an agent runs a leaf of {task_id}"
    )
    os.kill(victim, signal.SIGKILL)
    result = hv.result(task_id, timeout=60)
    # The leaf the dead worker ran went to an agent that answers: the answer is whole.
    assert result.status == "completed", result.error
    assert result.output == sum(range(4))
    assert victim not in hv.agent_pids()  # Ray restarted the killed agent
    ok = hv.execute(
        {
            "type": "parallel",
            "description": "after",
            "input": {"items": list(range(10)), "operation": "sum"},
            "options": {"leafSize": 1},
        }
    )
    assert ok.output == 45


def test_a_call_that_kills_every_worker_fails_the_task_after_its_retries_not_a_hang(
    hv: rlm.Hypervisor, tmp_path: Path
) -> None:
    pids = set(hv.agent_pids())
    attempts = tmp_path / "attempts"
    result = hv.execute(
        {
            "type": "parallel",
            "description": "a poison leaf",
            "input": {
                "items": [1],
                "operation": "kill_worker",
                "params": {"log": str(attempts)},
            },
            "options": {"leafSize": 1},
        }
    )
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "INTERNAL_ERROR"
    assert "agent worker died" in result.error.message
    # Sent once and again call_retries (2) times, each time to an agent that answered (a
    # restarted one, maybe), each attempt in a process of its own.
    ran = attempts.read_text().split()
    assert len(ran) == 3 == len(set(ran))
    # The pool heals: Ray restarted every worker the call killed.
    assert not set(map(int, ran)) & set(hv.agent_pids())
    assert set(hv.agent_pids()) != pids
    ok = hv.execute(
        {
            "type": "parallel",
            "description": "after",
            "input": {"items": list(range(10)), "operation": "sum"},
            "options": {"leafSize": 1},
        }
    )
    assert ok.output == 45


def test_waiting_tasks_start_in_priority_order(hv: rlm.Hypervisor) -> None:
    # 2 agents x 2 calls in flight: 12 slow low-priority leaves saturate the pool.
    low = hv.submit(_slow(0.3, n=12, priority="low"))
    _wait_running(hv, low)
    normal = hv.submit(_slow(0.05, n=1, priority="normal"))
    critical = hv.submit(_slow(0.05, n=1, priority="critical"))
    r_normal, r_critical = hv.result(normal, timeout=60), hv.result(critical, timeout=60)
    assert r_normal.status == r_critical.status == "completed"
    s_low, s_normal, s_critical = (hv.status(t) for t in (low, normal, critical))
    assert s_critical.started_at is not None and s_normal.started_at is not None
    assert s_critical.started_at <= s_normal.started_at
    assert s_critical.completed_at is not None
    # Both jumped ahead of the low task's queued leaves.
    assert hv.result(low, timeout=60).status == "completed"
    assert s_low.status == "running"


def test_records_survive_a_restart(ray_session: None, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    hv = with_test_ops(rlm.connect(settings=settings))
    done = hv.execute(
        {
            "type": "recursive",
            "description": "kept",
            "input": {"items": [1, 2, 3], "operation": "sum"},
        }
    )
    running = hv.submit(_slow(30.0, n=2))
    _wait_running(hv, running)
    core_pid = hv.engine_info()["corePid"]
    hv.shutdown_engine()
    # The killed core's process must be gone before a new one looks.
    wait_until(lambda: _exited(core_pid), 30, f"the old core (pid {core_pid}) exits")

    again = rlm.connect(settings=settings)
    try:
        kept = again.status(done.task_id)
        assert kept.status == "completed"
        assert kept.result is not None and kept.result.output == 6
        interrupted = again.status(running)
        assert interrupted.status == "failed"
        assert interrupted.result is not None and interrupted.result.error is not None
        assert "interrupted" in interrupted.result.error.message
        assert again.cancel(running).status == "already_completed"
    finally:
        again.shutdown_engine()


def test_an_interrupted_task_reports_the_time_it_ran_not_the_downtime(
    ray_session: None, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    hv = with_test_ops(rlm.connect(settings=settings))
    submitted = time.monotonic()
    running = hv.submit(_slow(60.0, n=2))
    _wait_running(hv, running)
    # Run past an engine heartbeat (every 5 s), so the engine is seen alive during the task.
    wait_until(lambda: time.monotonic() - submitted > 6.0, 30, "the task runs for 6 s")
    core_pid = hv.engine_info()["corePid"]
    hv.shutdown_engine()
    killed = time.monotonic()
    wait_until(lambda: _exited(core_pid), 30, f"the old core (pid {core_pid}) exits")
    # The engine stays down a while: downtime the old accounting added to the task's time.
    wait_until(lambda: time.monotonic() - killed > 5.0, 30, "the engine is down for 5 s")

    again = rlm.connect(settings=settings)
    try:
        result = again.status(running).result
        assert result is not None and result.status == "failed"
        ran_ms = (killed - submitted) * 1000
        # It ran until the last heartbeat before the kill: within one beat (5 s) of it.
        assert ran_ms - 5_000 - 500 <= result.execution_time_ms <= ran_ms + 500
    finally:
        again.shutdown_engine()

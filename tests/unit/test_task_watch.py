"""What ``rlm tasks watch`` draws, from a task's events (no engine, no terminal)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from rlm.models import TaskEventMessage
from rlm.tasks.watch import TaskWatch, clip


def _event(seq: int, type_: str, **data: Any) -> TaskEventMessage:
    wire = {"id": seq, "event": type_, "timestamp": "2026-01-01T00:00:00Z", "data": data}
    return TaskEventMessage.model_validate(wire, strict=False)


def _text(watch: TaskWatch) -> str:
    console = Console(record=True, width=100, color_system=None, file=io.StringIO())
    console.print(watch)
    return console.export_text()


RESULT = {
    "taskId": "task-1",
    "status": "completed",
    "output": 55,
    "executionTimeMs": 12.5,
    "agentCalls": 7,
    "decompositionDepth": 1,
    "success": True,
}


def test_a_built_in_task_draws_a_bar_and_per_depth_counts() -> None:
    watch = TaskWatch("task-1")
    plan = {"nodes": 7, "leaves": 6, "depth": 1, "perDepth": [1, 6], "parents": [6] * 6 + [-1]}
    watch.apply(_event(1, "task.started", operation="sum", plannedCalls=7, plan=plan))
    assert watch.status == "running" and watch.operation == "sum"
    watch.apply(
        _event(2, "task.progress", completedCalls=3, plannedCalls=7, percent=42.86, perDepth=[0, 3])
    )
    text = _text(watch)
    assert "task-1" in text and "running" in text and "sum" in text
    assert "3/7 calls  42.9 %" in text
    assert "d0: 0/1  d1: 3/6" in text
    watch.apply(
        _event(3, "task.progress", completedCalls=7, plannedCalls=7, percent=100.0, perDepth=[1, 6])
    )
    watch.apply(_event(4, "task.completed", status="completed", result=RESULT))
    text = _text(watch)
    assert "completed" in text and "7/7 calls  100.0 %" in text and "d0: 1/1  d1: 6/6" in text
    assert "7 agent calls, 12.5 ms" in text
    assert watch.result is not None and watch.result.output == 55
    assert watch.last_id == 4


def test_an_rlm_task_draws_turns_cells_with_clipped_output_and_sub_call_batches() -> None:
    watch = TaskWatch("task-2", recent=3)
    watch.apply(_event(1, "task.started", operation="rlm", plannedCalls=0))
    reply = "Let me look.\n```repl\nprint(len(context))\n```"
    watch.apply(
        _event(
            2,
            "rlm.turn",
            path="0",
            turn=1,
            reply=reply,
            inputTokens=900,
            outputTokens=40,
            latencyMs=812,
        )
    )
    stdout = "\n".join(f"line {i}" for i in range(50))
    watch.apply(
        _event(
            3,
            "rlm.cell",
            path="0",
            turn=1,
            index=0,
            code="for i in range(50): print(f'line {i}')",
            stdout=stdout,
            durationMs=3,
        )
    )
    watch.apply(
        _event(
            4,
            "rlm.subcalls",
            path="0",
            turn=2,
            kind="llm_query_batched",
            count=8,
            model="small",
            inputTokens=4000,
            outputTokens=800,
            latencyMs=1500,
            cached=[True, False, True, False, False, False, False, False],
            errors=1,
        )
    )
    text = _text(watch)
    assert "turns 1  cells 1  sub-calls 8  tokens 5740" in text
    assert "[0] turn 1  900→40 tok, 812 ms" in text and "Let me look." in text
    assert "[0] cell 1.0  3 ms" in text
    assert "line 2" in text and "line 3" not in text and "(47 more lines)" in text
    assert "llm_query_batched x8  small  4000→800 tok, 1500 ms, 2 cached, 1 failed" in text
    # Only the newest steps stay on screen.
    watch.apply(_event(5, "rlm.child", path="0.0", parent="0", depth=1, phase="started"))
    watch.apply(_event(6, "rlm.answer", path="0", answer="42", turns=2, forced=False))
    text = _text(watch)
    assert "[0] turn 1" not in text and "cell 1.0" not in text
    assert "llm_query_batched x8" in text and "[0] answer  42" in text
    assert "[0.0] child started" in text


def test_a_failure_and_a_truncated_log_are_shown() -> None:
    watch = TaskWatch("task-3")
    watch.apply(_event(1, "task.truncated", limit=10, firstDropped="rlm.cell"))
    failed = {
        **RESULT,
        "status": "failed",
        "success": False,
        "error": {"code": "TIMEOUT", "message": "too slow"},
    }
    watch.apply(_event(2, "task.completed", status="failed", result=failed))
    text = _text(watch)
    assert watch.status == "failed"
    assert "events over the task's cap were not recorded" in text
    assert "TIMEOUT: too slow" in text


def test_clip_marks_what_it_cut() -> None:
    assert clip(None) == ""
    assert clip("short") == "short"
    assert clip("x" * 10, limit=4) == "xxxx…"
    assert clip("a\nb\nc", lines=2) == "a\nb\n… (1 more lines)"

"""What ``rlm tasks watch`` draws: a task's events folded into a live view (rich).

:class:`TaskWatch` takes the events one by one (:meth:`TaskWatch.apply`) and renders as a
rich renderable: the task's status, a progress bar with per-depth counts for built-in
operations, and for RLM tasks the latest turns, code cells (output truncated) and sub-call
batches. It holds no connection: the CLI feeds it from ``Hypervisor.events``.

Example:
    >>> watch = TaskWatch("task-1")
    >>> progress = {"completedCalls": 3, "plannedCalls": 4, "percent": 75.0}
    >>> wire = {"id": 2, "event": "task.progress", "timestamp": "2026-01-01T00:00:00Z"}
    >>> watch.apply(TaskEventMessage.model_validate({**wire, "data": progress}, strict=False))
    >>> watch.completed, watch.percent
    (3, 75.0)
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from rlm.models.events import TaskEventMessage
from rlm.models.tasks import ExecuteResponse

__all__ = ["TaskWatch", "clip"]

_STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def clip(text: Any, limit: int = 120, lines: int = 3) -> str:
    """``text`` on at most ``lines`` lines and ``limit`` characters, marked where cut.

    Example:
        >>> clip("a\\nb\\nc\\nd", lines=2)
        'a\\nb\\n… (2 more lines)'
    """
    value = "" if text is None else str(text)
    parts = value.splitlines()
    shown = "\n".join(parts[:lines])
    if len(shown) > limit:
        shown = shown[:limit] + "…"
    if len(parts) > lines:
        shown += f"\n… ({len(parts) - lines} more lines)"
    return shown


class TaskWatch:
    """A task's events folded into what the CLI draws.

    Args:
        task_id: The task.
        recent: How many RLM steps (turns, cells, sub-call batches...) stay on screen.
    """

    def __init__(self, task_id: str, recent: int = 8) -> None:
        self.task_id = task_id
        self.status = "pending"
        self.operation: str | None = None
        self.completed = 0
        self.planned = 0
        self.percent = 0.0
        self.per_depth: list[int] = []
        self.planned_per_depth: list[int] = []
        self.turns = 0
        self.cells = 0
        self.subcalls = 0
        self.tokens = 0
        self.truncated = False
        self.progress_truncated = False
        self.result: ExecuteResponse | None = None
        self.steps: deque[Text] = deque(maxlen=recent)
        self.last_id = 0

    def apply(self, event: TaskEventMessage) -> None:
        """Take the next event."""
        self.last_id = event.id
        data = event.data
        kind = event.event
        if kind == "task.started":
            self.status = "running"
            self.operation = data.get("operation")
            self.planned = int(data.get("plannedCalls", 0))
            self.planned_per_depth = list(data.get("plan", {}).get("perDepth", []))
        elif kind == "task.progress":
            self.status = "running"
            self.completed = int(data.get("completedCalls", 0))
            self.planned = int(data.get("plannedCalls", self.planned))
            self.percent = float(data.get("percent", 0.0))
            self.per_depth = list(data.get("perDepth", []))
        elif kind == "task.truncated":
            self.truncated = True
        elif kind == "progress.truncated":
            self.progress_truncated = True
        elif kind == "task.completed":
            self.status = str(data.get("status", "completed"))
            self.result = event.result
        elif kind.startswith("rlm."):
            self.status = "running"
            self._rlm_step(kind, data)

    def _rlm_step(self, kind: str, data: dict[str, Any]) -> None:
        where = f"[{data.get('path', '0')}] "
        line = Text(where, style="dim")
        if kind == "rlm.turn":
            self.turns += 1
            self.tokens += int(data.get("inputTokens") or 0) + int(data.get("outputTokens") or 0)
            line.append(f"turn {data.get('turn')}", style="bold")
            line.append(
                f"  {data.get('inputTokens', 0)}→{data.get('outputTokens', 0)} tok,"
                f" {data.get('latencyMs', 0)} ms\n"
            )
            line.append(clip(data.get("reply"), 160, 2), style="italic")
        elif kind == "rlm.cell":
            self.cells += 1
            line.append(f"cell {data.get('turn')}.{data.get('index')}", style="bold")
            line.append(f"  {data.get('durationMs', 0)} ms\n")
            line.append(clip(data.get("code"), 160, 2), style="blue")
            out = data.get("stdout") or ""
            err = data.get("error") or data.get("stderr") or ""
            if out:
                line.append("\n" + clip(out, 200, 3))
            if err:
                line.append("\n" + clip(err, 200, 3), style="red")
        elif kind == "rlm.subcalls":
            count = int(data.get("count") or 0)
            self.subcalls += count
            self.tokens += int(data.get("inputTokens") or 0) + int(data.get("outputTokens") or 0)
            line.append(f"{data.get('kind', 'llm_query')} x{count}", style="bold")
            line.append(
                f"  {data.get('model', '')}  {data.get('inputTokens', 0)}→"
                f"{data.get('outputTokens', 0)} tok, {data.get('latencyMs', 0)} ms"
            )
            cached, errors = data.get("cached") or 0, data.get("errors") or 0
            if cached:
                line.append(f", {sum(cached) if isinstance(cached, list) else cached} cached")
            if errors:
                line.append(f", {errors} failed", style="red")
        elif kind == "rlm.child":
            line.append(f"child {data.get('phase', '')}", style="bold")
            if data.get("answer") is not None:
                line.append("  " + clip(data.get("answer"), 120, 1))
        elif kind == "rlm.answer":
            line.append("answer", style="bold green")
            line.append("  " + clip(data.get("answer"), 200, 3))
        else:
            line.append(kind, style="bold")
        self.steps.append(line)

    def __rich__(self) -> RenderableType:
        status = Text(self.status, style=_STATUS_STYLE.get(self.status, "white"))
        head = Table.grid(padding=(0, 1))
        head.add_row(Text(self.task_id, style="bold"), status, Text(self.operation or ""))
        parts: list[RenderableType] = [head]
        if self.planned:
            bar = Table.grid(padding=(0, 1))
            total = max(self.planned, self.completed)
            bar.add_row(
                ProgressBar(total=total, completed=self.completed, width=40),
                Text(f"{self.completed}/{self.planned} calls  {self.percent:.1f} %"),
            )
            parts.append(bar)
            if len(self.planned_per_depth) > 1:
                depths = "  ".join(
                    f"d{d}: {done}/{planned}"
                    for d, (done, planned) in enumerate(
                        zip(self._padded(), self.planned_per_depth, strict=True)
                    )
                )
                parts.append(Text(depths, style="dim"))
        if self.turns or self.cells or self.subcalls:
            parts.append(
                Text(
                    f"turns {self.turns}  cells {self.cells}  sub-calls {self.subcalls}"
                    f"  tokens {self.tokens}",
                    style="bold",
                )
            )
            parts.extend(self.steps)
        if self.truncated:
            parts.append(Text("(events over the task's cap were not recorded)", style="yellow"))
        elif self.progress_truncated:
            parts.append(Text("(progress over its cap is no longer recorded)", style="yellow"))
        if self.result is not None:
            summary = f"{self.result.agent_calls} agent calls, {self.result.execution_time_ms} ms"
            if self.result.error is not None:
                summary += f" — {self.result.error.code}: {self.result.error.message}"
            parts.append(Text(summary, style=_STATUS_STYLE.get(self.status, "white")))
        return Group(*parts)

    def _padded(self) -> list[int]:
        done = self.per_depth[: len(self.planned_per_depth)]
        return done + [0] * (len(self.planned_per_depth) - len(done))

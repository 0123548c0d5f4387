"""Task events on the wire: one event of ``GET /tasks/{taskId}/events``, and a trajectory.

The event types and their ``data`` are listed in :mod:`rlm.tasks.events`; ``data`` stays a
dict (new fields may appear), with typed views for the two a client acts on: ``progress`` and
``result``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rlm.models.base import WireModel
from rlm.models.tasks import ExecuteResponse, TaskState

__all__ = ["ProgressEventData", "TaskEventMessage", "Trajectory"]


class ProgressEventData(WireModel):
    """``task.progress``'s data (see :mod:`rlm.tasks.events` for ``perDepth`` and ``done``)."""

    completed_calls: int
    planned_calls: int
    percent: float
    per_depth: list[int] = []
    done: list[list[int]] | None = None


class TaskEventMessage(WireModel):
    """One event of a task, as ``GET /tasks/{taskId}/events`` sends it (``data:`` of an SSE
    message) and the trajectory lists it.

    Attributes:
        id: Its number in the task's log, from 1 (the SSE ``id:``; resume after it with
            ``Last-Event-ID``).
        event: Its type, e.g. ``task.progress``, ``rlm.cell``, ``task.completed``.
        timestamp: When it happened (UTC).
        data: Its fields, camelCase.
    """

    id: int
    event: str
    timestamp: datetime
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """Whether this is ``task.completed``, the last event of every task."""
        return self.event == "task.completed"

    @property
    def progress(self) -> ProgressEventData | None:
        """``task.progress``'s data, typed (``None`` for other events)."""
        if self.event != "task.progress":
            return None
        return ProgressEventData.model_validate(self.data, strict=False)

    @property
    def result(self) -> ExecuteResponse | None:
        """The task's result carried by ``task.completed`` (``None`` for other events)."""
        if not self.terminal or self.data.get("result") is None:
            return None
        return ExecuteResponse.model_validate(self.data["result"], strict=False)


class Trajectory(WireModel):
    """``GET /tasks/{taskId}/trajectory``: an RLM task's turns, cells, sub-calls and child
    RLMs, then ``task.completed`` once it has ended."""

    task_id: str
    status: TaskState
    events: list[TaskEventMessage]

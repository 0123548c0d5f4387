"""A task's durable record: who asked for what, where it stands, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast, get_args

from rlm.models.tasks import ExecuteResponse, Progress, TaskState, TaskStatus, TaskType

__all__ = ["TERMINAL_STATES", "TaskRecord"]

TERMINAL_STATES: frozenset[TaskState] = frozenset({"completed", "failed", "cancelled"})
#: How much of a task's description its status shows.
_DESCRIPTION_CHARS = 200
_TASK_TYPES = frozenset(get_args(TaskType))


@dataclass(frozen=True)
class TaskRecord:
    """One row of the task table."""

    task_id: str
    status: TaskState
    created_at: datetime
    type: str
    description: str
    priority: str
    owner_id: str
    org_id: str | None = None
    team_id: str | None = None
    request: dict[str, Any] = field(default_factory=dict)
    planned_calls: int = 0
    completed_calls: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: ExecuteResponse | None = None
    instance_id: str = ""

    @property
    def terminal(self) -> bool:
        """Whether the task has ended (completed, failed or cancelled)."""
        return self.status in TERMINAL_STATES

    def evolve(self, **changes: Any) -> TaskRecord:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_status(self) -> TaskStatus:
        """The API's ``TaskStatus`` view of this record."""
        total = max(self.planned_calls, 0)
        current = min(self.completed_calls, total) if total else self.completed_calls
        progress = Progress(
            current=current,
            total=total,
            percentage=round(100.0 * current / total, 2) if total else 0.0,
        )
        return TaskStatus(
            task_id=self.task_id,
            status=self.status,
            progress=progress,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            result=self.result,
            type=cast(TaskType, self.type) if self.type in _TASK_TYPES else None,
            description=self.description[:_DESCRIPTION_CHARS],
            operation=self.operation,
        )

    @property
    def operation(self) -> str | None:
        """The operation the request named (``None`` when its input named none)."""
        source = self.request.get("input")
        name = source.get("operation") if isinstance(source, dict) else None
        return name if isinstance(name, str) else None

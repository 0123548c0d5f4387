"""The result of a task as the SDK hands it out."""

from __future__ import annotations

from typing import Any

from rlm.errors import InternalError, error_from_payload
from rlm.models import ExecuteResponse, TaskStatus

__all__ = [
    "ExecuteResult",
    "TERMINAL_STATES",
]

#: Task states after which nothing changes.
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})


class ExecuteResult(ExecuteResponse):
    """An :class:`~rlm.models.ExecuteResponse` with a few conveniences.

    It *is* an ``ExecuteResponse`` (same fields, same wire form via ``to_wire()``), so the
    snake_case attributes ``output``, ``task_id``, ``status``, ``success``, ``error``,
    ``agent_calls``, ``execution_time_ms``, ``decomposition_depth`` and ``score`` are there.

    A task that fails is a *result*, not an exception: check ``success`` or call
    :meth:`raise_for_error`.

    Example:
        >>> r = ExecuteResult(taskId="task-1", status="completed", output=15,
        ...                   executionTimeMs=3.2, agentCalls=1, decompositionDepth=0,
        ...                   success=True)
        >>> print(f"Result: {r.output}")
        Result: 15
    """

    @property
    def done(self) -> bool:
        """Whether the task reached a terminal state (completed, failed or cancelled)."""
        return self.status in TERMINAL_STATES

    def raise_for_error(self) -> ExecuteResult:
        """Raise the task's error as its :mod:`rlm.errors` class; return ``self`` otherwise.

        Raises:
            RLMError: the class for ``error.code`` (e.g. :class:`~rlm.errors.TaskTimeout`), or
                :class:`~rlm.errors.InternalError` for a failed task that reported no error.
        """
        if self.error is not None:
            details: Any = self.error.details
            if details is not None and not isinstance(details, dict):
                details = {"details": details}
            raise error_from_payload(
                {"code": self.error.code, "message": self.error.message, "details": details}
            )
        if self.status == "failed":
            raise InternalError(f"task {self.task_id!r} failed", {"taskId": self.task_id})
        return self

    @classmethod
    def from_response(cls, response: ExecuteResponse) -> ExecuteResult:
        """Wrap an :class:`~rlm.models.ExecuteResponse` (returned as is if already wrapped)."""
        if isinstance(response, cls):
            return response
        return cls.model_validate(response.model_dump())

    @classmethod
    def pending(cls, task_id: str, status: str = "pending") -> ExecuteResult:
        """The placeholder result of a task that was accepted but has not finished."""
        return cls.model_validate(
            {
                "task_id": task_id,
                "status": status,
                "execution_time_ms": 0.0,
                "agent_calls": 0,
                "decomposition_depth": 0,
                "success": False,
            },
            strict=False,
        )

    @classmethod
    def from_status(cls, status: TaskStatus) -> ExecuteResult:
        """The result carried by a task's status, or a placeholder while it has none.

        A task cancelled before it ran has no result; the placeholder then has the task's
        state, ``success=False`` and zero counters.
        """
        if status.result is not None:
            return cls.from_response(status.result)
        return cls.pending(status.task_id, status.status)

"""Task shapes: execute requests and responses, task status, cancel, OOLONG tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from rlm.models.base import INTEGRAL, WireModel
from rlm.models.budget import Budget

__all__ = [
    "CancelResponse",
    "Complexity",
    "ErrorInfo",
    "ExecuteOptions",
    "ExecuteRequest",
    "ExecuteResponse",
    "OOLONGResult",
    "OOLONGTask",
    "Priority",
    "Progress",
    "TaskState",
    "TaskPage",
    "TaskStatus",
    "TaskType",
    "Usage",
]

TaskType = Literal["recursive", "parallel", "sequential"]
Complexity = Literal["linear", "quadratic", "exponential"]
Priority = Literal["low", "normal", "high", "critical"]
TaskState = Literal["pending", "running", "completed", "failed", "cancelled"]

#: One day: the longest a task may be allowed to run.
MAX_TIMEOUT_MS = 86_400_000


class ExecuteOptions(WireModel):
    """``ExecuteRequest.options``. ``leafSize``, ``fanout``, ``async``, ``budget``, ``memo``,
    ``model``, ``subModel`` and ``maxIterations`` are extensions: ``budget`` limits the task's
    LM calls, tokens and cost; ``memo: false`` sends every LM call even when an identical
    temperature-0 call was answered before; ``model`` (the root's), ``subModel`` (sub-calls')
    and ``maxIterations`` (root turns) apply to RLM tasks (``input.operation: "rlm"``), whose
    ``maxDepth`` is the ``rlm_query`` nesting (default 1)."""

    max_depth: Annotated[int, Field(ge=0, le=32), INTEGRAL] | None = None
    timeout_ms: Annotated[int, Field(gt=0, le=MAX_TIMEOUT_MS), INTEGRAL] | None = None
    priority: Priority = "normal"
    leaf_size: Annotated[int, Field(ge=1, le=2**53), INTEGRAL] | None = None
    fanout: Annotated[int, Field(ge=2, le=1024), INTEGRAL] | None = None
    async_: bool = Field(default=False, alias="async")
    budget: Budget | None = None
    memo: bool | None = None
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    sub_model: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    max_iterations: Annotated[int, Field(ge=1, le=10_000)] | None = None


class ExecuteRequest(WireModel):
    """``POST /execute``'s body.

    ``input`` is ``{"items": [...], "operation": "sum", "params": {...}}``; ``text`` (a string
    split into lines) may stand in for ``items``.
    """

    type: TaskType
    description: Annotated[str, Field(max_length=10_000)]
    complexity: Complexity = "linear"
    input: Any
    expected_output: Any = None
    options: ExecuteOptions = Field(default_factory=ExecuteOptions)


class ErrorInfo(WireModel):
    """The ``error`` of a failed task or request."""

    code: str
    message: str
    details: Any = None


class Usage(WireModel):
    """``ExecuteResponse.usage`` (extension): what the task's language-model calls used.

    ``lmCalls`` counts every LM request answered (``cachedCalls`` of them from the memo cache,
    which cost nothing); tokens are the provider's reported counts; ``costUsd`` is priced from
    the provider's settings.
    """

    lm_calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class ExecuteResponse(WireModel):
    """The result of a task. ``score`` (extension) is set when ``expectedOutput`` was given;
    ``usage`` (extension) when the task called a language model."""

    task_id: str
    status: Literal["pending", "running", "completed", "failed", "cancelled"]
    output: Any = None
    execution_time_ms: float
    agent_calls: int
    decomposition_depth: int
    success: bool
    score: float | None = None
    error: ErrorInfo | None = None
    usage: Usage | None = None


class Progress(WireModel):
    """Completed over planned agent calls."""

    current: int
    total: int
    percentage: float


class TaskStatus(WireModel):
    """``GET /tasks/{taskId}``.

    ``type``, ``description`` (its first 200 characters) and ``operation`` (the input's
    ``operation``; ``rlm`` for an RLM task) are extensions: what a list of tasks shows and
    filters by.
    """

    task_id: str
    status: TaskState
    progress: Progress | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: ExecuteResponse | None = None
    type: TaskType | None = None
    description: str | None = None
    operation: str | None = None


class TaskPage(WireModel):
    """``GET /tasks`` (extension): the tasks the filters select, newest first (the caller's
    own; an org admin's, its org's too); ``nextCursor``, when set, fetches the older ones
    (pass it as ``cursor`` with the same filters)."""

    tasks: list[TaskStatus]
    next_cursor: str | None = None


class CancelResponse(WireModel):
    """``POST /tasks/{taskId}/cancel``."""

    task_id: str
    status: Literal["cancelled", "already_completed", "not_found"]
    message: str


class OOLONGTask(WireModel):
    """A benchmark task in the OOLONG style."""

    id: str
    type: TaskType
    description: str
    complexity: Complexity
    input: Any
    expected_output: Any = None


class OOLONGResult(WireModel):
    """The result of an :class:`OOLONGTask`."""

    task_id: str
    output: Any
    execution_time_ms: float
    agent_calls: int
    decomposition_depth: int
    success: bool

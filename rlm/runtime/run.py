"""A task as the core holds it: what the caller asked for, and the state of its run.

:class:`TaskSpec` is prepared and validated by the caller (``Hypervisor.prepare``) and travels
to the core actor; :class:`Run` is the core's per-task state while the task is in flight: its
record with live progress, the plan's bookkeeping for the scheduler, and the event its waiters
wait on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ray import cloudpickle

from rlm.admission import Admission
from rlm.lm.budget import Budget
from rlm.models.tasks import Priority
from rlm.operations.base import Operation
from rlm.planning import Plan
from rlm.runtime.agents import ItemsSource
from rlm.tasks.batch_order import BatchOrder
from rlm.tasks.events import TERMINAL_EVENT, EventLog
from rlm.tasks.progress import ProgressTracker
from rlm.tasks.record import TaskRecord

__all__ = ["Run", "TaskSpec"]


@dataclass
class TaskSpec:
    """Everything the core needs to run a task, prepared and validated by the caller."""

    task_id: str
    type: str
    description: str
    priority: Priority
    owner_id: str
    org_id: str | None
    team_id: str | None
    request: dict[str, Any]
    operation: Operation
    params: Any
    items: ItemsSource
    plan: Plan
    timeout_ms: int | None
    expected_output: Any = None
    has_expected_output: bool = False
    #: LM operations: the task's budget (``options.budget``) and whether memoised answers
    #: may be used (``options.memo``).
    budget: Budget | None = None
    memo: bool = True


@dataclass
class Run:
    """One task in flight.

    Attributes:
        spec: What the caller asked for.
        seq: The task's arrival order (ties between equal priorities go to the earlier task).
        record: The task's record, with live progress; stored when the task ends.
        op_bytes: The operation, pickled once for every call of the task sent to an agent
            actor (``b""`` until one is: see :meth:`pickled_operation`).
        admission: What the task was admitted with (its lease is given back at the end).
        has_input: Agents that hold the task input (later calls name it by key).
        sent: Children's partials sent with each in-flight node, to resend after ``needInput``.
        lost: Times each node's call was lost with its agent's worker (and sent again).
        t0: ``perf_counter`` at the start, for ``executionTimeMs``.
        remaining: Per inner node, children not finished yet.
        partials: Finished children's partials (or references), until their parent is sent.
        inflight: Per node in flight, ``(agent, handle, future)``.
        completed: Agent calls finished.
        busy_s: Agent time the finished calls took.
        finished: Set once the task is ending; no more calls are sent or accounted.
        done: Set once the task has ended and its result is recorded.
        timer: The ``timeoutMs`` timer.
        events: The task's events (see :mod:`rlm.tasks.events`).
        event_batches: An RLM session's numbered event batches, put back in the order they
            were sent (see :mod:`rlm.tasks.batch_order`).
        progress: Calls finished since the last ``task.progress`` event, and its throttle.
        progress_timer: The pending (throttled) ``task.progress`` event, if any.
        depth_reached: An RLM task's ``decompositionDepth`` (the deepest sub-call), set when
            its session answers; other tasks take their plan's depth.
    """

    spec: TaskSpec
    seq: int
    record: TaskRecord
    op_bytes: bytes = b""
    admission: Admission | None = None
    has_input: set[int] = field(default_factory=set)
    sent: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    lost: dict[int, int] = field(default_factory=dict)
    t0: float = 0.0
    remaining: dict[int, int] = field(default_factory=dict)
    partials: dict[int, Any] = field(default_factory=dict)
    inflight: dict[int, tuple[int, Any, asyncio.Future[Any]]] = field(default_factory=dict)
    completed: int = 0
    busy_s: float = 0.0
    finished: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None
    depth_reached: int | None = None
    events: EventLog = field(kw_only=True)
    event_batches: BatchOrder[list[tuple[str, dict[str, Any]]]] = field(default_factory=BatchOrder)
    progress: ProgressTracker = field(init=False)
    progress_timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.progress = ProgressTracker(self.spec.plan, time.monotonic())

    def append_steps(self, batches: Iterable[list[tuple[str, dict[str, Any]]]]) -> None:
        """Append an RLM session's event batches, in order. A ``task.completed`` among them
        is ignored: the task table appends the terminal event, when the task ends."""
        for batch in batches:
            for type_, data in batch:
                if type_ != TERMINAL_EVENT:
                    self.events.append(type_, data)

    def pickled_operation(self) -> bytes:
        """The operation as the agent actors get it, pickled on the first call sent to one.

        A task that runs in the core (see :meth:`rlm.runtime.scheduler.Scheduler.runs_in_core`)
        never needs it: its calls carry the operation itself.
        """
        if not self.op_bytes:
            self.op_bytes = cloudpickle.dumps(self.spec.operation)
        return self.op_bytes

    def report_progress(self) -> None:
        """Append a ``nodes.started`` event for the calls sent since the last one and a
        ``task.progress`` event for the calls finished since the last one (each if any).

        Callers throttle (see :meth:`ProgressTracker.wait_s`); the task table calls it once
        more just before the terminal event.
        """
        if self.progress_timer is not None:
            self.progress_timer.cancel()
            self.progress_timer = None
        if self.events.closed:
            return
        now = time.monotonic()
        # Sent before finished: a call started and done within one interval reads in order.
        started = self.progress.take_started(now)
        if started is not None:
            self.events.append("nodes.started", started)
        data = self.progress.take(now, self.completed)
        if data is not None:
            self.events.append("task.progress", data)

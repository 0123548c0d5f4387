"""The ready queue: which agent call goes next when agents are saturated.

Calls are ordered by their task's priority (critical first), then by task arrival, then by
their place in the task's plan, so a critical task that arrives while a low-priority task
fills every agent starts with the very next free agent slot.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

from rlm.models.tasks import Priority

__all__ = ["PRIORITY_RANK", "ReadyQueue"]

PRIORITY_RANK: dict[Priority, int] = {"critical": 0, "high": 1, "normal": 2, "low": 3}

T = TypeVar("T")


class ReadyQueue(Generic[T]):
    """A priority queue of runnable agent calls.

    Example:
        >>> q: ReadyQueue[str] = ReadyQueue()
        >>> q.push("low-leaf", priority="low", task_seq=1, order=0)
        >>> q.push("critical-leaf", priority="critical", task_seq=2, order=0)
        >>> q.pop()
        'critical-leaf'
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, int, T]] = []
        self._tie = itertools.count()

    def push(self, item: T, *, priority: Priority, task_seq: int, order: int) -> None:
        """Queue ``item`` for a task of ``priority`` that arrived ``task_seq``-th."""
        key = (PRIORITY_RANK[priority], task_seq, order, next(self._tie))
        heapq.heappush(self._heap, (*key, item))

    def pop(self) -> T:
        """The most urgent item.

        Raises:
            IndexError: the queue is empty.
        """
        return heapq.heappop(self._heap)[-1]

    def peek(self) -> T:
        """The most urgent item, left in the queue.

        Raises:
            IndexError: the queue is empty.
        """
        return self._heap[0][-1]

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

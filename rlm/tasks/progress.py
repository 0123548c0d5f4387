"""Progress events of a built-in task: what finished, coalesced and throttled (pure).

The scheduler marks every finished agent call on the run's :class:`ProgressTracker` (a list
append and a counter: the engine's hot path stays cheap) and asks it when the next
``task.progress`` may go out; the tracker then builds one event for everything that finished
in between. Calls sent to an agent are marked the same way and go out, under the same
throttle, as one ``nodes.started`` event just before that ``task.progress``: a watcher tells a
running node from a pending one at the cost of at most one more event per interval, not one
per call. The shape of the events, and how a browser draws a tree from them, is described in
:mod:`rlm.tasks.events`.

Example:
    >>> from rlm.planning import plan_task
    >>> plan = plan_task("recursive", 4, leaf_size=1, fanout=2, max_depth=8)
    >>> tracker = ProgressTracker(plan, t0=0.0)
    >>> for node in plan.nodes[:2]:
    ...     tracker.mark(node.index, node.depth)
    >>> tracker.take(now=0.0, completed=2)["done"]
    [[0, 2]]
    >>> tracker.start(plan.nodes[2].index, plan.nodes[2].depth)
    >>> tracker.take_started(now=0.0)["started"]
    [[2, 3]]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rlm.planning import Plan
from rlm.tasks.events import MAX_TREE_NODES

__all__ = [
    "PROGRESS_AGE_DIVISOR",
    "PROGRESS_MIN_INTERVAL_S",
    "ProgressTracker",
    "coalesce",
    "plan_shape",
    "progress_interval",
]

#: The shortest time between two progress events of one task.
PROGRESS_MIN_INTERVAL_S = 0.1
#: Past 100 s, progress events of a task are at least its age divided by this apart.
PROGRESS_AGE_DIVISOR = 1000.0


def progress_interval(age_s: float) -> float:
    """The least time between two progress events of a task that has run ``age_s`` seconds.

    100 ms for the first 100 s, then a thousandth of the task's age: a task sends about
    ``1000 * (1 + ln(age / 100 s))`` progress events over its life (under 8,000 in a day), so
    a long one stays within its cap of stored events.
    """
    return max(PROGRESS_MIN_INTERVAL_S, age_s / PROGRESS_AGE_DIVISOR)


def coalesce(indices: Iterable[int]) -> list[list[int]]:
    """Half-open ``[start, end)`` ranges covering ``indices`` (sorted, merged, no repeats).

    Example:
        >>> coalesce([5, 0, 1, 2, 7, 6])
        [[0, 3], [5, 8]]
    """
    ranges: list[list[int]] = []
    for i in sorted(set(indices)):
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges


def _depth_counts(plan: Plan) -> list[int]:
    counts = [0] * (max(n.depth for n in plan.nodes) + 1)
    for node in plan.nodes:
        counts[node.depth] += 1
    return counts


def plan_shape(plan: Plan) -> dict[str, Any]:
    """``task.started``'s ``plan``: node and leaf counts, depth, per-depth counts, parents."""
    per_depth = _depth_counts(plan)
    shape: dict[str, Any] = {
        "nodes": len(plan.nodes),
        "leaves": sum(1 for n in plan.nodes if n.kind != "combine"),
        "depth": len(per_depth) - 1,
        "perDepth": per_depth,
    }
    if len(plan.nodes) <= MAX_TREE_NODES:
        shape["parents"] = [-1 if n.parent is None else n.parent for n in plan.nodes]
    return shape


class ProgressTracker:
    """What finished since the last progress event of one task, and when the next may go.

    Args:
        plan: The task's plan.
        t0: When the task started, on the clock ``now`` values come from (monotonic seconds).
    """

    __slots__ = (
        "_done",
        "_last",
        "_started",
        "_started_new",
        "_t0",
        "_tree",
        "per_depth",
        "per_depth_started",
        "planned",
    )

    def __init__(self, plan: Plan, t0: float) -> None:
        self.planned = len(plan.nodes)
        self.per_depth = [0] * (max(n.depth for n in plan.nodes) + 1)
        self._tree = len(plan.nodes) <= MAX_TREE_NODES
        self._done: list[int] = []
        #: Nodes sent since the last ``nodes.started`` (indexes kept only for a drawn tree).
        self._started: list[int] = []
        self._started_new = 0
        self.per_depth_started = [0] * len(self.per_depth)
        self._t0 = t0
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        """Whether calls started or finished since the last event."""
        return bool(self._done) or self._started_new > 0

    def start(self, index: int, depth: int) -> None:
        """Note that plan node ``index`` (at ``depth``) was sent to an agent."""
        self._started_new += 1
        self.per_depth_started[depth] += 1
        if self._tree:
            self._started.append(index)

    def take_started(self, now: float) -> dict[str, Any] | None:
        """The data of the next ``nodes.started`` (``None`` when no call was sent since).

        ``startedCalls`` counts the calls sent since the previous one; ``perDepth`` the calls
        sent so far at each depth (a resent call counts again); ``started`` (drawn trees
        only) the plan nodes sent, as half-open ``[start, end)`` index ranges.
        """
        if not self._started_new:
            return None
        data: dict[str, Any] = {
            "startedCalls": self._started_new,
            "perDepth": list(self.per_depth_started),
        }
        if self._tree:
            data["started"] = coalesce(self._started)
        self._started = []
        self._started_new = 0
        self._last = now
        return data

    def mark(self, index: int, depth: int) -> None:
        """Note that plan node ``index`` (at ``depth``) finished."""
        self._done.append(index)
        self.per_depth[depth] += 1

    def wait_s(self, now: float) -> float:
        """Seconds until the next progress event may go out (0: now).

        The first one goes at once; later ones keep :func:`progress_interval` apart.
        """
        if self._last is None:
            return 0.0
        return max(0.0, self._last + progress_interval(now - self._t0) - now)

    def take(self, now: float, completed: int) -> dict[str, Any] | None:
        """The data of the next ``task.progress`` (``None`` when nothing finished since).

        Args:
            now: The clock's time (the throttle counts from here).
            completed: Agent calls the task has completed (an LM call that sent k requests
                counts k, so this may pass the plan's count).
        """
        if not self._done:
            return None
        planned = self.planned
        data: dict[str, Any] = {
            "completedCalls": completed,
            "plannedCalls": planned,
            "percent": round(100.0 * min(completed, planned) / planned, 2) if planned else 0.0,
            "perDepth": list(self.per_depth),
        }
        if self._tree:
            data["done"] = coalesce(self._done)
        self._done = []
        self._last = now
        return data

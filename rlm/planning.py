"""The planner: how a task's items are cut into agent calls.

A plan is a list of nodes in dependency order (children before parents), each one agent call:

- ``leaf``: run the operation's ``leaf`` over items ``[start, end)``;
- ``combine``: merge the partials of ``children`` (in order) in one call;
- ``fold``: the sequential step, ``fold(partial of children[0], items[start:end])``.

Shapes and their counts (DESIGN.md, "Execution semantics"):

================  =================================  ===============================
type              agent calls                        decomposition depth
================  =================================  ===============================
recursive         leaves + internal nodes            depth of the deepest leaf
parallel          chunks + 1 (1 when unsplit)        1 when split, else 0
sequential        chunks                             1 when split, else 0
================  =================================  ===============================

Example:
    >>> p = plan_task("recursive", 16, leaf_size=1, fanout=2, max_depth=8)
    >>> p.agent_calls, p.depth
    (31, 4)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from rlm.errors import InvalidInput
from rlm.models.tasks import Complexity, TaskType

__all__ = ["NodeKind", "Plan", "PlanNode", "leaf_size_for", "plan_task"]

NodeKind = Literal["leaf", "combine", "fold"]


@dataclass(frozen=True, slots=True)
class PlanNode:
    """One agent call of a plan."""

    index: int
    kind: NodeKind
    start: int
    end: int
    depth: int
    children: tuple[int, ...] = ()
    parent: int | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # A plan crosses to the core with every task: a frozen slots dataclass unpickles
        # through ``dataclasses.fields`` once per node (~9 us each), this in a fraction.
        fields = (self.index, self.kind, self.start, self.end, self.depth, self.children)
        return (PlanNode, (*fields, self.parent))


@dataclass(frozen=True, slots=True)
class Plan:
    """A task's execution tree, nodes in dependency order; the root is the last node."""

    type: TaskType
    nodes: tuple[PlanNode, ...]
    n_items: int
    leaf_size: int
    fanout: int
    max_depth: int

    @property
    def root(self) -> PlanNode:
        """The node whose partial is finished into the output."""
        return self.nodes[-1]

    @property
    def agent_calls(self) -> int:
        """Agent calls the plan makes (one per node)."""
        return len(self.nodes)

    @property
    def depth(self) -> int:
        """``decompositionDepth``: the deepest level holding input items (root = 0)."""
        return max(n.depth for n in self.nodes if n.kind != "combine")

    @property
    def leaves(self) -> list[PlanNode]:
        """Nodes that read items, in input order."""
        return [n for n in self.nodes if n.kind != "combine"]


def leaf_size_for(complexity: Complexity, leaf_cost: float) -> int:
    """Items per leaf so that every leaf costs about ``leaf_cost`` units of work.

    Linear work costs ``n``, quadratic ``n**2`` and exponential ``2**n`` units for ``n`` items.
    """
    if complexity == "linear":
        size = leaf_cost
    elif complexity == "quadratic":
        size = math.sqrt(leaf_cost)
    else:
        size = math.log2(max(leaf_cost, 2.0))
    return max(1, int(size))


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    if n == 0:
        return [(0, 0)]
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def plan_task(
    type: TaskType,
    n_items: int,
    *,
    complexity: Complexity = "linear",
    leaf_size: int | None = None,
    fanout: int = 4,
    max_depth: int = 8,
    leaf_cost: float = 65_536.0,
    max_leaves: int = 4096,
) -> Plan:
    """Plan a task over ``n_items`` items.

    Args:
        type: ``recursive``, ``parallel`` or ``sequential``.
        n_items: How many items the input holds.
        complexity: Feeds the cost model when ``leaf_size`` is not forced.
        leaf_size: Force items per leaf (``options.leafSize``).
        fanout: Children per internal node (recursive only; ``options.fanout``).
        max_depth: The deepest level any node may sit at (``options.maxDepth``).
        leaf_cost: Target cost units per leaf for the cost model.
        max_leaves: The most leaves a plan may have.

    Returns:
        The plan.

    Raises:
        InvalidInput: a forced ``leafSize`` would need more than ``max_leaves`` leaves, or an
            argument is out of range.
    """
    if n_items < 0:
        raise InvalidInput("the input cannot have a negative size", field="input.items")
    if not 0 <= max_depth <= 32:
        raise InvalidInput("maxDepth must be between 0 and 32", field="options.maxDepth")
    if fanout < 2:
        raise InvalidInput("fanout must be at least 2", field="options.fanout")
    if leaf_size is not None:
        if leaf_size < 1:
            raise InvalidInput("leafSize must be at least 1", field="options.leafSize")
        size = leaf_size
        if math.ceil(n_items / size) > max_leaves:
            raise InvalidInput(
                f"leafSize {size} would make {math.ceil(n_items / size)} leaves; "
                f"at most {max_leaves} are allowed",
                {"maxLeaves": max_leaves},
                field="options.leafSize",
            )
    else:
        size = max(leaf_size_for(complexity, leaf_cost), math.ceil(n_items / max_leaves), 1)

    if type == "recursive":
        nodes = _plan_recursive(n_items, size, fanout, max_depth)
    elif type == "parallel":
        nodes = _plan_parallel(n_items, size, max_depth)
    elif type == "sequential":
        nodes = _plan_sequential(n_items, size, max_depth)
    else:
        raise InvalidInput(f"unknown task type {type!r}", field="type")
    return Plan(type, tuple(nodes), n_items, size, fanout, max_depth)


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[PlanNode] = []
        self.parents: dict[int, int] = {}

    def add(
        self, kind: NodeKind, start: int, end: int, depth: int, children: tuple[int, ...] = ()
    ) -> int:
        index = len(self.nodes)
        self.nodes.append(PlanNode(index, kind, start, end, depth, children))
        for child in children:
            self.parents[child] = index
        return index

    def done(self) -> list[PlanNode]:
        return [
            PlanNode(
                n.index, n.kind, n.start, n.end, n.depth, n.children, self.parents.get(n.index)
            )
            for n in self.nodes
        ]


def _plan_recursive(n: int, size: int, fanout: int, max_depth: int) -> list[PlanNode]:
    b = _Builder()

    def build(start: int, end: int, depth: int) -> int:
        count = end - start
        if count <= size or depth >= max_depth:
            return b.add("leaf", start, end, depth)
        # Children of near-equal size, never more than there are leaf-sized pieces.
        k = min(fanout, math.ceil(count / size))
        bounds = [start + (count * i) // k for i in range(k + 1)]
        children = tuple(build(bounds[i], bounds[i + 1], depth + 1) for i in range(k))
        return b.add("combine", start, end, depth, children)

    build(0, n, 0)
    return b.done()


def _plan_parallel(n: int, size: int, max_depth: int) -> list[PlanNode]:
    b = _Builder()
    chunks = _chunks(n, size)
    if len(chunks) == 1 or max_depth == 0:
        b.add("leaf", 0, n, 0)
        return b.done()
    leaves = tuple(b.add("leaf", s, e, 1) for s, e in chunks)
    b.add("combine", 0, n, 0, leaves)
    return b.done()


def _plan_sequential(n: int, size: int, max_depth: int) -> list[PlanNode]:
    b = _Builder()
    chunks = _chunks(n, size)
    if len(chunks) == 1 or max_depth == 0:
        b.add("leaf", 0, n, 0)
        return b.done()
    previous = b.add("leaf", *chunks[0], 1)
    for s, e in chunks[1:]:
        previous = b.add("fold", s, e, 1, (previous,))
    return b.done()

"""Running a plan's agent calls: the one definition of what each call computes.

The Ray runtime and the in-process reference executor both call :func:`run_call`, so the
distributed tree computes exactly what :func:`run_plan_locally` computes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rlm.errors import InternalError, RLMError
from rlm.incidents import log_incident
from rlm.inputs import Items, PreparedInput, slice_items
from rlm.jsonable import to_jsonable
from rlm.lm.steps import LMSteps
from rlm.operations.base import Operation
from rlm.operations.lm import LLMOperation
from rlm.planning import NodeKind, Plan

__all__ = ["call_steps", "execute_direct", "finish_output", "run_call", "run_plan_locally"]

log = logging.getLogger(__name__)


def run_call(
    op: Operation,
    kind: NodeKind,
    items: Items | None,
    start: int,
    end: int,
    child_partials: Sequence[Any],
    params: Any,
) -> Any:
    """One agent call.

    Args:
        op: The operation.
        kind: ``leaf``, ``combine`` or ``fold``.
        items: The whole input (sliced here, as a view for arrays); unused by ``combine``.
        start: First item of the call's range.
        end: One past the last item.
        child_partials: Partials of the node's children, in order.
        params: The operation's parsed parameters.

    Returns:
        The node's partial.
    """
    if kind == "leaf":
        assert items is not None
        return op.leaf_at(slice_items(items, start, end), start, params)
    if kind == "combine":
        return op.combine(list(child_partials), params)
    assert items is not None
    return op.fold_at(child_partials[0], slice_items(items, start, end), start, params)


def finish_output(op: Operation, partial: Any, params: Any, *, task_id: str = "") -> Any:
    """The task's output: ``op.finish(partial)`` made JSON-ready, its failures made safe to show.

    A user's ``finish`` is arbitrary code, and the text of what it raises may carry anything
    (paths, data, credentials): a client sees a generic message naming the operation and an
    incident id, and the exception itself goes to the log under that id. An
    :class:`~rlm.errors.RLMError` is raised as it is: it is the operation's deliberate answer
    (a built-in ``mean`` of nothing is ``INVALID_INPUT``).

    Args:
        op: The operation.
        partial: The root's partial.
        params: The operation's parsed parameters.
        task_id: For the log line.

    Returns:
        The output, JSON-ready.

    Raises:
        RLMError: the operation's own error, or ``INTERNAL_ERROR`` with
            ``details = {"operation", "incident"}`` for anything else.
    """
    try:
        return to_jsonable(op.finish(partial, params))
    except RLMError:
        raise
    except Exception as err:
        incident = log_incident(
            log, f"operation {op.name!r} failed to finish its output", err, task_id=task_id
        )
        raise InternalError(
            f"operation {op.name!r} failed to finish its output (incident {incident})",
            {"operation": op.name, "incident": incident},
        ) from None


def call_steps(
    op: Operation,
    kind: NodeKind,
    items: Items | None,
    start: int,
    end: int,
    child_partials: Sequence[Any],
    params: Any,
) -> LMSteps[Any] | None:
    """One agent call of an LM operation as steps (:mod:`rlm.lm.steps`), to be driven by
    the caller: the same work as :func:`run_call`. ``None`` for other operations."""
    if not isinstance(op, LLMOperation):
        return None
    if kind == "leaf":
        assert items is not None
        return op.leaf_steps(slice_items(items, start, end), params)
    if kind == "combine":
        return op.combine_steps(list(child_partials), params)
    assert items is not None
    return op.fold_steps(child_partials[0], slice_items(items, start, end), params)


def run_plan_locally(plan: Plan, prepared: PreparedInput) -> Any:
    """Run every call of ``plan`` in this process, in dependency order; return the output."""
    partials: list[Any] = [None] * len(plan.nodes)
    for node in plan.nodes:
        partials[node.index] = run_call(
            prepared.operation,
            node.kind,
            prepared.items,
            node.start,
            node.end,
            [partials[c] for c in node.children],
            prepared.params,
        )
    return prepared.operation.finish(partials[plan.root.index], prepared.params)


def execute_direct(prepared: PreparedInput) -> Any:
    """The output with no decomposition at all: one leaf over every item, then finish."""
    op = prepared.operation
    return op.finish(op.leaf_at(prepared.items, 0, prepared.params), prepared.params)

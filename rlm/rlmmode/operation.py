"""The ``rlm`` operation: what a task spec carries for an RLM task.

An RLM task is not a monoid over items: its root model decides, turn by turn, how to cut the
work. The engine starts it as one *session* on a session host (``runs_in_session``) instead of
planning agent calls; admission, leases, quota holds, budgets, timeout, cancel and records are
the same as for every task. The session's output is the root's answer (a string), which
:meth:`RLMOperation.finish` passes through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rlm.errors import InternalError
from rlm.operations.base import Chunk, Operation
from rlm.rlmmode.request import RLM_OPERATION

__all__ = ["RLMOperation"]


class RLMOperation(Operation):
    """Marks a task as an RLM session; never run as leaves and combines."""

    name: ClassVar[str] = RLM_OPERATION
    input_kind = "any"
    uses_lm: ClassVar[bool] = True
    runs_in_session: ClassVar[bool] = True
    description: ClassVar[str] = (
        "recursive language model: a root model answers input.query by driving a sandboxed "
        "Python REPL that holds input.context (or input.source) and calls sub-models"
    )

    def leaf(self, chunk: Chunk, params: Any) -> Any:
        raise InternalError("an RLM task runs as a session, not as agent calls")

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        raise InternalError("an RLM task runs as a session, not as agent calls")

    def finish(self, partial: Any, params: Any) -> Any:
        return partial

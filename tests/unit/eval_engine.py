"""An in-process stand-in for ``hv.execute``: the evaluation's modes without Ray.

It validates a request as the engine does (``parse_model``, ``prepare_input`` against the
built-in registry, so an ``rlm`` request is refused as today's engine refuses it), plans it,
and runs the plan in this process (:func:`rlm.execution.run_plan_locally`) with a
:class:`~rlm.lm.handle.FunctionLM` answering each LM request with ``reply(prompt)``. Usage is
counted with the fake server's token rule.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from rlm.execution import run_plan_locally
from rlm.inputs import prepare_input
from rlm.lm.calls import LMRequest
from rlm.lm.handle import FunctionLM, lm_scope
from rlm.models.base import parse_model
from rlm.models.tasks import ErrorInfo, ExecuteRequest, ExecuteResponse, Usage
from rlm.operations.registry import default_registry
from rlm.planning import plan_task
from rlm.testing.tokens import count_prompt_tokens, count_tokens

__all__ = ["LocalEngine"]


class LocalEngine:
    """``execute(request) -> ExecuteResponse`` in this process.

    Args:
        reply: Answers each LM request's last message.
        fail_with: When set, every task "fails" with this message instead of running.
    """

    def __init__(self, reply: Callable[[str], str], fail_with: str | None = None) -> None:
        self._reply = reply
        self.fail_with = fail_with
        self.registry = default_registry()
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def _answer(self, request: LMRequest) -> str:
        return self._reply(request.messages[-1]["content"])

    def execute(self, request: Mapping[str, Any]) -> ExecuteResponse:
        self.requests.append(dict(request))
        req = parse_model(ExecuteRequest, request)
        prepared = prepare_input(req.input, self.registry)
        task_id = f"local-{next(self._ids)}"
        if self.fail_with is not None:
            return ExecuteResponse(
                task_id=task_id,
                status="failed",
                execution_time_ms=0.0,
                agent_calls=0,
                decomposition_depth=0,
                success=False,
                error=ErrorInfo(code="INTERNAL_ERROR", message=self.fail_with),
            )
        plan = plan_task(req.type, prepared.n_items, leaf_size=req.options.leaf_size or 40)
        lm = FunctionLM(self._answer)
        with lm_scope(lm):
            output = run_plan_locally(plan, prepared)
        replies = [self._answer(r) for r in lm.requests]
        usage = Usage(
            lm_calls=len(lm.requests),
            input_tokens=sum(count_prompt_tokens(r.messages) for r in lm.requests),
            output_tokens=sum(count_tokens(text) for text in replies),
            cost_usd=0.001 * len(lm.requests),
        )
        return ExecuteResponse(
            task_id=task_id,
            status="completed",
            output=output,
            execution_time_ms=0.0,
            agent_calls=plan.agent_calls,
            decomposition_depth=plan.depth,
            success=True,
            usage=usage,
        )

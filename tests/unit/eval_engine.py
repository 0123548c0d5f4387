"""An in-process stand-in for ``hv.execute``: the evaluation's modes without Ray.

It validates a request as the engine does (``parse_model``, then ``prepare_input`` against
the built-in registry, or :func:`~rlm.rlmmode.request.parse_rlm_input` for an ``rlm`` task),
and runs it in this process: an operation's plan through
:func:`rlm.execution.run_plan_locally` with a :class:`~rlm.lm.handle.FunctionLM` answering each
LM request with ``reply(prompt)``; an ``rlm`` task as a real
:class:`~rlm.rlmmode.session.SessionTree` (confined sandboxes, started per RLM), its LM
requests answered by ``respond(ChatRequest)`` (the whole conversation: a root needs it) or,
without one, by ``reply(last message)``. Usage is counted with the fake server's token rule.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rlm.errors import RLMError
from rlm.execution import run_plan_locally
from rlm.inputs import prepare_input
from rlm.lm.calls import LMRequest
from rlm.lm.handle import FunctionLM, lm_scope
from rlm.models.base import parse_model
from rlm.models.tasks import ErrorInfo, ExecuteRequest, ExecuteResponse, Usage
from rlm.operations.registry import default_registry
from rlm.planning import plan_task
from rlm.rlmmode.loop import Completion
from rlm.rlmmode.request import is_rlm_input, parse_rlm_input
from rlm.rlmmode.session import LMOutcome, SessionTree
from rlm.rlmmode.settings import RLMSettings
from rlm.sandbox import Sandbox
from rlm.sandbox.host import HostCall
from rlm.testing.responders import ChatRequest, Responder
from rlm.testing.tokens import count_prompt_tokens, count_tokens

__all__ = ["LocalEngine"]


class _ResponderLM:
    """An RLM tree's LM port: every request answered at once by a responder, counted."""

    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self._lock = threading.Lock()
        self.requests: list[LMRequest] = []
        self.input_tokens = self.output_tokens = 0

    def complete(
        self, requests: Sequence[LMRequest], *, extra: bool, timeout_s: float | None = None
    ) -> list[LMOutcome]:
        outcomes = []
        for request in requests:
            messages = [dict(m) for m in request.messages]
            text = self._respond(
                ChatRequest(model=request.model or "fake-model", messages=messages)
            )
            completion = Completion(text, count_prompt_tokens(messages), count_tokens(text))
            with self._lock:
                self.requests.append(request)
                self.input_tokens += completion.input_tokens
                self.output_tokens += completion.output_tokens
            outcomes.append(LMOutcome(completion))
        return outcomes


class _FreshSandboxes:
    """A sandbox started for each RLM (the tree closes it after)."""

    def take(self, on_call: HostCall) -> Sandbox:
        return Sandbox(on_call)


class LocalEngine:
    """``execute(request) -> ExecuteResponse`` in this process.

    Args:
        reply: Answers each LM request's last message.
        fail_with: When set, every task "fails" with this message instead of running.
        respond: Answers an ``rlm`` task's LM requests from the whole conversation (default:
            ``reply`` of the last user message).
    """

    def __init__(
        self,
        reply: Callable[[str], str],
        fail_with: str | None = None,
        respond: Responder | None = None,
    ) -> None:
        self._reply = reply
        self.fail_with = fail_with
        self._respond = respond or (lambda request: reply(request.last_user_message))
        self.registry = default_registry()
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def _answer(self, request: LMRequest) -> str:
        return self._reply(request.messages[-1]["content"])

    def execute(self, request: Mapping[str, Any]) -> ExecuteResponse:
        self.requests.append(dict(request))
        req = parse_model(ExecuteRequest, request)
        task_id = f"local-{next(self._ids)}"
        if is_rlm_input(req.input):
            parsed = parse_rlm_input(req.input, req.options, RLMSettings())
        else:
            prepared = prepare_input(req.input, self.registry)
        if self.fail_with is not None:
            return self._failed(task_id, ErrorInfo(code="INTERNAL_ERROR", message=self.fail_with))
        if is_rlm_input(req.input):
            return self._run_rlm(task_id, parsed.params, parsed.context)
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

    def _failed(self, task_id: str, error: ErrorInfo) -> ExecuteResponse:
        return ExecuteResponse(
            task_id=task_id,
            status="failed",
            execution_time_ms=0.0,
            agent_calls=0,
            decomposition_depth=0,
            success=False,
            error=error,
        )

    def _run_rlm(self, task_id: str, params: Any, context: Any) -> ExecuteResponse:
        params = dataclasses.replace(
            params,
            model=params.model or "fake-model",
            sub_model=params.sub_model or params.model or "fake-model",
        )
        lm = _ResponderLM(self._respond)
        tree = SessionTree(params, lm, _FreshSandboxes(), cell_timeout_s=60, cell_cpu_s=60)
        try:
            result = tree.run(context)
        except RLMError as err:
            return self._failed(task_id, ErrorInfo(code=err.code, message=err.message))
        calls = len(lm.requests)
        usage = Usage(
            lm_calls=calls,
            input_tokens=lm.input_tokens,
            output_tokens=lm.output_tokens,
            cost_usd=0.001 * calls,
        )
        return ExecuteResponse(
            task_id=task_id,
            status="completed",
            output=result.answer,
            execution_time_ms=0.0,
            agent_calls=calls,
            decomposition_depth=result.depth,
            success=True,
            usage=usage,
        )

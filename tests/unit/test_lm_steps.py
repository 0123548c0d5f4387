"""LM steps: one call's LM work, run by the blocking driver or the async one (no Ray).

The engine's in-process agent drives the built-in LM operations' steps on its event loop
(:func:`rlm.execution.call_steps` + :func:`rlm.lm.steps.run_steps_async`); everywhere else
``leaf``/``combine``/``fold`` drive the same steps with a blocking handle. Both must send the
same requests and compute the same partials, for every kind of call and every tree shape.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from rlm.errors import QuotaExceeded
from rlm.execution import call_steps, run_plan_locally
from rlm.inputs import PreparedInput, prepare_input
from rlm.lm.calls import LMRequest
from rlm.lm.handle import FunctionLM, lm_scope
from rlm.lm.steps import LMSteps, run_steps, run_steps_async
from rlm.operations import default_registry
from rlm.planning import Plan, plan_task
from rlm.testing.oracle import classify_oracle

REGISTRY = default_registry()
LABELS = ["spam", "ham", "eggs"]


def _label(text: str) -> str:
    return LABELS[int(hashlib.sha256(text.encode()).hexdigest(), 16) % len(LABELS)]


def _model() -> Callable[[LMRequest], str]:
    """A deterministic model: classify prompts get labels, but every third request of the run
    is answered with noise (so ``llm_classify`` asks again); others get a digest."""
    oracle = classify_oracle(_label)
    asked = [0]

    def reply(request: LMRequest) -> str:
        asked[0] += 1
        prompt = str(request.messages[-1]["content"])
        if "\nLines:\n" in prompt:
            return "no idea" if asked[0] % 3 == 0 else oracle(prompt)
        return f"[{hashlib.sha256(prompt.encode()).hexdigest()[:8]}]"

    return reply


async def _run_async(plan: Plan, prepared: PreparedInput, lm: FunctionLM) -> Any:
    """``run_plan_locally`` with every call's steps driven by the async driver."""

    async def complete(request: LMRequest) -> str:
        await asyncio.sleep(0)  # a real await between request and reply
        return lm.complete(request)

    partials: list[Any] = [None] * len(plan.nodes)
    for node in plan.nodes:
        steps = call_steps(
            prepared.operation,
            node.kind,
            prepared.items,
            node.start,
            node.end,
            [partials[c] for c in node.children],
            prepared.params,
        )
        assert steps is not None
        partials[node.index] = await run_steps_async(steps, complete)
    return prepared.operation.finish(partials[plan.root.index], prepared.params)


CASES = [
    ("llm_map", {"prompt": "Q {chunk}"}),
    ("llm_classify", {"labels": LABELS}),
    ("llm_summarize", {}),
]


@pytest.mark.parametrize(("name", "params"), CASES)
@pytest.mark.parametrize("shape", ["recursive", "parallel", "sequential"])
def test_both_drivers_send_the_same_requests_and_compute_the_same_output(
    name: str, params: dict[str, Any], shape: str
) -> None:
    items = [f"line {i} {'x' * (i % 4)}" for i in range(23)]
    prepared = prepare_input({"items": items, "operation": name, "params": params}, REGISTRY)
    plan = plan_task(shape, len(items), leaf_size=3, fanout=3, max_depth=4)
    blocking, stepped = FunctionLM(_model()), FunctionLM(_model())
    with lm_scope(blocking):
        want = run_plan_locally(plan, prepared)
    got = asyncio.run(_run_async(plan, prepared, stepped))
    assert got == want
    assert [r.messages for r in stepped.requests] == [r.messages for r in blocking.requests]
    assert [r.purpose for r in stepped.requests] == [r.purpose for r in blocking.requests]
    if name == "llm_classify":
        assert "retry" in {r.purpose for r in blocking.requests}  # the second-try path ran
    if name == "llm_summarize" and shape != "parallel":
        assert {r.purpose for r in blocking.requests} & {"combine", "fold"}


def test_a_call_that_needs_no_model_asks_nothing() -> None:
    prepared = prepare_input(
        {"items": ["a"], "operation": "llm_map", "params": {"prompt": "{chunk}"}}, REGISTRY
    )
    steps = call_steps(prepared.operation, "combine", None, 0, 0, [["x"], ["y", "z"]], {})

    def refuse(request: LMRequest) -> str:
        raise AssertionError("a combine of llm_map asked the model")

    assert steps is not None
    assert run_steps(steps, FunctionLM(refuse)) == ["x", "y", "z"]


def test_a_refused_request_ends_the_steps_with_the_refusal() -> None:
    closed: list[bool] = []

    def steps() -> LMSteps[str]:
        try:
            first = yield LMRequest.chat("one")
            second = yield LMRequest.chat(first)
            return second
        finally:
            closed.append(True)

    def refuse_second(request: LMRequest) -> str:
        if request.messages[-1]["content"] != "one":
            raise QuotaExceeded("the budget is spent", {"resource": "budget"})
        return "two"

    async def refuse_async(request: LMRequest) -> str:
        return refuse_second(request)

    with pytest.raises(QuotaExceeded):
        run_steps(steps(), FunctionLM(refuse_second))
    with pytest.raises(QuotaExceeded):
        asyncio.run(run_steps_async(steps(), refuse_async))
    assert closed == [True, True]  # neither driver left a generator suspended


def test_other_operations_have_no_steps() -> None:
    prepared = prepare_input({"items": [1, 2], "operation": "sum", "params": {}}, REGISTRY)
    assert call_steps(prepared.operation, "leaf", prepared.items, 0, 2, [], {}) is None

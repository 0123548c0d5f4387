"""The modes' requests and runs, on an in-process engine answered by the OOLONG oracle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from rlm.errors import InvalidInput
from rlm.eval.modes import (
    MODES,
    ModeConfig,
    direct_request,
    map_reduce_request,
    rlm_request,
    run_mode,
    scoped_instances,
)
from rlm.eval.run import EvalPlan, plan_oolong, run_oolong, run_plan
from rlm.eval.score import score_reply
from rlm.models.base import parse_model
from rlm.models.tasks import ExecuteRequest, ExecuteResponse
from rlm.operations.lm import LLMMap
from rlm.rlmmode.request import parse_rlm_input
from rlm.rlmmode.settings import RLMSettings
from rlm.testing.oolong_oracle import oolong_oracle, oolong_responder
from tests.unit.eval_data import gold_labels, instances
from tests.unit.eval_engine import LocalEngine


@pytest.fixture(scope="module")
def plan() -> EvalPlan:
    return plan_oolong(instances(), questions=16, window_tokens=3000, seed=11)


def test_the_direct_prompt_is_the_window_then_the_question(plan: EvalPlan) -> None:
    window, question = plan.windows[0], plan.questions[3]
    request = direct_request(window, question, ModeConfig(model="m", max_tokens=64))
    task_input = request["input"]
    assert request["options"]["leafSize"] == len(window.lines)
    assert task_input["params"]["model"] == "m" and task_input["params"]["maxTokens"] == 64
    op = LLMMap()
    params = op.parse_params(task_input["params"])
    sent = params.prompt.replace("{chunk}", "\n".join(task_input["items"]))
    assert sent == f"Here is the data:\n\n{window.text}\n\n{question.prompt}"


def test_map_reduce_classifies_only_the_lines_in_scope(plan: EvalPlan) -> None:
    window = plan.windows[0]
    by_kind = {q.kind: q for q in plan.questions if q.window == 0}
    user_q = by_kind["user_count"]
    items = scoped_instances(window.text, user_q)
    assert items == [ln.text for ln in window.lines if ln.user == user_q.spec.scope.user]
    assert 0 < len(items) < len(window.lines)
    assert scoped_instances(window.text, by_kind["count"]) == [ln.text for ln in window.lines]
    request = map_reduce_request(items, user_q, ModeConfig(provider="p"))
    assert request["input"]["operation"] == "llm_classify"
    assert request["input"]["params"]["labels"] == list(user_q.spec.labels)
    assert request["input"]["params"]["provider"] == "p"
    assert request["options"] == {"memo": False, "timeoutMs": 600_000}


def test_the_rlm_request_has_the_window_as_context_and_the_question_as_query(
    plan: EvalPlan,
) -> None:
    window, question = plan.windows[1], plan.questions[9]
    config = ModeConfig(model="root", sub_model="sub", max_iterations=8, max_depth=2)
    request = rlm_request(window, question, config)
    assert request["type"] == "recursive"
    assert request["input"] == {
        "operation": "rlm",
        "context": window.text,
        "query": question.prompt,
    }
    assert request["options"] == {
        "memo": False,
        "timeoutMs": 600_000,
        "model": "root",
        "subModel": "sub",
        "maxIterations": 8,
        "maxDepth": 2,
    }
    # The engine's own parser takes it as it is, every option where the session reads it.
    body = parse_model(ExecuteRequest, request)
    parsed = parse_rlm_input(body.input, body.options, RLMSettings())
    assert parsed.context == window.text and parsed.params.query == question.prompt
    assert (parsed.params.model, parsed.params.sub_model) == ("root", "sub")
    assert (parsed.params.max_iterations, parsed.params.max_depth) == (8, 2)
    defaults = rlm_request(window, question, ModeConfig())["options"]
    assert defaults == {"memo": False, "timeoutMs": 600_000}


def test_the_rlm_mode_takes_no_provider(plan: EvalPlan) -> None:
    engine = LocalEngine(oolong_oracle(gold_labels()))
    with pytest.raises(InvalidInput, match="mode 'rlm' takes no provider") as err:
        run_plan(engine, plan, modes=["direct", "rlm"], config=ModeConfig(provider="p"))
    assert err.value.details["field"] == "provider"
    assert engine.requests == []  # refused before any task ran
    with pytest.raises(InvalidInput, match="takes no provider"):
        rlm_request(plan.windows[0], plan.questions[0], ModeConfig(provider="p"))


@pytest.mark.parametrize("mode", ["direct", "map-reduce"])
def test_with_the_oracle_every_question_scores_one(plan: EvalPlan, mode: str) -> None:
    engine = LocalEngine(oolong_oracle(gold_labels()))
    for question in plan.questions:
        window = plan.windows[question.window]
        run = run_mode(mode, engine, window, question, ModeConfig())
        assert run.status == "completed"
        assert score_reply(run.reply, question.gold) == 1.0, (question.id, run.reply)
        assert run.lm_calls >= 1 and run.input_tokens > 0 and run.latency_ms >= 0
    sent = [r["input"]["operation"] for r in engine.requests]
    assert set(sent) == {"llm_map" if mode == "direct" else "llm_classify"}


def test_a_wrong_model_scores_below_one(plan: EvalPlan) -> None:
    engine = LocalEngine(lambda prompt: "\n".join(f"{i}: entity" for i in range(1, 400)))
    report = run_plan(engine, plan, modes=["map-reduce"])
    assert report.summary("map-reduce").accuracy < 1.0


def test_a_failed_task_is_a_scored_zero_not_an_error(plan: EvalPlan) -> None:
    engine = LocalEngine(oolong_oracle(gold_labels()), fail_with="provider down")
    report = run_plan(engine, plan, modes=["direct", "map-reduce"])
    for mode in ("direct", "map-reduce"):
        summary = report.summary(mode)
        assert (summary.accuracy, summary.errors) == (0.0, 16)
    assert report.results[0].run.error == "provider down"


def test_the_rlm_mode_scores_one_with_the_oracle_root_in_real_sandboxes(plan: EvalPlan) -> None:
    labels = gold_labels()
    engine = LocalEngine(oolong_oracle(labels), respond=oolong_responder(labels))
    questions = [q for q in plan.questions if q.window == 0]
    assert len({q.kind for q in questions}) == 8
    for question in questions:
        run = run_mode("rlm", engine, plan.windows[0], question, ModeConfig())
        assert run.status == "completed", run.error
        assert score_reply(run.reply, question.gold) == 1.0, (question.id, run.reply)
        # The root's one turn, then its sub-calls (the block answers on turn 1).
        assert run.agent_calls == run.lm_calls >= 2
    assert {r["input"]["operation"] for r in engine.requests} == {"rlm"}


def test_other_refusals_pass_through(plan: EvalPlan) -> None:
    class Refusing:
        def execute(self, request: Mapping[str, Any]) -> ExecuteResponse:
            raise InvalidInput("no LM provider is configured", field="input.params.provider")

    with pytest.raises(InvalidInput, match="no LM provider"):
        run_plan(Refusing(), plan, modes=["rlm"])


def test_run_oolong_draws_its_plan_and_reports_every_mode() -> None:
    engine = LocalEngine(oolong_oracle(gold_labels()))
    seen: list[tuple[int, int]] = []
    report = run_oolong(
        engine,
        data=instances(),
        modes=["map-reduce", "direct"],
        questions=4,
        window_tokens=1000,
        progress=lambda done, total, result: seen.append((done, total)),
    )
    assert seen == [(i, 8) for i in range(1, 9)]
    assert [s.mode for s in report.summaries()] == ["map-reduce", "direct"]
    assert all(s.accuracy == 1.0 for s in report.summaries())
    assert report.to_json()["config"]["questions"] == 4
    with pytest.raises(InvalidInput, match="unknown mode"):
        run_oolong(engine, data=instances(), modes=["telepathy"])
    with pytest.raises(InvalidInput, match="twice"):
        run_oolong(engine, data=instances(), modes=["direct", "direct"])
    assert MODES == ("rlm", "direct", "map-reduce")

"""The OOLONG oracle: classify and direct prompts, and the RLM root's code run in a real sandbox.

The root oracle is tested without the engine: its reply's ```repl``` block runs in
:class:`rlm.sandbox.Sandbox` (a confined child process; the tests run as root, as the service
does) over a real window, its ``llm_query_batched`` sub-calls answered by the oracle, and the
``answer`` it sets must score 1 on every question kind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

import rlm
from rlm.eval.modes import direct_prompt
from rlm.eval.questions import KINDS, Question
from rlm.eval.run import EvalPlan, plan_oolong
from rlm.eval.score import score_reply
from rlm.operations.lm import classify_prompt
from rlm.rlmmode import (
    answer_from_dict,
    context_metadata,
    extract_code_blocks,
    final_turn_prompt,
    system_prompt,
    turn_prompt,
)
from rlm.sandbox import Sandbox
from rlm.testing import ChatRequest
from rlm.testing.oolong_oracle import (
    ANSWER_MARK,
    UNANSWERABLE,
    oolong_oracle,
    oolong_responder,
    root_reply,
)
from tests.shared_data import shared_file
from tests.unit.eval_data import TREC, gold_labels, instances, labels

ORACLE = oolong_oracle(gold_labels())


@pytest.fixture(scope="module")
def plan() -> EvalPlan:
    # Two windows, every kind asked of each: 6,000 tokens is about 250 lines, 7 sub-calls.
    return plan_oolong(instances(), questions=16, window_tokens=6000, seed=4)


class SubCalls:
    """The sandbox's host calls, answered by the oracle and recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, kind: str, prompts: list[str], model: str | None) -> list[str]:
        self.calls.append((kind, len(prompts)))
        return [ORACLE(p) for p in prompts]


@pytest.fixture(scope="module")
def sub_calls() -> SubCalls:
    return SubCalls()


@pytest.fixture(scope="module")
def box(sub_calls: SubCalls) -> Iterator[Sandbox]:
    sandbox = Sandbox(sub_calls)
    yield sandbox
    sandbox.close()


def _root_answer(box: Sandbox, window_text: str, question: Question) -> tuple[str | None, str]:
    """Run the oracle root's turn-1 reply as the session would; the answer and the output."""
    prompt = turn_prompt(question.prompt, context_metadata(window_text), 1, 30)
    blocks = extract_code_blocks(ORACLE(prompt))
    assert len(blocks) == 1
    box.set_context(window_text)
    assert box.run('answer = {"content": "", "ready": False}').error is None
    cell = box.run(blocks[0])
    assert cell.error is None, cell.error
    shown = box.run("import json\nprint(json.dumps(answer))")
    return answer_from_dict(json.loads(shown.stdout)), cell.stdout


def test_the_root_oracle_answers_every_kind_from_the_sandbox(
    plan: EvalPlan, box: Sandbox, sub_calls: SubCalls
) -> None:
    assert {q.kind for q in plan.questions} == set(KINDS)
    for question in plan.questions:
        window = plan.windows[question.window]
        before = len(sub_calls.calls)
        answer, output = _root_answer(box, window.text, question)
        assert answer is not None, question.id
        assert score_reply(answer, question.gold) == 1.0, (question.id, answer, question.gold)
        assert f"{ANSWER_MARK} {answer}" in output
        made = sub_calls.calls[before:]
        assert made and {kind for kind, _ in made} == {"llm_query_batched"}
        if question.spec.scope.kind == "all":
            assert sum(n for _, n in made) == -(-len(window.lines) // 40)


def test_the_root_oracle_reads_a_list_context_too(plan: EvalPlan, box: Sandbox) -> None:
    window, question = plan.windows[0], plan.questions[0]
    prompt = turn_prompt(question.prompt, context_metadata(window.rendered_lines), 1, 30)
    box.set_context(window.rendered_lines)
    # Each cell's error is checked and shown: a cell that fails (a limit under load) names
    # itself instead of leaving an empty stdout for json.loads to trip on.
    for code in (
        'answer = {"content": "", "ready": False}',
        extract_code_blocks(ORACLE(prompt))[0],
    ):
        cell = box.run(code)
        assert cell.error is None, (cell.error, cell.stderr)
    shown = box.run("import json\nprint(json.dumps(answer))")
    assert shown.error is None and shown.stdout, (shown.error, shown.stderr)
    answer = answer_from_dict(json.loads(shown.stdout))
    assert score_reply(answer, question.gold) == 1.0


def test_a_wrong_sub_model_makes_the_root_answer_wrong(plan: EvalPlan) -> None:
    question = next(q for q in plan.questions if q.kind == "count" and q.gold)
    window = plan.windows[question.window]

    def liar(kind: str, prompts: list[str], model: str | None) -> list[str]:
        return ["Error: the provider is down"] * len(prompts)

    with Sandbox(liar) as lying_box:
        answer, _ = _root_answer(lying_box, window.text, question)
    assert answer == "Answer: 0"
    assert score_reply(answer, question.gold) < 1.0


@pytest.mark.parametrize("index", range(8))
def test_direct_prompts_are_answered_from_the_lines_in_them(plan: EvalPlan, index: int) -> None:
    question = plan.questions[index]
    window = plan.windows[question.window]
    prompt = direct_prompt(question).replace("{chunk}", window.text)
    reply = ORACLE(prompt)
    assert reply == question.spec.format_answer(question.gold)
    assert score_reply(reply, question.gold) == 1.0


def test_classify_prompts_are_labelled_from_the_data(plan: EvalPlan) -> None:
    window = plan.windows[0]
    texts = [line.text for line in window.lines[:10]]
    reply = ORACLE(classify_prompt(texts, labels(), "Classify."))
    assert reply.splitlines() == [
        f"{i}: {line.label}" for i, line in enumerate(window.lines[:10], 1)
    ]
    whole_lines = ORACLE(classify_prompt(window.rendered_lines[:3], labels(), "Classify."))
    assert whole_lines.splitlines() == [
        f"{i}: {line.label}" for i, line in enumerate(window.lines[:3], 1)
    ]
    assert ORACLE("What is the weather like ?") == UNANSWERABLE


def _conversation(*user: str, system: bool = True) -> ChatRequest:
    messages = [{"role": "system", "content": system_prompt(1, False)}] if system else []
    for i, text in enumerate(user):
        if i:
            messages.append({"role": "assistant", "content": "..."})
        messages.append({"role": "user", "content": text})
    return ChatRequest(model="fake-model", messages=messages)


def test_the_responder_repeats_the_block_every_turn_and_answers_the_last_call(
    plan: EvalPlan,
) -> None:
    respond = oolong_responder(gold_labels())
    question = plan.questions[4]
    window = plan.windows[question.window]
    first = turn_prompt(question.prompt, context_metadata(window.text), 1, 3)
    expected = root_reply(question.spec)
    assert respond(_conversation(first)) == expected
    later = turn_prompt(question.prompt, context_metadata(window.text), 2, 3, "REPL output:\n1")
    assert respond(_conversation(first, later)) == expected
    printed = f"REPL output:\n{ANSWER_MARK} Answer: 7\n"
    assert respond(_conversation(first, later, final_turn_prompt(printed))) == "Answer: 7"
    assert respond(_conversation(first, final_turn_prompt())) == UNANSWERABLE
    # A sub-call is a lone user message: answered as a classify prompt.
    sub = classify_prompt([window.lines[0].text], labels(), "Classify.")
    assert respond(_conversation(sub, system=False)) == f"1: {window.lines[0].label}"


def test_the_fake_server_process_answers_as_the_oracle(plan: EvalPlan, tmp_path: Path) -> None:
    root = Path(rlm.__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable,
        "-m",
        "rlm.testing.openai_server",
        "--oolong-oracle",
        str(shared_file(TREC)),
    ]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err_file:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True
        )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), stderr.read_text()
        question = plan.questions[0]
        prompt = direct_prompt(question).replace("{chunk}", plan.windows[0].text)
        with OpenAI(base_url=url, api_key="test-key", max_retries=0, timeout=30) as client:
            reply = client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": prompt}]
            )
        assert reply.choices[0].message.content == question.spec.format_answer(question.gold)
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0
        if process.stdout is not None:
            process.stdout.close()

"""The turn loop of one RLM, with a scripted root model and a real sandbox (no Ray).

The root's replies are scripted; the REPL is a real confined sandbox, so the code in the
replies really runs and its output really comes back in the next prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rlm.rlmmode.loop import Completion, LoopConfig, Messages, run_loop
from rlm.sandbox import CellResult, Lookup, Sandbox

# The needle sits in the middle: the preview shows only the context's head and tail.
CONTEXT = [f"line {i}: value={i * 7}" for i in range(200)]
CONTEXT.insert(100, "needle: the-secret-word")


class Script:
    """Answers the root's turns from a list, recording every conversation it was shown."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.seen: list[Messages] = []

    def __call__(self, messages: Messages) -> Completion:
        self.seen.append([dict(m) for m in messages])
        return Completion(self.replies[len(self.seen) - 1], input_tokens=10, output_tokens=2)


class BoxRepl:
    """A sandbox as the loop's REPL."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box

    def run(self, code: str) -> CellResult:
        return self.box.run(code, 30)

    def lookup(self, name: str) -> Lookup:
        return self.box.lookup(name)


@pytest.fixture
def repl() -> Iterator[BoxRepl]:
    with Sandbox(lambda kind, prompts, model: [p.upper() for p in prompts]) as box:
        box.set_context(CONTEXT)
        yield BoxRepl(box)


def _events() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    seen: list[tuple[str, dict[str, Any]]] = []
    return seen, lambda type_, data: seen.append((type_, data))


def test_the_answer_dict_ends_the_run_and_output_feeds_the_next_turn(repl: BoxRepl) -> None:
    script = Script(
        "Let me look.\n```repl\nn = len(context)\nprint(n, context[100])\n```",
        "```repl\nanswer['content'] = context[100].split(': ')[1]\nanswer['ready'] = True\n```",
    )
    events, emit = _events()
    result = run_loop("What is the secret word?", CONTEXT, script, repl, LoopConfig(), emit)
    assert (result.answer, result.turns, result.forced) == ("the-secret-word", 2, False)
    first, second = script.seen
    # The root sees the query and the metadata, never the context itself.
    assert [m["role"] for m in first] == ["system", "user"]
    assert "What is the secret word?" in first[1]["content"]
    assert "201 items" in first[1]["content"] and first[1]["content"].endswith("Turn 1/30:")
    assert "the-secret-word" not in first[1]["content"]
    # Turn 2 opens with the cell's output and its new variable.
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[3]["content"] == (
        "REPL output:\n201 needle: the-secret-word\n\n\nREPL variables: ['n']\n\nTurn 2/30:"
    )
    assert [t for t, _ in events] == ["rlm.turn", "rlm.cell", "rlm.turn", "rlm.cell", "rlm.answer"]
    cell = events[1][1]
    assert cell["newVars"] == ["n"] and cell["stdout"] == "201 needle: the-secret-word\n"
    assert events[-1][1] == {"path": "0", "answer": "the-secret-word", "turns": 2, "forced": False}


def test_blocks_of_a_reply_run_in_order_and_the_first_ready_cell_answers(repl: BoxRepl) -> None:
    script = Script(
        "```repl\nx = 1\n```\nthen\n```repl\nx += 1\nanswer.update(content=x, ready=True)\n```\n"
        "```repl\nanswer['content'] = 'later'\nprint('still runs')\n```"
    )
    events, emit = _events()
    result = run_loop("q", CONTEXT, script, repl, LoopConfig(), emit)
    assert result.answer == "2"
    cells = [d for t, d in events if t == "rlm.cell"]
    assert [c["index"] for c in cells] == [0, 1, 2] and cells[2]["stdout"] == "still runs\n"


def test_final_var_reads_a_variable_and_a_missing_one_is_explained(repl: BoxRepl) -> None:
    script = Script(
        "```repl\ntotal = sum(range(10))\n```",
        "FINAL_VAR(totl)",
        "Sorry.\nFINAL_VAR(total)",
    )
    result = run_loop("q", CONTEXT, script, repl, LoopConfig())
    assert (result.answer, result.turns) == ("45", 3)
    told = script.seen[2][-1]["content"]
    assert "variable 'totl' not found" in told and "'total'" in told


def test_final_text_in_the_reply_answers(repl: BoxRepl) -> None:
    result = run_loop("q", CONTEXT, Script("I know.\nFINAL(forty two)"), repl, LoopConfig())
    assert (result.answer, result.turns) == ("forty two", 1)


def test_max_iterations_ends_with_one_last_call_for_the_answer(repl: BoxRepl) -> None:
    script = Script(
        "```repl\nprint('a')\n```", "No code this turn.", "It is FINAL(unwrapped)\nFINAL(the end)"
    )
    events, emit = _events()
    result = run_loop("q", CONTEXT, script, repl, LoopConfig(max_iterations=2), emit)
    assert (result.answer, result.turns, result.forced) == ("the end", 2, True)
    assert len(script.seen) == 3
    assert script.seen[1][-1]["content"] == "REPL output:\na\n\n\nTurn 2/2:"
    last = script.seen[2][-1]
    assert last["role"] == "user" and last["content"].startswith("Please provide a final answer")
    turns = [d for t, d in events if t == "rlm.turn"]
    assert [t["turn"] for t in turns] == [1, 2, 3] and turns[-1]["lastCall"] is True
    assert events[-1][1]["forced"] is True


def test_errors_are_feedback_and_host_calls_reach_the_session(repl: BoxRepl) -> None:
    script = Script(
        "```repl\nprint(llm_query('shout'))\n1 / 0\n```",
        "```repl\nanswer.update(content='ok', ready=True)\n```",
    )
    run_loop("q", CONTEXT, script, repl, LoopConfig())
    told = script.seen[1][-1]["content"]
    assert told.startswith("REPL output:\nSHOUT\n") and "ZeroDivisionError" in told


def test_a_child_rlm_sees_its_prompt_as_context_and_no_query(repl: BoxRepl) -> None:
    script = Script("FINAL(done)")
    run_loop(None, "a sub-task's text", script, repl, LoopConfig(depth=1, max_depth=2, path="0.0"))
    system, first = script.seen[0]
    assert first["content"].startswith("Your context is a str")
    assert "recursion is disabled here" in system["content"]  # depth 1 of 2: no grandchildren

"""What the root model is told: metadata, system prompt, Turn i/N, the last call."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.rlmmode.prompts import (
    context_metadata,
    final_turn_prompt,
    metadata_text,
    system_prompt,
    turn_prompt,
)

# (context, type, totalLength as the reference's QueryMetadata counts it, items)
METADATA_CASES = [
    pytest.param("hello world", "str", 11, None, id="str: its length"),
    pytest.param(["ab", "cde"], "list", 5, 2, id="list of str: sum of lengths"),
    pytest.param({"a": "xyz", "b": [1, 2]}, "dict", 9, 2, id="dict: str values, JSON others"),
    pytest.param(
        [{"role": "user", "content": "hi there"}], "list", 8, 1, id="chat messages: content"
    ),
    pytest.param([{"a": 1}, {"b": "x"}], "list", 18, 2, id="list of objects: JSON text"),
    pytest.param([], "list", 0, 0, id="empty list"),
    pytest.param({"m": {"content": "hi"}}, "dict", 17, 1, id="dict values are JSON, not content"),
]


@pytest.mark.parametrize(("context", "kind", "total", "items"), METADATA_CASES)
def test_metadata_counts_like_the_reference(
    context: object, kind: str, total: int, items: int | None
) -> None:
    meta = context_metadata(context)
    assert (meta["type"], meta["totalLength"], meta["items"]) == (kind, total, items)


def test_preview_shows_head_and_tail_of_a_long_context() -> None:
    context = "START" + "x" * 100_000 + "END"
    preview = context_metadata(context, preview_chars=50)["preview"]
    assert preview["head"] == context[:50]
    assert preview["tail"] == context[-50:]


@given(context=st.one_of(st.text(), st.lists(st.text(max_size=20), max_size=20)))
def test_preview_never_shows_more_than_half_the_context(context: str | list[str]) -> None:
    meta = context_metadata(context, preview_chars=1_000)
    # A list is previewed as its JSON text, non-ASCII characters kept as they are.
    text = context if isinstance(context, str) else json.dumps(context, ensure_ascii=False)
    shown = len(meta["preview"]["head"]) + len(meta["preview"]["tail"])
    assert shown <= len(text) // 2
    assert text.startswith(meta["preview"]["head"])
    assert text.endswith(meta["preview"]["tail"])


def test_system_prompt_teaches_the_references_protocol() -> None:
    text = system_prompt(max_depth=1, has_rlm_query=False)
    for needle in (
        "```repl```",
        "`context`",
        "llm_query(prompt: str, model: str | None = None) -> str",
        "llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]",
        "rlm_query",
        "rlm_query_batched",
        "SHOW_VARS()",
        '`{"content": "", "ready": False}`',
        'answer["ready"] = True',
        "20K characters",
        "print(...)",
    ):
        assert needle in text, needle
    assert "{" + "rlm_query_line}" not in text
    assert "FINAL(" not in text


def test_without_recursion_rlm_query_falls_back_like_the_reference() -> None:
    assert "behave as `llm_query`" in system_prompt(max_depth=1, has_rlm_query=False)
    with_children = system_prompt(max_depth=2, has_rlm_query=True)
    assert "child RLM with its own REPL" in with_children
    assert "at most 2 levels of nesting" in with_children


def test_legacy_final_is_taught_only_on_request() -> None:
    text = system_prompt(max_depth=1, has_rlm_query=False, legacy_final=True)
    assert "FINAL(your final answer)" in text
    assert "FINAL_VAR(variable_name)" in text


def test_orchestrator_advice_is_on_by_default_like_the_reference() -> None:
    assert "orchestrator, not a solver" in system_prompt(1, False)
    assert "orchestrator" not in system_prompt(1, False, orchestrator=False)


def test_negative_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        system_prompt(-1, False)


def test_first_turn_states_query_metadata_and_warns_not_to_answer_yet() -> None:
    meta = context_metadata("a" * 4_000)
    text = turn_prompt("How many a?", meta, 1, 30)
    assert text.startswith("Answer the following: How many a?")
    assert "Your context is a str of 4,000 total characters" in text
    assert "do not provide a final answer yet" in text
    assert text.endswith("Turn 1/30:")


def test_later_turns_carry_the_feedback_then_the_turn_number() -> None:
    meta = context_metadata("abc")
    assert turn_prompt("q", meta, 5, 30, "REPL output:\n3") == "REPL output:\n3\n\nTurn 5/30:"
    assert turn_prompt("q", meta, 30, 30) == "Turn 30/30:"


@pytest.mark.parametrize("turn", [0, 31])
def test_turn_outside_the_range_is_refused(turn: int) -> None:
    with pytest.raises(ValueError, match="turn"):
        turn_prompt("q", context_metadata(""), turn, 30)


def test_child_rlm_has_no_query_line() -> None:
    text = metadata_text(None, context_metadata(["x"]))
    assert not text.startswith("Answer the following")
    assert "list with 1 items" in text


def test_last_call_asks_for_the_answer_like_the_reference() -> None:
    ask = "Please provide a final answer to the user's question based on the information provided."
    assert final_turn_prompt() == ask
    assert final_turn_prompt("REPL output:\n1") == f"REPL output:\n1\n\n{ask}"

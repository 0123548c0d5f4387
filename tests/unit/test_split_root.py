"""The RLM benchmark's scripted root: the same reply for both conversation shapes, its code run
in a real sandbox, its sub-calls answered with their line counts."""

from __future__ import annotations

import pytest

from rlm.rlmmode import context_metadata, extract_code_blocks, system_prompt, turn_prompt
from rlm.sandbox import Sandbox
from rlm.testing import ChatRequest
from rlm.testing.split_root import (
    SUB_HEAD,
    UNANSWERABLE,
    split_query,
    split_root_responder,
)

CONTEXT = "\n".join(f"question {i} ?" for i in range(1000))


def _ours(parts: int) -> ChatRequest:
    """This service's turn 1: the query, the metadata and the turn in one user message."""
    first = turn_prompt(split_query(parts), context_metadata(CONTEXT), 1, 30)
    messages = [
        {"role": "system", "content": system_prompt(1, False)},
        {"role": "user", "content": first},
    ]
    return ChatRequest(model="fake-model", messages=messages)


def _reference(parts: int) -> ChatRequest:
    """``rlms``' turn 1: the query with the metadata, then the turn, as two user messages."""
    messages = [
        {"role": "system", "content": "You are a Recursive Language Model (RLM): a ..."},
        {
            "role": "user",
            "content": f"Answer the following: {split_query(parts)}\n\nYour context is a str.",
        },
        {"role": "user", "content": "You have not interacted with the REPL...\n\nTurn 1/30:"},
    ]
    return ChatRequest(model="fake-model", messages=messages)


def _sub(prompt: str) -> str:
    return split_root_responder(
        ChatRequest(model="fake-model", messages=[{"role": "user", "content": prompt}])
    )


@pytest.mark.parametrize("parts", [1, 7, 64, 256])
def test_both_conversation_shapes_get_the_same_reply_whose_code_counts_the_lines(
    parts: int,
) -> None:
    reply = split_root_responder(_ours(parts))
    assert reply == split_root_responder(_reference(parts))
    (code,) = extract_code_blocks(reply)
    batches: list[int] = []

    def on_call(kind: str, prompts: list[str], model: str | None) -> list[str]:
        assert kind == "llm_query_batched" and all(p.startswith(SUB_HEAD) for p in prompts)
        batches.append(len(prompts))
        return [_sub(p) for p in prompts]

    with Sandbox(on_call) as box:
        box.set_context(CONTEXT)
        cell = box.run(code)
    assert cell.error is None, cell.error
    size = -(-1000 // parts)
    assert batches == [-(-1000 // size)]  # K parts of whole lines (fewer when K does not divide)
    assert cell.answer == "1000"
    assert f"{batches[0]} sub-calls, 1000 lines" in cell.stdout


def test_a_list_context_is_counted_too() -> None:
    (code,) = extract_code_blocks(split_root_responder(_ours(4)))
    with Sandbox(lambda kind, prompts, model: [_sub(p) for p in prompts]) as box:
        box.set_context(CONTEXT.splitlines()[:10])
        assert box.run(code).answer == "10"


def test_sub_calls_answer_their_line_count_and_strangers_are_not_answered() -> None:
    assert _sub(SUB_HEAD + "a ?\nb ?\nc ?") == "3"
    assert _sub("What is the weather like ?") == UNANSWERABLE
    other_system = ChatRequest(
        model="m",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Answer the following: {split_query(4)}"},
        ],
    )
    assert split_root_responder(other_system) == UNANSWERABLE
    no_query = [*_ours(4).messages[:1], {"role": "user", "content": "Turn 2/30:"}]
    assert split_root_responder(ChatRequest(model="m", messages=no_query)) == UNANSWERABLE

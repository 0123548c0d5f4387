"""The answer rules: the ``answer`` dict first, then FINAL_VAR, then FINAL."""

from __future__ import annotations

import pytest

from rlm.rlmmode.answer import (
    Resolution,
    answer_from_dict,
    answer_from_last_reply,
    resolve_final,
    turn_answer,
)
from rlm.rlmmode.blocks import FinalAnswer

DICT_CASES = [
    pytest.param({"content": "", "ready": False}, None, id="initial dict: no answer"),
    pytest.param({"content": "draft", "ready": False}, None, id="content without ready"),
    pytest.param({"content": "done", "ready": True}, "done", id="ready: content returned"),
    pytest.param({"content": 42, "ready": True}, "42", id="content is str()-ed"),
    pytest.param({"content": [1, 2], "ready": 1}, "[1, 2]", id="ready is truthiness"),
    pytest.param({"ready": True}, "", id="ready with no content answers empty"),
    pytest.param({"content": "x", "ready": ""}, None, id="falsy ready"),
    pytest.param("not a dict", None, id="rebound to a non-dict"),
    pytest.param(None, None, id="deleted"),
]


@pytest.mark.parametrize(("answer", "expected"), DICT_CASES)
def test_answer_dict_rules(answer: object, expected: str | None) -> None:
    assert answer_from_dict(answer) == expected


def test_final_text_is_the_answer() -> None:
    assert resolve_final(FinalAnswer("text", "Paris"), {}) == Resolution(answer="Paris")


def test_final_var_takes_the_variables_text_stripped() -> None:
    # The reference prints the variable and strips the printed output.
    resolved = resolve_final(FinalAnswer("var", "result"), {"result": "  42\n"})
    assert resolved == Resolution(answer="42")


def test_final_var_of_unknown_name_explains_and_lists_variables() -> None:
    resolved = resolve_final(FinalAnswer("var", "reslt"), {"result": "42", "_hidden": "x"})
    assert resolved.answer is None
    assert resolved.feedback is not None
    assert "'reslt' not found" in resolved.feedback
    assert "['result']" in resolved.feedback
    assert "_hidden" not in resolved.feedback


def test_final_var_with_no_variables_says_none_exist() -> None:
    resolved = resolve_final(FinalAnswer("var", "x"), {})
    assert resolved.answer is None
    assert resolved.feedback is not None
    assert "No variables have been created yet" in resolved.feedback


def test_final_var_of_an_empty_variable_is_not_an_answer() -> None:
    # The reference ignores an empty FINAL_VAR; we say so.
    resolved = resolve_final(FinalAnswer("var", "x"), {"x": "  "})
    assert resolved.answer is None
    assert resolved.feedback is not None
    assert "empty" in resolved.feedback


def test_first_cell_that_answered_wins() -> None:
    assert turn_answer([None, "first", "second"], "FINAL(text)", {}) == Resolution("first")


def test_reply_text_answers_when_no_cell_did() -> None:
    assert turn_answer([None], "FINAL(text)", {}) == Resolution("text")
    assert turn_answer([], "FINAL_VAR(v)", {"v": "val"}) == Resolution("val")


def test_no_answer_anywhere_goes_on_silently() -> None:
    assert turn_answer([None, None], "thinking...", {"v": "1"}) == Resolution()


def test_last_reply_is_the_answer_as_it_stands() -> None:
    assert answer_from_last_reply("The answer is 7.") == "The answer is 7."


def test_last_reply_unwraps_a_final_line() -> None:
    assert answer_from_last_reply("Reasoning.\nFINAL(7)") == "7"


def test_last_reply_keeps_an_unresolvable_final_var() -> None:
    assert answer_from_last_reply("FINAL_VAR(x)") == "FINAL_VAR(x)"

"""Text operations: word_count, line_count, grep."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.execution import execute_direct, run_plan_locally
from rlm.inputs import prepare_input
from rlm.operations import default_registry
from rlm.planning import plan_task

REGISTRY = default_registry()


def run(name: str, raw: dict[str, Any]) -> Any:
    prepared = prepare_input({"operation": name, **raw}, REGISTRY)
    out = execute_direct(prepared)
    plan = plan_task("recursive", prepared.n_items, leaf_size=2, fanout=3, max_depth=8)
    assert run_plan_locally(plan, prepared) == out
    return out


def test_word_and_line_counts() -> None:
    text = "the cat\n\n  the  dog sat\nend."
    assert run("line_count", {"text": text}) == 4
    assert run("word_count", {"text": text}) == 6
    assert run("word_count", {"text": text, "params": {"by_word": True}}) == {
        "the": 2,
        "cat": 1,
        "dog": 1,
        "end.": 1,
        "sat": 1,
    }
    assert run("word_count", {"items": []}) == 0


LOG = ["INFO start", "ERROR disk full", "warn: slow", "error: retry 3", "INFO done"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"pattern": "ERROR"}, ["ERROR disk full"]),
        ({"pattern": "^error", "ignore_case": True}, ["ERROR disk full", "error: retry 3"]),
        ({"pattern": r"\d", "invert": True, "count_only": True}, 4),
        ({"pattern": "INFO", "count_only": True}, 2),
        ({"pattern": "(disk|retry) (full|\\d)$"}, ["ERROR disk full", "error: retry 3"]),
    ],
)
def test_grep(params: dict[str, Any], expected: Any) -> None:
    assert run("grep", {"items": LOG, "params": params}) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "input.params.pattern"),
        ({"pattern": "(a"}, "input.params.pattern"),
        ({"pattern": "a{5000}"}, "input.params.pattern"),
        ({"pattern": "x" * 1001}, "input.params.pattern"),
        ({"pattern": 3}, "input.params.pattern"),
        ({"pattern": "a", "ignore_case": "yes"}, "input.params.ignore_case"),
        ({"pattern": "a", "color": True}, "input.params.color"),
    ],
)
def test_grep_param_errors_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_input({"items": ["a"], "operation": "grep", "params": params}, REGISTRY)
    assert info.value.details["field"] == field


def test_grep_pattern_errors_carry_the_position() -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_input({"items": [], "operation": "grep", "params": {"pattern": "ab**"}}, REGISTRY)
    assert info.value.details["position"] == 3


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab1 .", max_size=10), max_size=20),
    pattern=st.sampled_from(["a+", r"^\d", "b$", r"a\.b", "(ab)+1", "[^ab]"]),
    invert=st.booleans(),
)
def test_grep_matches_re_on_lines(lines: list[str], pattern: str, invert: bool) -> None:
    expected = [line for line in lines if (re.search(pattern, line) is None) == invert]
    params = {"pattern": pattern, "invert": invert}
    assert run("grep", {"items": lines, "params": params}) == expected


def test_grep_over_many_lines_with_a_catastrophic_pattern() -> None:
    lines = ["a" * 200 + "b"] * 500 + ["a" * 30]
    params = {"pattern": "^(a+)+$", "count_only": True}
    assert run("grep", {"items": lines, "params": params}) == 1

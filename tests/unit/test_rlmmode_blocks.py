"""Code blocks and FINAL/FINAL_VAR, read the way the reference (``rlms``) reads them.

Each row states the reference's observable behaviour: the code it would run, the final answer
it would take. The rows were checked against ``rlms`` 0.1.3's ``find_code_blocks`` and the
``find_final_answer`` of the releases before it.
"""

from __future__ import annotations

import importlib

import pytest

import rlm.rlmmode
from rlm.rlmmode import FinalAnswer, extract_code_blocks, find_final

FENCE = "```"

BLOCK_CASES = [
    pytest.param("no code here", [], id="no block: nothing runs"),
    pytest.param(f"Look.\n{FENCE}repl\nx = 1\n{FENCE}\n", ["x = 1"], id="one block"),
    pytest.param(
        f"{FENCE}repl\na = 1\n{FENCE}\nthen\n{FENCE}repl\nb = 2\nprint(a + b)\n{FENCE}",
        ["a = 1", "b = 2\nprint(a + b)"],
        id="every block, in order",
    ),
    pytest.param(f"{FENCE}python\nx = 1\n{FENCE}", [], id="python fence is prose, not run"),
    pytest.param(f"{FENCE}\nx = 1\n{FENCE}", [], id="untagged fence is not run"),
    pytest.param(f"{FENCE}replace\nx = 1\n{FENCE}", [], id="replace is not repl"),
    pytest.param(f"{FENCE}repl x = 1\n{FENCE}", [], id="code on the opener line: no block"),
    pytest.param(f"{FENCE}repl   \n\n  x = 1\n{FENCE}", ["x = 1"], id="blank lines after opener"),
    pytest.param(
        f"{FENCE}repl\n    x = 1\n    y = 2\n{FENCE}",
        ["x = 1\n    y = 2"],
        id="stripped: the first line loses its indent only",
    ),
    pytest.param(
        f"{FENCE}repl\nif x:\n    y = 1\n{FENCE}python\nz\n{FENCE}",
        ["if x:\n    y = 1"],
        id="a python fence closes the repl block",
    ),
    pytest.param(
        f"{FENCE}repl\ns = '''\n{FENCE}\n'''\n{FENCE}",
        ["s = '''"],
        id="a fence line inside a string cuts the block short",
    ),
    pytest.param(
        f"{FENCE}repl\nx = 1\n   {FENCE}\ny = 2\n{FENCE}",
        [f"x = 1\n   {FENCE}\ny = 2"],
        id="an indented fence does not close",
    ),
    pytest.param(
        f"{FENCE}repl\n{FENCE}\nprose\n{FENCE}",
        [f"{FENCE}\nprose"],
        id="opener then closer: runs on to the next fence line",
    ),
    pytest.param(f"{FENCE}repl\nx = 1", [], id="unclosed block: nothing runs"),
    pytest.param(f"{FENCE}repl\r\nx = 1\r\n{FENCE}", ["x = 1"], id="CRLF line breaks"),
]


@pytest.mark.parametrize(("reply", "expected"), BLOCK_CASES)
def test_code_blocks_match_the_reference(reply: str, expected: list[str]) -> None:
    assert extract_code_blocks(reply) == expected


FINAL_CASES = [
    pytest.param("no answer yet", None, id="nothing"),
    pytest.param("FINAL(42)", FinalAnswer("text", "42"), id="FINAL text"),
    pytest.param("Done.\n  FINAL( 42 )  \n", FinalAnswer("text", "42"), id="indented, stripped"),
    pytest.param("FINAL()", FinalAnswer("text", ""), id="empty FINAL is an (empty) answer"),
    pytest.param(
        "FINAL(f(x) = (a + b))", FinalAnswer("text", "f(x) = (a + b)"), id="nested parentheses"
    ),
    pytest.param(
        "FINAL(line one\nline two)",
        FinalAnswer("text", "line one\nline two"),
        id="multi-line answer",
    ),
    pytest.param(
        "FINAL(a)\nsee also (b)",
        FinalAnswer("text", "a)\nsee also (b"),
        id="runs to the last ) that ends a line",
    ),
    pytest.param("FINAL(a) because b", None, id="text after ) on the only line: no answer"),
    pytest.param("The answer is FINAL(42)", None, id="mid-line FINAL is not an answer"),
    pytest.param("**FINAL(42)**", None, id="bold FINAL is not an answer"),
    pytest.param("FINAL_VAR(result)", FinalAnswer("var", "result"), id="FINAL_VAR name"),
    pytest.param('FINAL_VAR("result")', FinalAnswer("var", "result"), id="double-quoted name"),
    pytest.param("FINAL_VAR( 'result' )", FinalAnswer("var", "result"), id="single-quoted name"),
    pytest.param('FINAL_VAR(d["k"])', FinalAnswer("var", 'd["k"]'), id="first ) ends the name"),
    pytest.param(
        "FINAL(text)\nFINAL_VAR(v)", FinalAnswer("var", "v"), id="FINAL_VAR wins over FINAL"
    ),
    pytest.param("say FINAL_VAR(v)", None, id="mid-line FINAL_VAR is not an answer"),
    pytest.param(
        f"{FENCE}repl\nFINAL(x)\n{FENCE}",
        FinalAnswer("text", "x"),
        id="FINAL inside a code block still counts",
    ),
]


@pytest.mark.parametrize(("reply", "expected"), FINAL_CASES)
def test_final_matches_the_reference(reply: str, expected: FinalAnswer | None) -> None:
    assert find_final(reply) == expected


@pytest.mark.parametrize("module", ["", ".answer", ".blocks", ".feedback", ".prompts"])
def test_every_module_exports_a_sorted_list_of_real_names(module: str) -> None:
    mod = importlib.import_module("rlm.rlmmode" + module)
    exported = mod.__all__
    assert exported == sorted(exported)
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert getattr(mod, name) is not None


def test_package_exports_the_protocol() -> None:
    assert {
        "extract_code_blocks",
        "find_final",
        "context_metadata",
        "system_prompt",
        "turn_prompt",
        "final_turn_prompt",
        "format_cell_feedback",
        "turn_answer",
    } <= set(rlm.rlmmode.__all__)

"""Cell feedback: the reference's layout, our head + tail truncation, and its bounds."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.rlmmode.feedback import (
    FEEDBACK_LIMIT,
    NO_OUTPUT,
    format_cell_feedback,
    format_turn_feedback,
    truncate_middle,
    truncation_marker,
)


def test_limit_is_the_references_20k() -> None:
    assert FEEDBACK_LIMIT == 20_000


def test_a_silent_cell_says_no_output_as_the_reference_does() -> None:
    assert format_cell_feedback("", "", []) == NO_OUTPUT == "No output"


def test_stdout_stderr_error_and_new_variables_all_appear_in_order() -> None:
    text = format_cell_feedback(
        "out\n", "warn\n", ["a", "b"], "ZeroDivisionError: division by zero"
    )
    assert text.index("out") < text.index("warn") < text.index("ZeroDivisionError")
    assert text.endswith("REPL variables: ['a', 'b']")


def test_an_exception_alone_is_reported_like_the_references_stderr_line() -> None:
    assert format_cell_feedback("", "", [], "NameError: name 'x' is not defined") == (
        "NameError: name 'x' is not defined"
    )


def test_short_feedback_is_not_touched() -> None:
    assert truncate_middle("x" * 10, 10) == "x" * 10


def test_long_output_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    stdout = "HEAD" + "m" * 50_000 + "TAIL"
    text = format_cell_feedback(stdout, "", ["result"], limit=1_000)
    assert text.startswith("HEAD")
    # The reference's head-only cut would lose these: the variable list ends the feedback.
    assert text.endswith("REPL variables: ['result']")
    cut = len(stdout) + len("\n\nREPL variables: ['result']") - 1_000
    assert truncation_marker(cut) in text
    assert f"[{cut:,} characters truncated]" in text


def test_truncation_splits_the_limit_between_head_and_tail() -> None:
    assert truncate_middle("abcdefghij", 4) == "ab" + truncation_marker(6) + "ij"
    assert truncate_middle("abcdefghij", 5) == "ab" + truncation_marker(5) + "hij"


@pytest.mark.parametrize(("limit", "kept"), [(0, ""), (1, "f"), (2, "af")])
def test_tiny_limits_keep_exactly_limit_characters(limit: int, kept: str) -> None:
    out = truncate_middle("abcdef", limit)
    assert out.replace(truncation_marker(6 - limit), "") == kept


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        truncate_middle("abc", -1)


@given(text=st.text(), limit=st.integers(min_value=0, max_value=300))
def test_truncation_bounds(text: str, limit: int) -> None:
    out = truncate_middle(text, limit)
    if len(text) <= limit:
        assert out == text
        return
    marker = truncation_marker(len(text) - limit)
    assert len(out) == limit + len(marker)
    head, tail = limit // 2, limit - limit // 2
    assert out.startswith(text[:head])
    assert out.endswith(text[len(text) - tail :])
    assert out[head : head + len(marker)] == marker
    assert int(re.search(r"\[([\d,]+) characters", marker).group(1).replace(",", "")) == (  # type: ignore[union-attr]
        len(text) - limit
    )


@given(
    stdout=st.text(),
    stderr=st.text(),
    names=st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), max_size=5),
    limit=st.integers(min_value=0, max_value=200),
)
def test_cell_feedback_never_exceeds_limit_plus_marker(
    stdout: str, stderr: str, names: list[str], limit: int
) -> None:
    out = format_cell_feedback(stdout, stderr, names, None, limit)
    if out == NO_OUTPUT:
        assert not stdout and not stderr and not names
        return
    longest_marker = truncation_marker(len(stdout) + len(stderr) + 200 * (len(names) + 1))
    assert len(out) <= limit + len(longest_marker)


def test_one_cell_is_headed_repl_output() -> None:
    assert format_turn_feedback(["3"]) == "REPL output:\n3"


def test_several_cells_are_numbered_blocks_in_one_message() -> None:
    assert format_turn_feedback(["1", "No output"]) == (
        "REPL output (block 1):\n1\n\nREPL output (block 2):\nNo output"
    )


def test_a_reply_without_code_gets_no_feedback() -> None:
    assert format_turn_feedback([]) == ""

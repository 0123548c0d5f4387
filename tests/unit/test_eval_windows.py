"""OOLONG-synth windows: deterministic, within their token target, readable back."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.eval.data import Instance
from rlm.eval.windows import (
    MIN_WINDOW_TOKENS,
    ParsedLine,
    WindowLine,
    build_window,
    format_date,
    parse_date,
    parse_line,
    parse_lines,
)
from rlm.testing.tokens import count_tokens
from tests.unit.eval_data import gold_labels, instances


def test_a_line_reads_as_oolong_writes_it_and_parses_back() -> None:
    line = WindowLine(date(2023, 3, 5), 48213, "What is the capital of Peru ?", "location")
    text = "Date: Mar 05, 2023 || User: 48213 || Instance: What is the capital of Peru ?"
    assert line.render() == text
    assert parse_line(text) == ParsedLine(date(2023, 3, 5), 48213, "What is the capital of Peru ?")
    assert parse_line("Date: Foo 05, 2023 || User: 1 || Instance: x") is None
    assert parse_line("Date: Feb 30, 2023 || User: 1 || Instance: x") is None
    assert parse_line("hello") is None


@given(st.dates(date(1900, 1, 1), date(2999, 12, 31)))
def test_dates_round_trip(day: date) -> None:
    assert parse_date(format_date(day)) == day


def test_the_same_seed_gives_the_same_window_and_another_seed_another() -> None:
    data = instances()
    a = build_window(data, 3000, seed=7, index=0)
    assert build_window(data, 3000, seed=7, index=0) == a
    assert build_window(data, 3000, seed=8, index=0).text != a.text
    assert build_window(data, 3000, seed=7, index=1).text != a.text


def test_a_window_is_a_dated_log_of_labelled_lines_from_the_data() -> None:
    gold = gold_labels()
    window = build_window(instances(), 8192, seed=1)
    days = [line.day for line in window.lines]
    assert days == sorted(days)
    assert all(gold[line.text] == line.label for line in window.lines)
    assert [p.text for p in parse_lines(window.text)] == [line.text for line in window.lines]
    assert 2 <= len({line.user for line in window.lines}) <= 40
    assert len({line.label for line in window.lines}) == 6
    # Close to the target: the next line drawn (at most ~65 tokens here) did not fit.
    assert 8192 - 65 < window.tokens <= 8192


@settings(max_examples=30)
@given(st.integers(MIN_WINDOW_TOKENS, 6000), st.integers(0, 10**6))
def test_every_window_fits_its_target_and_parses_back_whole(target: int, seed: int) -> None:
    window = build_window(instances(), target, seed)
    assert window.lines
    assert window.tokens == count_tokens(window.text) <= target
    parsed = parse_lines(window.text)
    assert [(p.day, p.user, p.text) for p in parsed] == [
        (line.day, line.user, line.text) for line in window.lines
    ]


def test_a_window_longer_than_the_data_repeats_texts_with_their_labels() -> None:
    few = [Instance(f"question {i} ?", "a" if i % 2 else "b") for i in range(10)]
    window = build_window(few, 2000, seed=3)
    assert len(window.lines) > 10
    assert all(
        line.label == ("a" if int(line.text.split()[1]) % 2 else "b") for line in window.lines
    )


def test_a_window_always_holds_a_line_even_a_long_one() -> None:
    long = [Instance("x" * 1000, "a"), Instance("y" * 1000, "b")]
    window = build_window(long, MIN_WINDOW_TOKENS, seed=0)
    assert len(window.lines) == 1


@pytest.mark.parametrize("target", [0, MIN_WINDOW_TOKENS - 1])
def test_too_short_a_target_is_refused(target: int) -> None:
    with pytest.raises(InvalidInput, match="at least"):
        build_window(instances(), target, seed=0)

"""Scoring replies by OOLONG's rules: the answer after the last colon, numbers, comparisons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.eval.questions import COMPARISONS, Aggregate, QuestionSpec, Scope
from rlm.eval.score import comparison_in, extract_answer, score_reply

LABELS = ("abbreviation", "entity", "human being", "location")
AGGREGATES: tuple[Aggregate, ...] = ("count", "most", "least", "compare")


@pytest.mark.parametrize(
    ("reply", "gold", "want"),
    [
        ("Answer: 12", 12, 1.0),
        ("Answer: 10", 12, 0.75**2),
        ("Answer: 15", 12, 0.75**3),
        ("Let me count: 3, 4, 5... Answer: 12", 12, 1.0),
        ("**Answer:** 12.", 12, 1.0),
        ("Answer: [12]", 12, 1.0),
        ("12", 12, 1.0),
        ("Answer: twelve", 12, 0.0),
        ("Answer: 12 instances", 12, 0.0),
        ("Answer: 12\nThat is my count: final", 12, 0.0),  # the answer is after the LAST colon
        ("Label: location", "location", 1.0),
        ("Label: Location.", "location", 1.0),
        ("Label: 'human being'", "human being", 1.0),
        ("**Label:** `entity`", "entity", 1.0),
        ("Label: human", "human being", 0.0),
        ("Label: location, entity", "location", 0.0),
        ("Answer: entity is less common than location", "less common than", 1.0),
        ("Answer: entity is LESS COMMON THAN location", "less common than", 1.0),
        ("Answer: more common than", "more common than", 1.0),
        ("Answer: entity is the same frequency as location", "same frequency as", 1.0),
        ("Answer: entity is more common than location", "less common than", 0.0),
        ("Answer: more common or less common", "more common than", 0.0),
        ("Answer: entity and location", "same frequency as", 0.0),
        ("", 3, 0.0),
        ("", "location", 0.0),
    ],
)
def test_table(reply: str, gold: int | str, want: float) -> None:
    assert score_reply(reply, gold) == pytest.approx(want)


def test_no_reply_scores_zero() -> None:
    assert score_reply(None, 3) == 0.0
    assert score_reply(None, "location") == 0.0


def test_the_answer_is_after_the_last_colon_cleaned() -> None:
    assert extract_answer("Label: **Location**.") == "Location"
    assert extract_answer("no colon at all") == "no colon at all"
    assert comparison_in("x is more common than y") == "more common than"
    assert comparison_in("x is neither") is None


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_numbers_score_three_quarters_per_unit_of_distance(pred: int, gold: int) -> None:
    s = score_reply(f"Answer: {pred}", gold)
    assert s == pytest.approx(0.75 ** abs(gold - pred))
    assert 0.0 <= s <= 1.0
    assert (s == 1.0) == (pred == gold)


@given(
    st.text(max_size=200), st.one_of(st.integers(0, 1000), st.sampled_from(LABELS + COMPARISONS))
)
def test_any_reply_scores_within_bounds(reply: str, gold: int | str) -> None:
    assert 0.0 <= score_reply(reply, gold) <= 1.0


@given(
    st.sampled_from(AGGREGATES),
    st.dictionaries(st.sampled_from(LABELS), st.integers(0, 50)),
    st.permutations(LABELS),
)
def test_the_gold_answer_in_the_asked_form_scores_one_and_only_it(
    aggregate: Aggregate, counts: dict[str, int], order: list[str]
) -> None:
    a, b = order[0], order[1]
    if aggregate == "count":
        spec = QuestionSpec("count", LABELS, Scope(), a)
    elif aggregate == "compare":
        spec = QuestionSpec("compare", LABELS, Scope(), a, b)
    else:
        spec = QuestionSpec(aggregate, LABELS)
    gold = spec.answer_from_counts(counts)
    assert score_reply(spec.format_answer(gold), gold) == 1.0
    wrong: int | str
    if aggregate == "count":
        wrong = int(gold) + 1
    elif aggregate == "compare":
        wrong = next(c for c in COMPARISONS if c != gold)
    else:
        wrong = next(lb for lb in LABELS if lb != gold)
    assert score_reply(spec.format_answer(wrong), gold) < 1.0

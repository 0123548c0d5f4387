"""OOLONG-synth questions: wording read back, gold answers that match the window's labels."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.eval.data import Instance
from rlm.eval.questions import (
    COMPARISONS,
    KINDS,
    Aggregate,
    Question,
    QuestionSpec,
    Scope,
    check_labels,
    make_questions,
    parse_question,
)
from rlm.eval.run import build_questions
from rlm.eval.windows import Window, WindowLine, build_window
from rlm.rlmmode import context_metadata, turn_prompt
from tests.unit.eval_data import instances, labels

AGGREGATES: tuple[Aggregate, ...] = ("count", "most", "least", "compare")
label_text = st.text(
    st.characters(codec="utf-8", exclude_characters="'\n:\r"), min_size=1, max_size=20
).filter(lambda s: s.strip() == s and s)
label_sets = st.lists(label_text, min_size=2, max_size=6, unique=True).map(
    lambda xs: tuple(sorted(xs))
)
scopes = st.one_of(
    st.just(Scope()),
    st.builds(Scope, user=st.integers(0, 10**9)),
    st.builds(Scope, month=st.tuples(st.integers(1000, 9999), st.integers(1, 12))),
    st.builds(Scope, before=st.dates(date(1000, 1, 1), date(9999, 12, 31))),
)


@st.composite
def specs(draw: st.DrawFn) -> QuestionSpec:
    labels = draw(label_sets)
    scope = draw(scopes)
    aggregate: Aggregate = draw(st.sampled_from(AGGREGATES))
    if aggregate == "count":
        return QuestionSpec("count", labels, scope, draw(st.sampled_from(labels)))
    if aggregate == "compare":
        a, b = draw(st.permutations(labels))[:2]
        return QuestionSpec("compare", labels, scope, a, b)
    return QuestionSpec(aggregate, labels, scope)


@given(specs())
def test_a_prompt_reads_back_as_its_question(spec: QuestionSpec) -> None:
    assert parse_question(spec.prompt()) == spec


@given(specs())
def test_the_answer_form_is_stated_and_the_gold_answer_fits_it(spec: QuestionSpec) -> None:
    prompt = spec.prompt()
    form = {"number": "'Answer: <number>'", "label": "'Label: <label>'"}.get(spec.answer_type)
    assert form is None or form in prompt
    counts = Counter({label: i for i, label in enumerate(spec.labels)})
    answer = spec.format_answer(spec.answer_from_counts(counts))
    assert answer.startswith("Label: " if spec.answer_type == "label" else "Answer: ")


def test_the_question_is_found_inside_an_rlm_turn_prompt() -> None:
    window = build_window(instances(), 2000, seed=5)
    spec = QuestionSpec("compare", labels(), Scope(user=window.lines[0].user), "entity", "location")
    prompt = turn_prompt(spec.prompt(), context_metadata(window.text), 1, 30)
    assert parse_question(prompt) == spec
    assert parse_question(window.text) is None
    assert parse_question("Considering all instances in the data, how many?") is None


def _recount(question: Question, window: Window) -> int | str:
    """The gold answer, recomputed by brute force from the window's lines."""
    spec = question.spec
    kept = []
    for line in window.lines:
        if question.kind in ("user_count", "user_most_common") and line.user != spec.scope.user:
            continue
        if question.kind == "month_count" and (line.day.year, line.day.month) != spec.scope.month:
            continue
        if question.kind == "before_count":
            assert spec.scope.before is not None
            if not line.day < spec.scope.before:
                continue
        kept.append(line.label)
    assert kept, f"{question.id} has an empty scope"
    if spec.aggregate == "count":
        return kept.count(spec.label or "")
    counts = {label: kept.count(label) for label in spec.labels}
    if spec.aggregate == "compare":
        a, b = counts[spec.label or ""], counts[spec.label_b or ""]
        return COMPARISONS[0 if a > b else 1 if a < b else 2]
    ordered = sorted(counts.values(), reverse=spec.aggregate == "most")
    assert ordered[0] != ordered[1], f"{question.id} has a tie"
    pick = max if spec.aggregate == "most" else min
    return pick(counts, key=counts.__getitem__)


@settings(max_examples=25)
@given(st.integers(200, 5000), st.integers(0, 10**6))
def test_gold_answers_are_the_window_labels_counted(target: int, seed: int) -> None:
    window = build_window(instances(), target, seed)
    asked = make_questions(window, labels(), KINDS, seed)
    assert len({q.spec for q in asked}) == len(asked)
    for question in asked:
        assert question.gold == _recount(question, window)
        assert parse_question(question.prompt) == question.spec


def test_every_kind_is_asked_of_a_large_enough_window() -> None:
    window = build_window(instances(), 8192, seed=0)
    asked = make_questions(window, labels(), KINDS, seed=0)
    assert [q.kind for q in asked] == list(KINDS)
    assert [q.id for q in asked][:2] == ["w0-0-count", "w0-1-most_common"]


def _window(*rows: tuple[int, str]) -> Window:
    return Window(
        0, tuple(WindowLine(date(2024, 1, 1 + i), u, f"q{i}", lb) for i, (u, lb) in enumerate(rows))
    )


def test_a_kind_the_window_cannot_ask_gives_way_to_the_next() -> None:
    tied = _window((1, "a"), (1, "b"), (2, "a"), (2, "b"))  # a and b tie everywhere
    asked = make_questions(tied, ("a", "b"), ["most_common", "least_common"], seed=0)
    assert [q.kind for q in asked] == ["compare", "compare"]
    assert {q.gold for q in asked} == {"same frequency as"}
    assert asked[0].spec != asked[1].spec


def test_a_window_too_small_for_new_questions_asks_fewer() -> None:
    one = _window((1, "a"))
    asked = make_questions(one, ("a", "b"), ["most_common"] * 20, seed=0)
    assert 0 < len(asked) < 20
    assert len({q.spec for q in asked}) == len(asked)


def test_answers_from_counts_ignore_other_keys_and_break_ties_alphabetically() -> None:
    labs = ("a", "b", "c")
    counts = {"a": 2, "b": 2, "c": 0, "unparsed": 9}
    assert QuestionSpec("most", labs).answer_from_counts(counts) == "a"
    assert QuestionSpec("least", labs).answer_from_counts(counts) == "c"
    assert QuestionSpec("least", labs).answer_from_counts({"a": 1}) == "b"
    assert QuestionSpec("count", labs, Scope(), "unparsed").answer_from_counts(counts) == 9
    assert QuestionSpec("compare", labs, Scope(), "a", "b").answer_from_counts(counts) == (
        "same frequency as"
    )


def test_unknown_kinds_and_unquotable_labels_are_refused() -> None:
    window = build_window(instances(), 500, seed=0)
    with pytest.raises(InvalidInput, match="unknown question kind 'median'"):
        make_questions(window, labels(), ["median"], seed=0)
    for bad in (["a"], ["a", "it's"], ["a", "b:c"], ["a", "b\nc"]):
        with pytest.raises(InvalidInput):
            check_labels(bad)


def test_questions_cycle_through_kinds_over_windows() -> None:
    windows, asked = build_questions(
        instances(), questions=10, window_tokens=4000, seed=2, per_window=4
    )
    assert len(windows) == 3 and [w.index for w in windows] == [0, 1, 2]
    assert len(asked) == 10
    assert [q.window for q in asked] == [0] * 4 + [1] * 4 + [2] * 2
    assert [q.kind for q in asked] == [KINDS[i % len(KINDS)] for i in range(10)]
    assert len({q.id for q in asked}) == 10
    with pytest.raises(InvalidInput):
        build_questions(instances(), questions=0, window_tokens=4000)
    few = [Instance("x ?", "a"), Instance("y ?", "b")]
    assert build_questions(few, questions=2, window_tokens=100, kinds=["count"])[1]

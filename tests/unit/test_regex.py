"""The bounded regex engine: agreement with ``re.search``, linear time, clear refusals."""

from __future__ import annotations

import pickle
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.operations.regex import (
    MAX_PATTERN_CHARS,
    MAX_PROGRAM_SIZE,
    RegexError,
    compile_regex,
)

# --- a generated subset of the syntax that Python's re reads the same way --------------------

_atoms = st.sampled_from(
    [
        *("a", "b", "c", "A", "1", " ", "_", ".", r"\."),
        *("[ab]", "[^a]", "[a-c]", "[^ 1]", r"[\d_]", "[A-Z]"),
        *(r"\d", r"\w", r"\s", r"\D", r"\W", r"\S"),
    ]
)
_anchors = st.sampled_from(["^", "$", r"\b", r"\B", r"\A", r"\Z"])
_quantifiers = st.sampled_from(["*", "+", "?", "*?", "+?", "{2}", "{1,3}", "{0,2}", "{2,}", "{,2}"])


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        inner.map(lambda p: f"({p})"),
        inner.map(lambda p: f"(?:{p})"),
        st.tuples(inner.map(lambda p: f"({p})"), _quantifiers).map("".join),
    )


_quantified_atoms = st.tuples(_atoms, st.one_of(st.just(""), _quantifiers)).map("".join)
patterns = st.recursive(st.one_of(_quantified_atoms, _anchors), _grow, max_leaves=8)
texts = st.text(alphabet="abcA1 _.", max_size=14)


@settings(max_examples=400, deadline=None)
@given(pattern=patterns, text=texts, ignore_case=st.booleans())
def test_agrees_with_python_re_search(pattern: str, text: str, ignore_case: bool) -> None:
    expected = re.search(pattern, text, re.IGNORECASE if ignore_case else 0) is not None
    assert compile_regex(pattern, ignore_case).search(text) is expected


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("", "", True),
        ("", "abc", True),
        ("abc", "xxabcxx", True),
        ("abc", "ab", False),
        ("^abc$", "abc", True),
        ("^abc$", "abcd", False),
        ("colou?r", "the color", True),
        (r"\d{3}-\d{4}", "call 555-1234 now", True),
        (r"\d{3}-\d{4}", "call 55-1234 now", False),
        (r"\bcat\b", "a cat sat", True),
        (r"\bcat\b", "concatenate", False),
        ("[^a-z]", "abc", False),
        ("a|b|c", "zzc", True),
        (r"(a|b)*abb", "babaabb", True),
        (r"x{0}", "", True),
        (r"\u00e9t\xe9", "été", True),
        ("[]a]", "]", True),
        ("a{", "a{", True),  # a malformed repeat is a literal, as in Python
        ("(?:ab)+$", "xabab", True),
        (".", "\n", False),
    ],
)
def test_known_cases(pattern: str, text: str, expected: bool) -> None:
    assert compile_regex(pattern).search(text) is expected
    assert (re.search(pattern, text) is not None) is expected


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"(a+)+$", "a" * 5000 + "b"),
        (r"^(a|aa)+$", "a" * 5000 + "b"),
        (r"(x+x+)+y", "x" * 5000),
        (r"(a*)*b", "a" * 5000),
        (r"^(\w+\s?)*$", "word " * 1000 + "!"),
        (r"(.*a){20}", "a" * 19 + "b" * 3000),
    ],
)
def test_catastrophic_patterns_finish(pattern: str, text: str) -> None:
    # Python's re needs exponential time on these; the engine is linear in the text.
    assert compile_regex(pattern).search(text) is False


def test_ignore_case() -> None:
    regex = compile_regex("error [a-c]+", ignore_case=True)
    assert regex.search("ERROR ABC")
    assert not compile_regex("error", ignore_case=False).search("ERROR")
    assert not compile_regex("[^a]", ignore_case=True).search("A")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a**", "multiple repeat"),
        ("*a", "nothing to repeat"),
        ("^*", "nothing to repeat"),
        ("(a", "missing )"),
        ("a)", "unbalanced parenthesis"),
        ("[a", "unterminated character set"),
        ("[z-a]", "bad character range"),
        (r"[\d-z]", "bad character range"),
        (r"(a)\1", "back-references"),
        ("(?=a)", "groups are supported"),
        ("(?i)a", "groups are supported"),
        ("a*+", "possessive"),
        (r"\q", r"\q"),
        ("\\", "bad escape"),
        ("a{1001}", "may not exceed"),
        ("a{3,2}", "min repeat greater than max"),
        ("(a{1000}){1000}", "instructions"),
        ("x" * (MAX_PATTERN_CHARS + 1), "longer than"),
    ],
)
def test_bad_patterns_are_refused_with_a_position(pattern: str, message: str) -> None:
    with pytest.raises(RegexError, match=re.escape(message)) as info:
        compile_regex(pattern)
    assert 0 <= info.value.position <= len(pattern)


def test_program_size_bound_is_what_refuses_large_repeats() -> None:
    compile_regex("a{1000}")
    compile_regex("(ab){1000}")
    with pytest.raises(RegexError, match=str(MAX_PROGRAM_SIZE)):
        compile_regex("(abcdefghijklmnopqrstu){1000}")


def test_compiled_patterns_are_cached_and_pickle() -> None:
    assert compile_regex("a+b") is compile_regex("a+b")
    copy = pickle.loads(pickle.dumps(compile_regex(r"\d+x", True)))
    assert copy.search("12X") and not copy.search("x")


def test_dfa_cache_is_bounded_but_answers_stay_right() -> None:
    # Each position of a random a/b text is a new DFA state for this pattern (2**12 states).
    regex = compile_regex("a[ab]{11}c")
    text = "".join("ab"[(i * 7919) % 13 % 2] for i in range(30_000))
    for end in ("c", "d"):
        expected = re.search("a[ab]{11}c", text + end) is not None
        assert regex.search(text + end) is expected
    assert regex.search("a" * 11 + "bc") is True

"""OOLONG-style scoring."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.scoring import score


@pytest.mark.parametrize(
    ("actual", "expected", "want"),
    [
        (55, 55, 1.0),
        (53, 55, 0.75**2),
        (55.0, 55, 1.0),
        ("Answer: location", "location", 1.0),
        ("label: LOCATION ", "location", 1.0),
        ("entity", "location", 0.0),
        ("Answer: 12", 10, 0.75**2),
        ([1, 2, 3], [3, 2, 1], 1.0),
        ([1, 2], [1, 2, 3, 4], 0.5),
        ([], [], 1.0),
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}, (1 + 0.75) / 2),
        (True, True, 1.0),
        (1, True, 0.0),
        (None, 5, 0.0),
        ("x", [1], 0.0),
    ],
)
def test_table(actual: object, expected: object, want: float) -> None:
    assert score(actual, expected) == pytest.approx(want)


@given(st.integers(-1000, 1000), st.integers(-1000, 1000))
def test_numbers_decay_with_distance(a: int, e: int) -> None:
    s = score(a, e)
    assert 0.0 <= s <= 1.0
    assert (s == 1.0) == (a == e)
    assert s == pytest.approx(0.75 ** abs(a - e))


@given(st.recursive(st.integers() | st.text(max_size=5), lambda c: st.lists(c, max_size=4)))
def test_identity_scores_one(x: object) -> None:
    assert score(x, x) == 1.0

"""Numbered batches put back in their sender's order (:mod:`rlm.tasks.batch_order`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.tasks.batch_order import BatchOrder


@given(st.integers(1, 40).flatmap(lambda n: st.permutations(range(1, n + 1))), st.data())
def test_any_arrival_order_with_repeats_releases_each_batch_once_in_order(
    order: list[int], data: st.DataObject
) -> None:
    # Retried calls: some batches arrive again, at any later point.
    repeats = data.draw(st.lists(st.sampled_from(order), max_size=10))
    arrivals = list(order)
    for number in repeats:
        at = data.draw(st.integers(arrivals.index(number) + 1, len(arrivals)))
        arrivals.insert(at, number)
    batches = BatchOrder[str]()
    released: list[str] = []
    for number in arrivals:
        ready = batches.accept(number, f"b{number}")
        released.extend(ready)
        # Released exactly up to the first gap.
        assert len(released) == batches.expected - 1
    assert released == [f"b{n}" for n in sorted(order)]
    assert batches.held == 0 and batches.skipped == 0 and batches.drain() == []


def test_an_early_batch_waits_for_the_one_before_it() -> None:
    batches = BatchOrder[str]()
    assert batches.accept(2, "cell") == []
    assert batches.held == 1
    assert batches.accept(1, "turn") == ["turn", "cell"]
    assert batches.accept(1, "turn") == []  # a retried call: dropped
    assert batches.accept(3, "answer") == ["answer"]


def test_a_lost_batch_holds_the_rest_no_longer_than_max_held() -> None:
    batches = BatchOrder[int](max_held=3)
    assert [batches.accept(n, n) for n in (2, 3, 4)] == [[], [], []]
    # A fourth held batch: batch 1 is given up, the rest go out in order.
    assert batches.accept(5, 5) == [2, 3, 4, 5]
    assert batches.skipped == 1 and batches.expected == 6
    assert batches.accept(1, 1) == []  # too late: its place is gone


def test_drain_gives_what_is_held_in_order_and_counts_the_gaps() -> None:
    batches = BatchOrder[int]()
    for n in (5, 3):
        batches.accept(n, n)
    assert batches.drain() == [3, 5]
    assert batches.skipped == 3  # 1, 2 and 4 never came
    assert batches.expected == 6 and batches.held == 0


def test_max_held_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_held"):
        BatchOrder[int](max_held=0)

"""pairs: global indices across chunks, agreement with brute force, bounds, cancellation."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.execution import execute_direct, run_call, run_plan_locally
from rlm.inputs import prepare_input
from rlm.operations import CallCancelled, default_registry
from rlm.operations.context import cancellation_scope
from rlm.operations.pairwise import MAX_PAIRS
from rlm.planning import plan_task

REGISTRY = default_registry()


def prepared(items: list[Any], params: dict[str, Any]) -> Any:
    return prepare_input({"items": items, "operation": "pairs", "params": params}, REGISTRY)


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.integers(0, 10), max_size=30),
    leaf_size=st.integers(1, 8),
    fanout=st.integers(2, 5),
    shape=st.sampled_from(["recursive", "parallel", "sequential"]),
)
def test_pairs_equal_brute_force_with_global_indices(
    items: list[int], leaf_size: int, fanout: int, shape: str
) -> None:
    expected = [
        [i, j]
        for i in range(len(items))
        for j in range(i + 1, len(items))
        if items[i] + items[j] == 10
    ]
    p = prepared(items, {"where": "a + b == 10"})
    plan = plan_task(shape, len(items), leaf_size=leaf_size, fanout=fanout, max_depth=6)
    assert run_plan_locally(plan, p) == expected
    counted = prepared(items, {"where": "a + b == 10", "count_only": True})
    assert run_plan_locally(plan, counted) == len(expected)


def test_predicate_sees_the_earlier_item_as_a() -> None:
    assert execute_direct(prepared([3, 1, 2], {"where": "a > b"})) == [[0, 1], [0, 2]]
    records = [{"u": 1, "t": 5}, {"u": 2, "t": 6}, {"u": 1, "t": 9}]
    assert execute_direct(prepared(records, {"where": "a.u == b.u and b.t - a.t > 1"})) == [[0, 2]]


def test_run_call_passes_the_chunk_offset_to_the_leaf() -> None:
    p = prepared([4, 6, 3, 7], {"where": "a + b == 10"})
    partial = run_call(p.operation, "leaf", p.items, 2, 4, [], p.params)
    assert partial.start == 2
    assert partial.pairs == [(2, 3)]
    first = run_call(p.operation, "leaf", p.items, 0, 1, [], p.params)
    folded = run_call(p.operation, "fold", p.items, 1, 4, [first], p.params)
    assert p.operation.finish(folded, p.params) == [[0, 1], [2, 3]]


def test_errors_name_both_items() -> None:
    with pytest.raises(InvalidInput) as info:
        execute_direct(prepared([1, "x", 2], {"where": "a + b > 0"}))
    assert info.value.details["index"] == 0
    assert info.value.details["otherIndex"] == 1
    with pytest.raises(InvalidInput) as info:
        prepare_input({"items": [], "operation": "pairs", "params": {"where": "x > 1"}}, REGISTRY)
    assert info.value.details["field"] == "input.params.where"


def test_too_many_pairs_to_list_is_refused_but_countable(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm.operations import pairwise

    monkeypatch.setattr(pairwise, "MAX_PAIRS", 5)
    items = list(range(6))  # 15 pairs with a < b
    plan = plan_task("recursive", 6, leaf_size=2, fanout=2, max_depth=4)
    with pytest.raises(InvalidInput) as info:
        run_plan_locally(plan, prepared(items, {"where": "a < b"}))
    assert info.value.details["count"] == 15
    assert run_plan_locally(plan, prepared(items, {"where": "a < b", "count_only": True})) == 15
    assert run_plan_locally(plan, prepared(items, {"where": "a + b == 5"})) == [
        [0, 5],
        [1, 4],
        [2, 3],
    ]
    assert MAX_PAIRS >= 100_000  # the real bound (the module attribute was patched)


def test_quadratic_loops_stop_when_cancelled() -> None:
    token = threading.Event()
    token.set()
    p = prepared(list(range(100)), {"where": "a < b"})
    with cancellation_scope(token), pytest.raises(CallCancelled):
        execute_direct(p)

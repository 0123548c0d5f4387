"""Collection operations: ordering, ties, JSON equality, expressions over items."""

from __future__ import annotations

from typing import Any

import pytest

from rlm.errors import InvalidInput
from rlm.execution import execute_direct, run_plan_locally
from rlm.inputs import prepare_input
from rlm.operations import default_registry
from rlm.planning import plan_task

REGISTRY = default_registry()


def run(name: str, items: list[Any], params: dict[str, Any] | None = None) -> Any:
    """The direct output, checked against a fine-grained recursive tree."""
    raw = {"items": items, "operation": name, "params": params or {}}
    prepared = prepare_input(raw, REGISTRY)
    out = execute_direct(prepared)
    plan = plan_task("recursive", len(items), leaf_size=1, fanout=2, max_depth=8)
    assert run_plan_locally(plan, prepared) == out
    return out


def error(name: str, items: list[Any], params: dict[str, Any] | None = None) -> InvalidInput:
    """The error of the direct run; every tree shape must fail too."""
    raw = {"items": items, "operation": name, "params": params or {}}
    prepared = prepare_input(raw, REGISTRY)
    with pytest.raises(InvalidInput) as info:
        execute_direct(prepared)
    for shape in ("recursive", "parallel", "sequential"):
        plan = plan_task(shape, len(items), leaf_size=1, fanout=2, max_depth=8)
        with pytest.raises(InvalidInput):
            run_plan_locally(plan, prepared)
    return info.value


def types(values: list[Any]) -> list[type]:
    return [type(v) for v in values]


def test_sort_is_stable_and_reversible() -> None:
    # 1.0 and 1 are equal; stability keeps 1.0 (earlier in the input) first either way.
    assert types(run("sort", [3, 1.0, 2, 1])) == [float, int, int, int]
    assert types(run("sort", [3, 1.0, 2, 1], {"reverse": True})) == [int, int, float, int]
    assert run("sort", ["b", "a", "B"]) == ["B", "a", "b"]
    assert run("sort", []) == []


def test_sort_refuses_mixed_and_unorderable_items_naming_one() -> None:
    err = error("sort", ["a", 1])
    assert err.details["field"] == "input.items[1]"
    assert error("sort", [1, None]).details["index"] == 1
    assert error("sort", [1, True]).details["index"] == 1  # booleans are not numbers
    assert error("sort", [[1]]).details["index"] == 0


def test_top_k_breaks_ties_by_input_order() -> None:
    assert run("top_k", [5, 1, 9, 5, 7], {"k": 3}) == [9, 7, 5]
    assert run("top_k", [5, 1, 9, 5, 7], {"k": 2, "largest": False}) == [1, 5]
    assert types(run("top_k", [1, 1.0, 1], {"k": 2})) == [int, float]
    assert types(run("top_k", [2.0, 2, 2.0], {"k": 1, "largest": False})) == [float]
    assert run("top_k", ["pear", "fig"], {"k": 5}) == ["pear", "fig"]


def test_distinct_keeps_first_occurrences_with_json_equality() -> None:
    items = [1, True, 1.0, "1", None, [1, 2], [1, 2], {"a": 1}, {"a": 1.0}, False, 0]
    assert run("distinct", items) == [1, True, "1", None, [1, 2], {"a": 1}, False, 0]


def test_count_by_orders_by_count_then_key() -> None:
    items = ["b", "a", "b", 1, 1.0, True, None, "a", "c"]
    assert run("count_by", items) == {
        "a": 2,
        "b": 2,
        "1": 1,
        "1.0": 1,
        "c": 1,
        "null": 1,
        "true": 1,
    }
    assert list(run("count_by", ["z", "y", "x"])) == ["x", "y", "z"]
    assert error("count_by", ["a", ["b"]]).details["field"] == "input.items[1]"


def test_histogram_uses_fixed_edges_and_drops_outliers() -> None:
    out = run("histogram", [0, 1, 2.5, 5, 9.9, 10, -1, 11], {"bins": 2, "range": [0, 10]})
    assert out == {"edges": [0.0, 5.0, 10.0], "counts": [3, 3]}
    assert run("histogram", [], {"bins": 3, "range": [0, 3]})["counts"] == [0, 0, 0]


def test_concat_lists_or_joins() -> None:
    assert run("concat", [1, "a", [2], None]) == [1, "a", [2], None]
    assert run("concat", ["a", "b", "c"], {"separator": ", "}) == "a, b, c"
    assert run("concat", [], {"separator": "-"}) == ""
    assert error("concat", ["a", 2], {"separator": "-"}).details["index"] == 1


PEOPLE = [
    {"name": "Ann", "age": 31, "tags": ["admin"]},
    {"name": "bo", "age": 17, "tags": []},
    {"name": "Cy", "age": 45, "tags": ["ops", "admin"]},
]


def test_filter_and_map_over_records() -> None:
    assert run("filter", PEOPLE, {"where": "x.age >= 18 and 'admin' in x.tags"}) == [
        PEOPLE[0],
        PEOPLE[2],
    ]
    assert run("filter", [1, 2, 3, 4], {"where": "x % 2 == 0"}) == [2, 4]
    assert run("map", PEOPLE, {"expr": "upper(x.name) + ':' + str(x.age // 10)"}) == [
        "ANN:3",
        "BO:1",
        "CY:4",
    ]
    assert run("map", [1, 2], {"expr": "[x, x * x]"}) == [[1, 1], [2, 4]]


def test_expression_failures_name_the_global_item() -> None:
    items = [{"a": 1}, {"a": 2}, {"b": 3}, {"a": 4}]
    err = error("map", items, {"expr": "x.a * 10"})
    assert err.details["field"] == "input.items[2]"
    assert err.details["index"] == 2
    assert "no field 'a'" in err.message
    err = error("filter", [1, 2, 3], {"where": "x + 1"})
    assert err.details["index"] == 0
    assert "true or false" in err.message
    err = error("filter", [0, 1, 0], {"where": "1 / x > 0"})
    assert err.details["index"] == 0


def test_expression_syntax_errors_name_the_param_and_position() -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_input({"items": [1], "operation": "filter", "params": {"where": "x >"}}, REGISTRY)
    assert info.value.details["field"] == "input.params.where"
    assert info.value.details["position"] == 3
    with pytest.raises(InvalidInput) as info:
        prepare_input(
            {"items": [1], "operation": "map", "params": {"expr": "x.__dict__"}}, REGISTRY
        )
    assert info.value.details["field"] == "input.params.expr"

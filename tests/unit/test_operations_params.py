"""Parameter validation: every bad, missing or unknown parameter names its field."""

from __future__ import annotations

from typing import Any

import pytest

from rlm.errors import InvalidInput
from rlm.inputs import prepare_input
from rlm.operations import default_registry
from rlm.operations.catalog import builtin_operations

REGISTRY = default_registry()
NO_PARAM_OPS = [
    "sum",
    "product",
    "min",
    "max",
    "mean",
    "count",
    "variance",
    "distinct",
    "count_by",
    "line_count",
    "label_counts",
]


@pytest.mark.parametrize("name", NO_PARAM_OPS)
def test_operations_without_params_refuse_any(name: str) -> None:
    op = REGISTRY.get(name)
    assert op.parse_params({}) == {}
    with pytest.raises(InvalidInput) as info:
        op.parse_params({"reverse": True})
    assert info.value.details["field"] == "input.params.reverse"


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("sort", {"reverse": "yes"}, "reverse"),
        ("sort", {"reverse": 1}, "reverse"),
        ("sort", {"order": "asc"}, "order"),
        ("top_k", {}, "k"),
        ("top_k", {"k": 0}, "k"),
        ("top_k", {"k": 10_001}, "k"),
        ("top_k", {"k": 2.5}, "k"),
        ("top_k", {"k": True}, "k"),
        ("top_k", {"k": 3, "largest": None, "reverse": True}, "reverse"),
        ("histogram", {"range": [0, 1]}, "bins"),
        ("histogram", {"bins": 4}, "range"),
        ("histogram", {"bins": 4, "range": [0, 2**53 + 2]}, "range"),
        ("histogram", {"bins": 4, "range": [0]}, "range"),
        ("histogram", {"bins": 4, "range": [0, "9"]}, "range"),
        ("histogram", {"bins": 4, "range": [0, float("inf")]}, "range"),
        ("histogram", {"bins": 0, "range": [0, 1]}, "bins"),
        ("concat", {"separator": 5}, "separator"),
        ("concat", {"sep": ","}, "sep"),
        ("filter", {}, "where"),
        ("filter", {"where": 42}, "where"),
        ("filter", {"where": "x >"}, "where"),
        ("filter", {"where": "x > 1", "expr": "x"}, "expr"),
        ("map", {}, "expr"),
        ("map", {"expr": "y"}, "expr"),
        ("map", {"expr": "x" + " + x" * 400}, "expr"),
        ("word_count", {"by_word": "no"}, "by_word"),
        ("grep", {"pattern": "a", "count_only": 0}, "count_only"),
        ("grep", {"pattern": "a", "invert": "true"}, "invert"),
        ("pairs", {}, "where"),
        ("pairs", {"where": "a < b", "count_only": "y"}, "count_only"),
        ("pairs", {"where": "x < y"}, "where"),
        ("label_stats", {"question": 1}, "question"),
    ],
)
def test_bad_params_name_the_field(name: str, params: dict[str, Any], field: str) -> None:
    raw = {"items": [1], "operation": name, "params": params}
    with pytest.raises(InvalidInput) as info:
        prepare_input(raw, REGISTRY)
    assert info.value.details["field"] == f"input.params.{field}"
    assert info.value.message


def test_null_means_absent_for_optional_params() -> None:
    prepared = prepare_input(
        {"items": ["a", "b"], "operation": "concat", "params": {"separator": None}}, REGISTRY
    )
    assert prepared.params.separator is None


@pytest.mark.parametrize("op", builtin_operations(), ids=lambda op: op.name)
def test_every_operation_refuses_unknown_params(op: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        op.parse_params({"no_such_param": 1})
    assert info.value.details["field"] == "input.params.no_such_param"


def test_integral_numbers_are_integers() -> None:
    # JSON has one number type: 3.0 is the integer 3 (the API document says "integer").
    prepared = prepare_input(
        {"items": [3, 1, 2], "operation": "top_k", "params": {"k": 2.0}}, REGISTRY
    )
    assert prepared.params.k == 2 and isinstance(prepared.params.k, int)


def test_any_pair_of_bounds_is_a_range() -> None:
    # The API document can say "two numbers", not "lo < hi": so any order, and equal bounds.
    for bounds in ([10, 0], [1, 1], [0, 1e-320]):
        prepared = prepare_input(
            {"items": [0, 1, 5], "operation": "histogram", "params": {"bins": 4, "range": bounds}},
            REGISTRY,
        )
        edges = prepared.params.edges
        assert edges[0] == min(bounds) and edges[-1] == max(bounds)

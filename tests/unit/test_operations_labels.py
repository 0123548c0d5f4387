"""OOLONG-style label aggregation, on the validated TREC-coarse data of OOLONG-synth."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from rlm.errors import InvalidInput
from rlm.execution import execute_direct, run_plan_locally
from rlm.inputs import prepare_input
from rlm.operations import default_registry
from rlm.planning import plan_task
from tests.shared_data import shared_file

REGISTRY = default_registry()
TREC = "data/oolong/trec_coarse_validated.jsonl"
PUBLISHED = {
    "human being": 1034,
    "description and abstract concept": 990,
    "location": 732,
    "entity": 665,
    "numeric value": 649,
    "abbreviation": 81,
}


@pytest.fixture(scope="module")
def trec_records() -> list[dict[str, Any]]:
    path = shared_file(TREC)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    # OOLONG-synth context lines carry a user id and a date besides the text.
    return [
        {"text": r["input"], "label": r["label"], "user": i % 7, "date": f"2024-01-{i % 28 + 1:02}"}
        for i, r in enumerate(rows)
    ]


def every_shape(name: str, records: list[Any], params: dict[str, Any]) -> list[Any]:
    prepared = prepare_input({"items": records, "operation": name, "params": params}, REGISTRY)
    outputs = [execute_direct(prepared)]
    for shape in ("recursive", "parallel", "sequential"):
        plan = plan_task(shape, len(records), leaf_size=97, fanout=4, max_depth=5)
        outputs.append(run_plan_locally(plan, prepared))
    return outputs


def test_label_counts_match_the_file_and_the_published_counts(
    trec_records: list[dict[str, Any]],
) -> None:
    assert len(trec_records) == 4151
    reference = Counter(r["label"] for r in trec_records)
    for out in every_shape("label_counts", trec_records, {}):
        assert out == dict(reference)
        assert out == PUBLISHED
        assert list(out) == list(PUBLISHED)  # most frequent first


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"question": "most_frequent"}, "human being"),
        ({"question": "least_frequent"}, "abbreviation"),
        ({"question": "count", "label": "location"}, 732),
        ({"question": "count", "label": "no such label"}, 0),
        (
            {"question": "compare", "label": "entity", "label_b": "numeric value"},
            "more common than",
        ),
        ({"question": "compare", "label": "abbreviation", "label_b": "entity"}, "less common than"),
        ({"question": "compare", "label": "entity", "label_b": "entity"}, "same frequency as"),
    ],
)
def test_label_stats_on_trec(
    trec_records: list[dict[str, Any]], params: dict[str, Any], expected: Any
) -> None:
    for out in every_shape("label_stats", trec_records, params):
        assert out == expected


def test_per_user_answers_on_trec(trec_records: list[dict[str, Any]]) -> None:
    per_user: dict[str, Counter[str]] = {}
    for r in trec_records:
        per_user.setdefault(str(r["user"]), Counter())[r["label"]] += 1
    expected = {
        user: min(c, key=lambda label: (-c[label], label)) for user, c in sorted(per_user.items())
    }
    for out in every_shape("label_stats", trec_records, {"question": "per_user_most_frequent"}):
        assert out == expected
    for out in every_shape(
        "label_stats", trec_records, {"question": "per_user_most_frequent", "user": 3}
    ):
        assert out == expected["3"]
    count_3 = per_user["3"]["location"]
    for out in every_shape(
        "label_stats", trec_records, {"question": "count", "label": "location", "user": "3"}
    ):
        assert out == count_3


def test_ties_go_to_the_alphabetically_first_label() -> None:
    records = [{"label": x} for x in ["b", "a", "c", "c", "a", "b", "d"]]
    assert every_shape("label_stats", records, {"question": "most_frequent"})[0] == "a"
    assert every_shape("label_stats", records, {"question": "least_frequent"})[0] == "d"
    assert every_shape("label_counts", records, {})[0] == {"a": 2, "b": 2, "c": 2, "d": 1}


def test_no_records_have_no_most_frequent_label() -> None:
    for params in (
        {"question": "most_frequent"},
        {"question": "least_frequent", "user": "nobody"},
        {"question": "per_user_most_frequent", "user": 7.0},
    ):
        prepared = prepare_input(
            {"items": [{"label": "a", "user": 1}], "operation": "label_stats", "params": params}
            if "user" in params
            else {"items": [], "operation": "label_stats", "params": params},
            REGISTRY,
        )
        assert execute_direct(prepared) is None, params


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("just text", "must be an object"),
        ({"text": "x"}, "label must be a string"),
        ({"label": 3}, "label must be a string"),
        ({"label": "a", "user": True}, "user must be"),
        ({"label": "a", "date": 20240101}, "date must be a string"),
    ],
)
def test_malformed_records_name_the_item(item: Any, message: str) -> None:
    prepared = prepare_input(
        {"items": [{"label": "ok"}, item], "operation": "label_counts"}, REGISTRY
    )
    with pytest.raises(InvalidInput, match=message) as info:
        execute_direct(prepared)
    assert info.value.details["field"] == "input.items[1]"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "input.params.question"),
        ({"question": "median"}, "input.params.question"),
        ({"question": "count"}, "input.params.label"),
        ({"question": "compare", "label": "a"}, "input.params.label_b"),
        ({"question": "most_frequent", "label": "a"}, "input.params.label"),
        ({"question": "most_frequent", "user": [1]}, "input.params.user"),
        ({"question": "most_frequent", "by": "date"}, "input.params.by"),
    ],
)
def test_label_stats_params_name_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_input({"items": [], "operation": "label_stats", "params": params}, REGISTRY)
    assert info.value.details["field"] == field

"""The OOLONG data: where it is found, what a row must hold, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlm.errors import InvalidInput
from rlm.eval.data import (
    DATA_ENV,
    Instance,
    default_data_path,
    label_map,
    labels_of,
    load_instances,
    parse_instances,
)
from tests.shared_data import REPO_ROOT, SHARED_DIR
from tests.unit.eval_data import TREC, instances


def test_the_shared_trec_data_loads_whole() -> None:
    rows = instances()
    assert len(rows) == 4151
    assert labels_of(rows) == (
        "abbreviation",
        "description and abstract concept",
        "entity",
        "human being",
        "location",
        "numeric value",
    )
    assert sum(1 for r in rows if r.label == "abbreviation") == 81
    assert all("\n" not in r.text and r.text == r.text.strip() for r in rows)


def test_the_default_path_is_beside_the_repository_unless_the_env_names_one(
    tmp_path: Path,
) -> None:
    assert default_data_path({}) == (SHARED_DIR / TREC).resolve()
    assert default_data_path({}).parent.parent.parent.parent == REPO_ROOT.parent
    named = tmp_path / "mine.jsonl"
    assert default_data_path({DATA_ENV: str(named)}) == named


def test_a_missing_file_is_refused_naming_the_path_and_the_ways_to_fix_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InvalidInput) as err:
        load_instances(missing)
    assert str(missing) in err.value.message
    assert "--data" in err.value.message and DATA_ENV in err.value.message
    assert err.value.details == {"path": str(missing), "field": "data"}


def test_rows_are_put_on_one_line_and_duplicates_dropped() -> None:
    rows = [
        {"input": "What  is\nit ?", "label": "entity"},
        {"input": "What is it ?", "label": "entity"},
        {"input": "Who ?", "label": " human being "},
    ]
    assert parse_instances(rows) == [
        Instance("What is it ?", "entity"),
        Instance("Who ?", "human being"),
    ]
    assert label_map(parse_instances(rows)) == {"What is it ?": "entity", "Who ?": "human being"}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "no instances"),
        (["text"], "row 1 is not an object"),
        ([{"input": "q"}], "row 1 needs"),
        ([{"input": " ", "label": "x"}], "row 1 needs"),
        ([{"input": "q", "label": "a"}, {"input": "q", "label": "b"}], "row 2 labels 'q' 'b'"),
    ],
)
def test_malformed_rows_are_refused(rows: list[object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_instances(rows)


def test_a_file_that_is_not_json_lines_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"input": "q", "label": "a"}) + "\n{oops\n")
    with pytest.raises(InvalidInput, match=r"line 2 is not JSON"):
        load_instances(path)

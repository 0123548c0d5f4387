"""Recorded evaluation runs on both state stores: what is recorded reads back whole, the owner
and its org see it, no one else does, and bad reports are refused before anything is stored."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rlm.admission import Viewer
from rlm.errors import Conflict, EvaluationNotFound, InvalidInput
from rlm.eval.store import EvaluationStore
from rlm.models.base import parse_model
from rlm.models.evaluations import EvaluationReport
from tests.eval_report import report_json


@pytest.fixture
def store(database_url: str | None, tmp_path: Path) -> EvaluationStore:
    ticks = itertools.count(1_800_000_000)
    opened = EvaluationStore(
        tmp_path / "state" / "evaluations.db",
        database_url=database_url,
        clock=lambda: float(next(ticks)),
    )
    yield opened  # type: ignore[misc]
    opened.close()


def _report(score: float = 1.0) -> EvaluationReport:
    return parse_model(EvaluationReport, report_json(direct_score=score))


def test_a_recorded_run_reads_back_whole(store: EvaluationStore) -> None:
    sent = report_json(direct_score=0.5)
    run = store.record(parse_model(EvaluationReport, sent), owner_id="ada", org_id="acme")
    assert run.run_id.startswith("eval_")
    got = store.get(Viewer("ada", "acme"), run.run_id).to_wire()
    for key in ("benchmark", "config", "windows", "questions", "modes", "results"):
        assert got[key] == sent[key], key
    assert got["modes"]["direct"]["accuracy"] == 0.5
    assert (got["ownerId"], got["orgId"]) == ("ada", "acme")


def test_json_orjson_refuses_is_stored_and_read_back_exactly(store: EvaluationStore) -> None:
    # Valid JSON a report's free-form config may carry (the schema fuzzer sent both): an
    # integer past 64 bits, and a lone surrogate escape.
    sent = report_json()
    sent["config"] = {"seed": 2**70 + 1, "note": "a\ud800b", "ratio": 3.3e60}
    run = store.record(parse_model(EvaluationReport, sent), owner_id="ada", org_id="acme")
    got = store.get(Viewer("ada", "acme"), run.run_id).to_wire()
    assert got["config"] == sent["config"]
    assert isinstance(got["config"]["seed"], int)


def test_the_org_sees_its_runs_newest_first_and_no_one_else_does(store: EvaluationStore) -> None:
    first = store.record(_report(0.25), owner_id="ada", org_id="acme")
    second = store.record(_report(0.75), owner_id="bob", org_id="acme")
    lone = store.record(_report(1.0), owner_id="eve", org_id=None)
    other = store.record(_report(1.0), owner_id="mallory", org_id="evil")

    listed = store.list(Viewer("cy", "acme"))
    assert [r.run_id for r in listed] == [second.run_id, first.run_id]
    assert [r.modes["direct"].accuracy for r in listed] == [0.75, 0.25]
    assert [r.run_id for r in store.list(Viewer("eve", None))] == [lone.run_id]
    assert [r.run_id for r in store.list(Viewer("mallory", "evil"))] == [other.run_id]
    assert [r.run_id for r in store.list(Viewer("cy", "acme"), limit=1)] == [second.run_id]
    # Another org's run answers as an unknown id does.
    for run_id in (other.run_id, lone.run_id, "eval_nope"):
        with pytest.raises(EvaluationNotFound) as err:
            store.get(Viewer("ada", "acme"), run_id)
        assert err.value.details == {"runId": run_id}
    with pytest.raises(InvalidInput):
        store.list(Viewer("ada", "acme"), limit=0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r["modes"]["direct"].update(accuracy=1.5), "modes.direct.accuracy"),
        (lambda r: r["modes"].clear(), "modes"),
        (lambda r: r["modes"]["direct"].pop("costUsd"), "modes.direct.costUsd"),
        (lambda r: r.update(benchmark=""), "benchmark"),
    ],
)
def test_a_bad_report_is_refused_naming_the_field(change: object, field: str) -> None:
    bad = report_json()
    change(bad)  # type: ignore[operator]
    with pytest.raises(InvalidInput) as err:
        parse_model(EvaluationReport, bad)
    assert err.value.details["field"] == field


def test_a_result_of_a_mode_the_report_does_not_list_is_a_conflict(store: EvaluationStore) -> None:
    bad = report_json()
    bad["results"][2]["mode"] = "rlm"
    report = parse_model(EvaluationReport, bad)  # well formed: the schema cannot tell
    with pytest.raises(Conflict) as err:
        store.record(report, owner_id="ada", org_id="acme")
    assert err.value.details["field"] == "results" and err.value.details["results"] == [2]
    assert store.list(Viewer("ada", "acme")) == []  # nothing stored

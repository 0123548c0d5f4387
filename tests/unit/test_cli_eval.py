"""``rlm eval oolong`` (and ``python -m rlm.eval.oolong``) on an in-process engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import rlm.cli
from rlm.cli import main
from rlm.eval import oolong
from rlm.testing.oolong_oracle import oolong_oracle, oolong_responder
from tests.shared_data import shared_file
from tests.unit.eval_data import TREC, gold_labels
from tests.unit.eval_engine import LocalEngine


class Connector:
    """Stands in for joining the engine; counts the joins."""

    def __init__(self) -> None:
        labels = gold_labels()
        self.engine = LocalEngine(oolong_oracle(labels), respond=oolong_responder(labels))
        self.joins = 0

    def __call__(self, args: argparse.Namespace) -> LocalEngine:
        self.joins += 1
        return self.engine


@pytest.fixture
def connector(monkeypatch: pytest.MonkeyPatch) -> Connector:
    connect = Connector()
    monkeypatch.setattr(rlm.cli, "_connect", connect)
    return connect


SMALL = ["--questions", "4", "--window-tokens", "1500", "--data", str(shared_file(TREC))]


def test_it_prints_the_table_and_writes_the_json(
    connector: Connector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    code = main(["eval", "oolong", "--modes", "direct,map-reduce", *SMALL, "--json", str(out)])
    assert code == 0 and connector.joins == 1
    table = capsys.readouterr().out
    assert "OOLONG-synth: 4 questions over 1 window" in table
    for mode in ("direct", "map-reduce"):
        assert "100.0 %" in next(line for line in table.splitlines() if f" {mode} " in line)
    report = json.loads(out.read_text())
    assert report["config"]["modes"] == ["direct", "map-reduce"]
    assert report["config"]["data"] == str(shared_file(TREC))
    assert {m: s["accuracy"] for m, s in report["modes"].items()} == {
        "direct": 1.0,
        "map-reduce": 1.0,
    }
    assert len(report["results"]) == 8


def test_json_to_stdout_replaces_the_table(
    connector: Connector, capsys: pytest.CaptureFixture[str]
) -> None:
    code = oolong.main(["--modes", "map-reduce", *SMALL, "--seed", "abc", "--json", "-"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["seed"] == "abc"
    assert report["modes"]["map-reduce"]["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/file.jsonl"], "OOLONG data not found at /no/such/file.jsonl"),
        (["--modes", "direct,psychic"], "unknown mode 'psychic'"),
        (["--kinds", "count,median"], "unknown question kind 'median'"),
        (["--window-tokens", "10"], "at least 64 tokens"),
        (["--questions", "0"], "at least one question"),
        (["--timeout-s", "0"], "--timeout-s must be positive"),
        (["--provider", "other"], "mode 'rlm' takes no provider"),
    ],
)
def test_bad_arguments_are_refused_before_joining_the_engine(
    connector: Connector, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["eval", "oolong", *SMALL, *args]) == rlm.cli.EXIT_REFUSED
    error = json.loads(capsys.readouterr().err.splitlines()[-1])["error"]
    assert error["code"] == "INVALID_INPUT" and message in error["message"]
    assert connector.joins == 0


def test_the_default_modes_include_rlm_with_its_options(
    connector: Connector, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--max-iterations", "3", "--max-depth", "2", "--sub-model", "fake-sub-model"]
    assert main(["eval", "oolong", *SMALL, *args, "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["modes"] == ["rlm", "direct", "map-reduce"]
    assert report["config"]["rlm"] == {
        "subModel": "fake-sub-model",
        "maxIterations": 3,
        "maxDepth": 2,
    }
    assert {m: s["accuracy"] for m, s in report["modes"].items()} == {
        "rlm": 1.0,
        "direct": 1.0,
        "map-reduce": 1.0,
    }
    sent = [r for r in connector.engine.requests if r["input"]["operation"] == "rlm"]
    assert len(sent) == 4
    assert all(
        r["options"]["maxIterations"] == 3
        and r["options"]["maxDepth"] == 2
        and r["options"]["subModel"] == "fake-sub-model"
        for r in sent
    )

"""``rlm eval oolong`` (and ``python -m rlm.eval.oolong``) on an in-process engine."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import rlm.cli
from rlm.cli import main
from rlm.eval import oolong
from rlm.testing.oolong_oracle import oolong_oracle
from tests.shared_data import shared_file
from tests.unit.eval_data import TREC, gold_labels
from tests.unit.eval_engine import LocalEngine


class Connector:
    """Stands in for joining the engine; counts the joins."""

    def __init__(self) -> None:
        self.engine = LocalEngine(oolong_oracle(gold_labels()))
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
    ],
)
def test_bad_arguments_are_refused_before_joining_the_engine(
    connector: Connector, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["eval", "oolong", *SMALL, *args]) == rlm.cli.EXIT_REFUSED
    error = json.loads(capsys.readouterr().err.splitlines()[-1])["error"]
    assert error["code"] == "INVALID_INPUT" and message in error["message"]
    assert connector.joins == 0


def test_the_default_modes_stop_at_rlm_until_it_lands(
    connector: Connector, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "oolong", *SMALL]) == rlm.cli.EXIT_REFUSED
    error = json.loads(capsys.readouterr().err.splitlines()[-1])["error"]
    assert "mode 'rlm' is unavailable" in error["message"]
    assert error["details"]["mode"] == "rlm"
    assert [r["input"]["operation"] for r in connector.engine.requests] == ["rlm"]

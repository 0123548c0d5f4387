"""``benchmarks/results.json`` and ``--compare``: the figures of a run, and what changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _results
from benchmarks.__main__ import main


def _row(name: str, ratio: float, goal: str, limit: str, **extra: Any) -> dict[str, Any]:
    return {
        "figure": name,
        "ours": ratio,
        "baseline": 1.0,
        "unit": "s",
        "ratio": ratio,
        "goal": goal,
        "limit": limit,
        **extra,
    }


@pytest.mark.parametrize(
    ("bound", "row", "kept"),
    [
        ("<= 1.5x", _row("a", 1.4, "", ""), True),
        ("1.5x", _row("a", 1.6, "", ""), False),  # no operator: a ceiling
        (">= 0.5x", _row("a", 0.4, "", ""), False),
        (">= 100/s", {**_row("a", 1.0, "", ""), "ours": 150.0, "unit": "deliveries/s"}, True),
        ("<= 500 ms", {**_row("a", 1.0, "", ""), "ours": 0.6, "unit": "s"}, False),
        ("20 ms", {**_row("a", 1.0, "", ""), "ours": 12.0, "unit": "ms"}, True),
        ("report", _row("a", 9.0, "", ""), None),
        ("—", _row("a", 9.0, "", ""), None),
        ("50 MiB", {**_row("a", 1.0, "", ""), "unit": "s"}, None),  # units that do not match
    ],
)
def test_bounds_are_checked_as_the_suites_write_them(
    bound: str, row: dict[str, Any], kept: bool | None
) -> None:
    assert _results.check_bound(bound, row) is kept


def test_compare_calls_out_what_got_worse_either_way() -> None:
    old = {
        "figures": [
            _row("tree", 0.8, "<= 0.7x", "1.2x"),
            _row("rps", 0.9, ">= 0.8x", ">= 0.5x"),
            _row("gone", 1.0, "<= 1x", "2x"),
        ]
    }
    new = {
        "figures": [
            _row("tree", 1.0, "<= 0.7x", "1.2x"),
            _row("rps", 0.7, ">= 0.8x", ">= 0.5x"),
            _row("fresh", 3.0, "<= 1x", "2x"),
        ]
    }
    changes = {c.figure: c for c in _results.compare(old, new)}
    assert changes["tree"].relative == pytest.approx(0.25) and changes["tree"].regressed
    # Higher is better for a rate: 0.9 -> 0.7 is worse, though the number went down.
    assert changes["rps"].relative == pytest.approx(1 - 0.7 / 0.9) and changes["rps"].regressed
    assert changes["rps"].keeps_limit is True and changes["rps"].keeps_goal is False
    assert changes["fresh"].old is None and changes["fresh"].keeps_limit is False
    assert changes["gone"].new is None
    table = _results.format_changes(list(changes.values()))
    assert "PAST LIMIT" in table and "worse" in table and "gone" in table


def test_the_command_writes_results_and_compares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    _results.write(old, [_row("tree", 0.8, "<= 0.7x", "1.2x")], {"cpus": 2}, [])
    _results.write(new, [_row("tree", 0.79, "<= 0.7x", "1.2x")], {"cpus": 2}, ["engine"])
    written = json.loads(new.read_text())
    assert written["command"] == "python -m benchmarks engine"
    assert written["figures"][0]["figure"] == "tree" and len(written["loadAverage"]) == 3
    assert main(["--compare", str(old), "--compare-only", str(new)]) == 0  # within the noise
    assert "same" in capsys.readouterr().out
    _results.write(new, [_row("tree", 1.3, "<= 0.7x", "1.2x")], {"cpus": 2}, [])
    assert main(["--compare", str(old), "--compare-only", str(new)]) == 1
    assert "PAST LIMIT" in capsys.readouterr().out


def test_every_printed_figure_is_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks._report import RECORDED, figure

    row = figure("x", 2.0, 1.0, unit="s", ratio=2.0, goal="<= 1x", limit="3x", baseline_name="b")
    assert RECORDED[-1] is row and json.loads(capsys.readouterr().out) == row
    RECORDED.pop()


def test_a_reported_rate_that_rose_is_better_not_worse() -> None:
    old = {"figures": [{**_row("single", 0.3, "report", "report"), "unit": "admissions/s"}]}
    new = {"figures": [{**_row("single", 0.45, "report", "report"), "unit": "admissions/s"}]}
    (change,) = _results.compare(old, new)
    assert change.relative is not None and change.relative < 0
    assert not change.regressed
    slower = {"figures": [_row("p50", 1.5, "report", "—")]}  # a time: higher is worse
    (change,) = _results.compare({"figures": [_row("p50", 1.0, "report", "—")]}, slower)
    assert change.regressed

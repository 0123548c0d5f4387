"""The evaluation report: per-mode figures, stable JSON, a table."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from rlm.eval.modes import ModeRun
from rlm.eval.questions import Question, QuestionSpec, Scope
from rlm.eval.report import EvalReport, QuestionResult, percentile
from rlm.eval.windows import build_window
from tests.unit.eval_data import instances

LABELS = ("a", "b")


def _question(n: int, kind_count: bool = True) -> Question:
    spec = (
        QuestionSpec("count", LABELS, Scope(), "a") if kind_count else QuestionSpec("most", LABELS)
    )
    return Question(f"w0-{n}-{spec.kind}", 0, spec, 1 if kind_count else "a")


def _run(latency: float, status: str = "completed", calls: int = 2) -> ModeRun:
    return ModeRun(
        reply="Answer: 1" if status == "completed" else None,
        status=status,
        error=None if status == "completed" else "boom",
        latency_ms=latency,
        task_id="t",
        agent_calls=calls + 1,
        lm_calls=calls,
        cached_calls=0,
        input_tokens=100 * calls,
        output_tokens=5 * calls,
        cost_usd=0.25 * calls,
    )


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1.0
    assert percentile([1, 2, 3, 4], 100) == 4.0
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_a_percentile_lies_within_the_values(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert min(values) <= p <= max(values)
    assert percentile(values, 50) <= percentile(values, 95)


def _report() -> EvalReport:
    q1, q2 = _question(0), _question(1, kind_count=False)
    results = (
        QuestionResult("direct", q1, _run(100.0), 1.0),
        QuestionResult("map-reduce", q1, _run(300.0, calls=4), 0.5625),
        QuestionResult("direct", q2, _run(200.0, status="failed"), 0.0),
        QuestionResult("map-reduce", q2, _run(500.0, calls=4), 1.0),
    )
    window = build_window(instances(), 300, seed=0)
    config = {"data": "d", "modes": ["direct", "map-reduce"], "questions": 2}
    return EvalReport(config, (window,), (q1, q2), ("direct", "map-reduce"), results)


def test_a_mode_summary_totals_its_questions() -> None:
    direct = _report().summary("direct")
    assert (direct.questions, direct.accuracy, direct.errors) == (2, 0.5, 1)
    assert direct.p50_ms == 150.0
    assert direct.p95_ms == pytest.approx(195.0)
    assert (direct.lm_calls, direct.agent_calls) == (4, 6)
    assert (direct.input_tokens, direct.output_tokens, direct.cost_usd) == (400, 20, 1.0)
    assert direct.by_kind == {"count": 1.0, "most_common": 0.0}
    mr = _report().summary("map-reduce")
    assert mr.accuracy == pytest.approx((0.5625 + 1.0) / 2) and mr.errors == 0
    with pytest.raises(KeyError):
        _report().summary("rlm")


def test_the_json_has_stable_keys() -> None:
    data = _report().to_json()
    assert list(data) == ["benchmark", "config", "windows", "questions", "modes", "results"]
    assert list(data["modes"]) == ["direct", "map-reduce"]
    assert list(data["modes"]["direct"]) == [
        "questions",
        "accuracy",
        "errors",
        "latencyMs",
        "agentCalls",
        "lmCalls",
        "cachedCalls",
        "inputTokens",
        "outputTokens",
        "costUsd",
        "byKind",
    ]
    assert data["modes"]["direct"]["latencyMs"] == {"p50": 150.0, "p95": 195.0}
    assert list(data["results"][0]) == [
        "mode",
        "questionId",
        "kind",
        "gold",
        "reply",
        "score",
        "status",
        "error",
        "latencyMs",
        "taskId",
        "agentCalls",
        "lmCalls",
        "cachedCalls",
        "inputTokens",
        "outputTokens",
        "costUsd",
    ]
    assert data["results"][2]["status"] == "failed" and data["results"][2]["reply"] is None
    assert data["questions"][1] == {
        "id": "w0-1-most_common",
        "window": 0,
        "kind": "most_common",
        "question": _question(1, kind_count=False).prompt,
        "gold": "a",
    }
    assert data["windows"][0]["tokens"] <= 300


def test_the_table_shows_each_mode() -> None:
    out = io.StringIO()
    Console(file=out, width=140).print(_report().table())
    text = out.getvalue()
    assert "2 questions over 1 window" in text
    direct = next(line for line in text.splitlines() if "direct" in line)
    assert "50.0 %" in direct and "1.0000" in direct
    assert "78.1 %" in next(line for line in text.splitlines() if "map-reduce" in line)

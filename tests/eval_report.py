"""A real ``rlm eval oolong`` report (built by :class:`rlm.eval.report.EvalReport`, not typed
by hand), for the tests of recorded evaluation runs: store, API, SDK and console."""

from __future__ import annotations

from typing import Any

from rlm.eval.modes import ModeRun
from rlm.eval.questions import Question, QuestionSpec, Scope
from rlm.eval.report import EvalReport, QuestionResult
from rlm.eval.windows import build_window
from tests.unit.eval_data import instances

__all__ = ["report_json"]

_LABELS = ("a", "b")


def _run(latency_ms: float, calls: int) -> ModeRun:
    return ModeRun(
        reply="Answer: 1",
        status="completed",
        error=None,
        latency_ms=latency_ms,
        task_id=f"task-{calls}-{latency_ms}",
        agent_calls=calls + 1,
        lm_calls=calls,
        cached_calls=0,
        input_tokens=100 * calls,
        output_tokens=5 * calls,
        cost_usd=0.25 * calls,
    )


def report_json(direct_score: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Two questions answered by ``direct`` (scoring ``direct_score`` each) and ``map-reduce``
    (1.0 then 0.5): the report's JSON as the CLI writes it."""
    q1 = Question("w0-0-count", 0, QuestionSpec("count", _LABELS, Scope(), "a"), 1)
    q2 = Question("w0-1-most_common", 0, QuestionSpec("most", _LABELS), "a")
    results = (
        QuestionResult("direct", q1, _run(100.0, 1), direct_score),
        QuestionResult("map-reduce", q1, _run(300.0, 4), 1.0),
        QuestionResult("direct", q2, _run(200.0, 1), direct_score),
        QuestionResult("map-reduce", q2, _run(500.0, 4), 0.5),
    )
    window = build_window(instances(), 300, seed=seed)
    config = {"data": "d", "modes": ["direct", "map-reduce"], "questions": 2, "seed": seed}
    report = EvalReport(config, (window,), (q1, q2), ("direct", "map-reduce"), results)
    return report.to_json()

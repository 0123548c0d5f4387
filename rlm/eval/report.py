"""An evaluation's report: per-question results, and per mode accuracy, latency, calls, cost.

:meth:`EvalReport.to_json` has stable keys (camelCase, as on the wire)::

    {
      "benchmark": "oolong-synth",
      "config": {"data", "modes", "questions", "windowTokens", "perWindow", "seed", "model",
                 "kinds", "rlm"?: {"subModel", "maxIterations", "maxDepth"}},
      "windows": [{"index", "lines", "tokens"}],
      "questions": [{"id", "window", "kind", "question", "gold"}],
      "modes": {"<mode>": {"questions", "accuracy", "errors", "latencyMs": {"p50", "p95"},
                           "agentCalls", "lmCalls", "cachedCalls", "inputTokens",
                           "outputTokens", "costUsd", "byKind": {"<kind>": accuracy}}},
      "results": [{"mode", "questionId", "kind", "gold", "reply", "score", "status", "error",
                   "latencyMs", "taskId", "agentCalls", "lmCalls", "cachedCalls",
                   "inputTokens", "outputTokens", "costUsd"}]
    }

``accuracy`` is the mean score (a failed task scores 0 and counts in ``errors``); calls, tokens
and cost are totals over the mode's questions; latencies are the client's wall time per
question, p50/p95 interpolated linearly between the nearest ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rlm.eval.modes import ModeRun
from rlm.eval.questions import Question
from rlm.eval.windows import Window

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["EvalReport", "ModeSummary", "QuestionResult", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linear between nearest ranks.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0..100.

    Example:
        >>> percentile([1, 2, 3, 4], 50), percentile([5], 95)
        (2.5, 5.0)
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


@dataclass(frozen=True)
class QuestionResult:
    """One question answered in one mode, scored."""

    mode: str
    question: Question
    run: ModeRun
    score: float

    def to_json(self) -> dict[str, Any]:
        """The result's JSON form."""
        run = self.run
        return {
            "mode": self.mode,
            "questionId": self.question.id,
            "kind": self.question.kind,
            "gold": self.question.gold,
            "reply": run.reply,
            "score": self.score,
            "status": run.status,
            "error": run.error,
            "latencyMs": round(run.latency_ms, 3),
            "taskId": run.task_id,
            "agentCalls": run.agent_calls,
            "lmCalls": run.lm_calls,
            "cachedCalls": run.cached_calls,
            "inputTokens": run.input_tokens,
            "outputTokens": run.output_tokens,
            "costUsd": run.cost_usd,
        }


@dataclass(frozen=True)
class ModeSummary:
    """One mode's figures over its questions."""

    mode: str
    questions: int
    accuracy: float
    errors: int
    p50_ms: float
    p95_ms: float
    agent_calls: int
    lm_calls: int
    cached_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    by_kind: dict[str, float]

    @classmethod
    def of(cls, mode: str, results: Sequence[QuestionResult]) -> ModeSummary:
        """Summarise ``results`` (all of ``mode``; at least one)."""
        latencies = [r.run.latency_ms for r in results]
        kinds: dict[str, list[float]] = {}
        for r in results:
            kinds.setdefault(r.question.kind, []).append(r.score)
        return cls(
            mode=mode,
            questions=len(results),
            accuracy=sum(r.score for r in results) / len(results),
            errors=sum(1 for r in results if r.run.status != "completed"),
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            agent_calls=sum(r.run.agent_calls for r in results),
            lm_calls=sum(r.run.lm_calls for r in results),
            cached_calls=sum(r.run.cached_calls for r in results),
            input_tokens=sum(r.run.input_tokens for r in results),
            output_tokens=sum(r.run.output_tokens for r in results),
            cost_usd=sum(r.run.cost_usd for r in results),
            by_kind={k: sum(v) / len(v) for k, v in sorted(kinds.items())},
        )

    def to_json(self) -> dict[str, Any]:
        """The summary's JSON form."""
        return {
            "questions": self.questions,
            "accuracy": self.accuracy,
            "errors": self.errors,
            "latencyMs": {"p50": round(self.p50_ms, 3), "p95": round(self.p95_ms, 3)},
            "agentCalls": self.agent_calls,
            "lmCalls": self.lm_calls,
            "cachedCalls": self.cached_calls,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "costUsd": self.cost_usd,
            "byKind": self.by_kind,
        }


@dataclass(frozen=True)
class EvalReport:
    """A whole run.

    Attributes:
        config: The run's settings (JSON-ready, camelCase keys).
        windows: The windows asked about.
        questions: The questions, in order.
        modes: The modes run, in order.
        results: Every (mode, question) result, in the order they ran.
    """

    config: dict[str, Any]
    windows: tuple[Window, ...]
    questions: tuple[Question, ...]
    modes: tuple[str, ...]
    results: tuple[QuestionResult, ...]

    def summary(self, mode: str) -> ModeSummary:
        """The figures of one mode.

        Raises:
            KeyError: ``mode`` has no results.
        """
        results = [r for r in self.results if r.mode == mode]
        if not results:
            raise KeyError(mode)
        return ModeSummary.of(mode, results)

    def summaries(self) -> list[ModeSummary]:
        """The figures of every mode that has results, in run order."""
        present = {r.mode for r in self.results}
        return [self.summary(m) for m in self.modes if m in present]

    def to_json(self) -> dict[str, Any]:
        """The report's JSON form (see the module's docstring)."""
        return {
            "benchmark": "oolong-synth",
            "config": self.config,
            "windows": [
                {"index": w.index, "lines": len(w.lines), "tokens": w.tokens} for w in self.windows
            ],
            "questions": [
                {
                    "id": q.id,
                    "window": q.window,
                    "kind": q.kind,
                    "question": q.prompt,
                    "gold": q.gold,
                }
                for q in self.questions
            ],
            "modes": {s.mode: s.to_json() for s in self.summaries()},
            "results": [r.to_json() for r in self.results],
        }

    def table(self) -> Table:
        """The per-mode figures as a :class:`rich.table.Table`."""
        from rich.table import Table

        windows = len(self.windows)
        tokens = max((w.tokens for w in self.windows), default=0)
        table = Table(
            title=f"OOLONG-synth: {len(self.questions)} questions over {windows} window"
            f"{'' if windows == 1 else 's'} of up to {tokens:,} tokens"
        )
        columns = ("mode", "accuracy", "errors", "p50 ms", "p95 ms", "LM calls")
        for column in (*columns, "in tokens", "out tokens", "cost $"):
            table.add_column(column, justify="left" if column == "mode" else "right")
        for s in self.summaries():
            table.add_row(
                s.mode,
                f"{100 * s.accuracy:.1f} %",
                str(s.errors),
                f"{s.p50_ms:,.0f}",
                f"{s.p95_ms:,.0f}",
                str(s.lm_calls),
                f"{s.input_tokens:,}",
                f"{s.output_tokens:,}",
                f"{s.cost_usd:.4f}",
            )
        return table

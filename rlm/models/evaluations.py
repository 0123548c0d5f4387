"""Evaluation runs (extension): ``rlm eval oolong`` reports, recorded and served by the API.

``POST /evaluations`` takes the report the CLI writes (``rlm eval oolong --json``; see
:mod:`rlm.eval.report`), checked here: per-mode figures typed and bounded, every result of a
mode the report names. ``GET /evaluations`` lists runs without their per-question parts;
``GET /evaluations/{runId}`` answers the whole run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from rlm.models.base import INTEGRAL, WireModel

__all__ = [
    "MAX_EVALUATION_RESULTS",
    "EvaluationList",
    "EvaluationReport",
    "EvaluationRun",
    "EvaluationSummary",
    "LatencyFigures",
    "ModeFigures",
]

#: The most per-question results one report may carry (questions times modes).
MAX_EVALUATION_RESULTS = 20_000

Count = Annotated[int, Field(ge=0, le=10**12), INTEGRAL]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
Millis = Annotated[float, Field(ge=0.0, le=1e10)]


class LatencyFigures(WireModel):
    """A mode's client wall time per question, in milliseconds."""

    p50: Millis
    p95: Millis


class ModeFigures(WireModel):
    """One mode's figures over its questions (as the report's ``modes`` holds them)."""

    questions: Annotated[int, Field(ge=1, le=MAX_EVALUATION_RESULTS), INTEGRAL]
    accuracy: Share
    errors: Count
    latency_ms: LatencyFigures
    agent_calls: Count
    lm_calls: Count
    cached_calls: Count
    input_tokens: Count
    output_tokens: Count
    cost_usd: Annotated[float, Field(ge=0.0, le=1e9)]
    # Keys unconstrained: JSON Schema's propertyNames is not enforced by every client or
    # fuzzer, so a key rule would refuse what the document seems to allow; the page shows
    # names as text only, and the body's size is bounded.
    by_kind: dict[str, Share] = Field(default_factory=dict, max_length=64)


class EvaluationReport(WireModel):
    """``POST /evaluations``'s body: a report as ``rlm eval oolong --json`` writes it.

    ``config``, ``windows``, ``questions`` and ``results`` are kept as given (bounded in size);
    ``modes`` is checked figure by figure; every result must name one of its modes
    (:meth:`unknown_modes`, checked when it is recorded).
    """

    benchmark: Annotated[str, Field(min_length=1, max_length=100)]
    config: dict[str, Any] = Field(default_factory=dict, max_length=100)
    windows: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    questions: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    modes: dict[str, ModeFigures] = Field(min_length=1, max_length=32)
    results: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_EVALUATION_RESULTS)

    def unknown_modes(self) -> list[int]:
        """Indexes of ``results`` naming no mode of ``modes`` (the report contradicts itself).

        A check across fields, so outside the JSON schema: the service refuses such a report
        with 409 ``CONFLICT``, as it does a body that contradicts its own path.
        """
        return [i for i, r in enumerate(self.results) if r.get("mode") not in self.modes]


class EvaluationSummary(WireModel):
    """A recorded run without its per-question parts (``GET /evaluations``'s items)."""

    run_id: str
    owner_id: str
    org_id: str | None = None
    created_at: datetime
    benchmark: str
    config: dict[str, Any]
    modes: dict[str, ModeFigures]


class EvaluationRun(EvaluationSummary):
    """A whole recorded run (``POST /evaluations``, ``GET /evaluations/{runId}``)."""

    windows: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    results: list[dict[str, Any]]


class EvaluationList(WireModel):
    """``GET /evaluations``: the runs the caller may see, newest first."""

    evaluations: list[EvaluationSummary]

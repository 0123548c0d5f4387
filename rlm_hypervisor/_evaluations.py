"""``client.evaluations``: evaluation runs (``rlm eval oolong`` reports) recorded by the API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlm.models.evaluations import EvaluationReport, EvaluationRun, EvaluationSummary
from rlm_hypervisor._calls import AsyncSend, Call, Send, _list_of, _model, _segment

__all__ = [
    "AsyncEvaluationsAPI",
    "EvaluationsAPI",
    "get_evaluation",
    "list_evaluations",
    "record_evaluation",
]


def record_evaluation(report: EvaluationReport | Mapping[str, Any]) -> Call[EvaluationRun]:
    """``POST /evaluations``: not repeated after a lost answer (a repeat records a second run)."""
    body = (
        report
        if isinstance(report, EvaluationReport)
        else EvaluationReport.model_validate(report, strict=False)
    )
    return Call(
        "POST",
        "/evaluations",
        _model(EvaluationRun),
        json=body.to_wire(exclude_none=False),
        idempotent=False,
    )


def list_evaluations(limit: int) -> Call[list[EvaluationSummary]]:
    """``GET /evaluations?limit=`` answering ``{"evaluations": [...]}``."""
    return Call(
        "GET", "/evaluations", _list_of(EvaluationSummary, "evaluations"), params={"limit": limit}
    )


def get_evaluation(run_id: str) -> Call[EvaluationRun]:
    """``GET /evaluations/{runId}``."""
    return Call("GET", f"/evaluations/{_segment(run_id)}", _model(EvaluationRun))


class EvaluationsAPI:
    """``client.evaluations``: record, list and read evaluation runs.

    Example:
        >>> report = json.loads(Path("report.json").read_text())   # doctest: +SKIP
        >>> run = client.evaluations.record(report)                # doctest: +SKIP
        >>> client.evaluations.get(run.run_id).modes["rlm"].accuracy  # doctest: +SKIP
    """

    def __init__(self, send: Send) -> None:
        self._send = send

    def record(self, report: EvaluationReport | Mapping[str, Any]) -> EvaluationRun:
        """Record a report (the JSON ``rlm eval oolong --json`` writes) as a run of the key's
        user, in its org (``POST /evaluations``).

        Raises:
            InvalidInput: The report is malformed (checked here first, then by the server).
        """
        return self._send(record_evaluation(report))

    def list(self, limit: int = 50) -> list[EvaluationSummary]:
        """The runs the key's user may see (its own and its org's), newest first."""
        return self._send(list_evaluations(limit))

    def get(self, run_id: str) -> EvaluationRun:
        """One run with its per-question results.

        Raises:
            EvaluationNotFound: No such run for this caller.
        """
        return self._send(get_evaluation(run_id))


class AsyncEvaluationsAPI:
    """``client.evaluations`` of :class:`~rlm_hypervisor.AsyncRLMClient`; see
    :class:`EvaluationsAPI`."""

    def __init__(self, send: AsyncSend) -> None:
        self._send = send

    async def record(self, report: EvaluationReport | Mapping[str, Any]) -> EvaluationRun:
        """See :meth:`EvaluationsAPI.record`."""
        return await self._send(record_evaluation(report))

    async def list(self, limit: int = 50) -> list[EvaluationSummary]:
        """See :meth:`EvaluationsAPI.list`."""
        return await self._send(list_evaluations(limit))

    async def get(self, run_id: str) -> EvaluationRun:
        """See :meth:`EvaluationsAPI.get`."""
        return await self._send(get_evaluation(run_id))

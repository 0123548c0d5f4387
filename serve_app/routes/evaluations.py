"""``/evaluations`` (extension): evaluation runs (``rlm eval oolong`` reports) recorded and
served by the API.

``POST /evaluations`` (``rlm:execute``: recording a run is part of running one) stores a
report as a run of the caller, in the caller's org; ``GET /evaluations`` and
``GET /evaluations/{runId}`` (``rlm:read``) answer the caller's runs and its org's — never
another org's, which answers 404 ``EVALUATION_NOT_FOUND`` as an unknown id does.

The runs live in ``evaluations.db`` in the state directory, or in the PostgreSQL database the
service shares (``RLM_DATABASE_URL``); every query runs in a worker thread, off the replica's
event loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from rlm.auth.scopes import SCOPE_EXECUTE, SCOPE_READ
from rlm.config import Settings
from rlm.eval.store import EVALUATIONS_DB_FILENAME, MAX_LIST, EvaluationStore
from rlm.models.errors import ErrorEnvelope
from rlm.models.evaluations import EvaluationList, EvaluationReport, EvaluationRun
from serve_app.deps import Caller, admitted
from serve_app.openapi import ROUTE_ERRORS, error_responses
from serve_app.responses import FastJSON

__all__ = ["Evaluations", "router"]

router = APIRouter(tags=["evaluations"])

Recorder = Annotated[Caller, Depends(admitted(SCOPE_EXECUTE))]
Reader = Annotated[Caller, Depends(admitted(SCOPE_READ))]
RunId = Annotated[str, Path(alias="runId", pattern=r"^[A-Za-z0-9_-]{1,100}$")]
_ERRORS = error_responses(*ROUTE_ERRORS)
#: A report that contradicts itself (a result of a mode it does not list) is well formed for
#: the schema but refused: 409, as a body contradicting its path is elsewhere.
_RECORD_ERRORS = _ERRORS | {
    409: {"model": ErrorEnvelope, "description": "The report contradicts itself (`CONFLICT`)"}
}


class Evaluations:
    """The replica's :class:`EvaluationStore`, opened on first use (in a worker thread).

    Args:
        settings: Where the state lives (``state_dir``, ``database_url``).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: EvaluationStore | None = None
        self._lock = threading.Lock()

    def _open(self) -> EvaluationStore:
        with self._lock:
            if self._store is None:
                path = self._settings.state_dir / EVALUATIONS_DB_FILENAME
                self._store = EvaluationStore(path, database_url=self._settings.database_dsn)
            return self._store

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a store method in a worker thread."""

        def run() -> Any:
            return getattr(self._open(), method)(*args, **kwargs)

        return await asyncio.to_thread(run)


def _answer(request: Request, body: Any, status: int = 200) -> FastJSON:
    return FastJSON(body, status_code=status, headers=getattr(request.state, "rate", None))


def _book(request: Request) -> Evaluations:
    book: Evaluations = request.app.state.evaluations
    return book


@router.post(
    "/evaluations",
    response_model=EvaluationRun,
    status_code=201,
    responses=_RECORD_ERRORS,
    summary="Record an evaluation run",
)
async def record_evaluation(body: EvaluationReport, caller: Recorder, request: Request) -> Any:
    """Store a report written by ``rlm eval oolong --json`` as a run of the caller (in its
    org): checked first (per-mode figures: 400 if malformed; a result of a mode the report
    does not list: 409)."""
    p = caller.principal
    run = await _book(request).call("record", body, owner_id=p.user_id, org_id=p.org)
    return _answer(request, run.to_wire(exclude_none=False), 201)


@router.get(
    "/evaluations",
    response_model=EvaluationList,
    responses=_ERRORS,
    summary="List evaluation runs",
)
async def list_evaluations(
    caller: Reader,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST, description="The most runs to answer.")] = 50,
) -> Any:
    """The caller's runs and its org's, newest first: accuracy, cost and latency per mode
    (without the per-question results)."""
    runs = await _book(request).call("list", caller.viewer, limit)
    return _answer(request, {"evaluations": [r.to_wire(exclude_none=False) for r in runs]})


@router.get(
    "/evaluations/{runId}",
    response_model=EvaluationRun,
    responses=_ERRORS | error_responses(404),
    summary="Get an evaluation run",
)
async def get_evaluation(run_id: RunId, caller: Reader, request: Request) -> Any:
    """One run with its windows, questions and per-question results."""
    run = await _book(request).call("get", caller.viewer, run_id)
    return _answer(request, run.to_wire(exclude_none=False))

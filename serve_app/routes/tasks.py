"""``/execute`` and ``/tasks``: run tasks, read them, cancel them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request

from rlm.auth.scopes import SCOPE_EXECUTE, SCOPE_READ
from rlm.errors import InvalidInput, TaskNotFound, error_from_payload
from rlm.models.base import parse_model
from rlm.models.errors import ErrorEnvelope
from rlm.models.tasks import CancelResponse, ExecuteRequest, ExecuteResponse, TaskStatus
from serve_app.deps import Caller, admitted, authenticated
from serve_app.openapi import json_body
from serve_app.responses import FastJSON

__all__ = ["router"]

router = APIRouter(tags=["tasks"])

#: ``POST /execute`` counts the request first (``admitted``): nothing costly happens before.
Executor = Annotated[Caller, Depends(admitted(SCOPE_EXECUTE))]
Canceller = Annotated[Caller, Depends(authenticated(SCOPE_EXECUTE))]
Reader = Annotated[Caller, Depends(authenticated(SCOPE_READ))]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorEnvelope} for code in (400, 401, 403, 429, 500, *codes)}


def _parse_execute(raw: bytes, content_type: str | None) -> ExecuteRequest:
    """The body of ``POST /execute``, validated (in a worker thread: it may be 64 MiB)."""
    if content_type is not None and "json" not in content_type.lower():
        raise InvalidInput("the body must be JSON (Content-Type: application/json)", field="body")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _json_error(raw) from None
    return parse_model(ExecuteRequest, document)


def _json_error(raw: bytes) -> InvalidInput:
    """Where the JSON broke, as a person looking at the file counts (the standard library
    says it best; only a broken body pays for a second parse)."""
    try:
        json.loads(raw)
    except json.JSONDecodeError as err:
        reason = f"{err.msg} at line {err.lineno}, column {err.colno}"
    except (UnicodeDecodeError, RecursionError, ValueError) as err:
        reason = str(err)
    else:  # orjson refuses what json accepts (NaN, huge numbers...)
        reason = "numbers must be finite and fit in 64 bits"
    return InvalidInput(f"body: not valid JSON: {reason}", field="body")


def _prepare(hv: Any, raw: bytes, content_type: str | None, caller: Caller) -> Any:
    """Everything costly about a task before the engine sees it: parse and validate the body,
    plan, compile regular expressions, read storage to cut a source into ranges, and put a
    large input into the object store. Runs in a worker thread, after admission."""
    body = _parse_execute(raw, content_type)
    if isinstance(body.input, dict) and "source" in body.input:
        # A task over a file in storage reads it: it needs the read scope as well.
        caller.principal.require_scope(SCOPE_READ)
    return body, hv.prepare(body, **caller.owner, reader=caller.reader)


@router.post(
    "/execute",
    response_model=ExecuteResponse,
    response_model_exclude_none=True,
    status_code=200,
    responses={202: {"model": ExecuteResponse}, **_errors(408)},
    summary="Execute a task",
    openapi_extra=json_body(ExecuteRequest),
)
async def execute(
    caller: Executor,
    request: Request,
    prefer: Annotated[str | None, Header()] = None,
) -> Any:
    """Run a task and answer with its result; ``options.async`` or ``Prefer: respond-async``
    answers 202 at once with the taskId, to poll with ``GET /tasks/{taskId}``."""
    # The caller is authenticated and its request counted (or refused) before the body is
    # even read: an unauthenticated or rate-limited caller costs nothing more.
    raw = await request.body()
    hv = request.app.state.hv
    content_type = request.headers.get("content-type")
    body, spec = await asyncio.to_thread(_prepare, hv, raw, content_type, caller)
    admission = replace(caller.admission, rate_counted=True)  # counted by the dependency
    rate = getattr(request.state, "rate", None) or {}
    if body.options.async_ or (prefer is not None and "respond-async" in prefer.lower()):
        task_id, headers = await hv.ask("submit", spec, admission)
        pending = {
            "taskId": task_id,
            "status": "pending",
            "executionTimeMs": 0,
            "agentCalls": 0,
            "decompositionDepth": 0,
            "success": False,
        }
        headers = {
            **rate,
            **headers,
            "Location": f"/v1/tasks/{task_id}",
            "Preference-Applied": "respond-async",
        }
        return FastJSON(pending, status_code=202, headers=headers)
    result, headers = await hv.ask("execute", spec, admission)
    assert isinstance(result, ExecuteResponse)
    headers = {**rate, **headers}
    if result.status == "failed" and result.error is not None:
        # The task ran and failed: the error's own status, with the whole result in details.
        err = error_from_payload(result.error.to_wire())
        err.details = {**err.details, "taskId": result.task_id, "result": result.to_wire()}
        raise err.with_headers(headers)
    return FastJSON(result.to_wire(), headers=headers)


@router.get(
    "/tasks/{taskId}",
    response_model=TaskStatus,
    response_model_exclude_none=True,
    responses=_errors(404),
    summary="Get task status",
)
async def get_task(
    task_id: Annotated[str, Path(alias="taskId", max_length=200)],
    caller: Reader,
    request: Request,
) -> Any:
    """A task's status, progress while it runs, and its result once it has ended."""
    status, headers = await request.app.state.hv.ask(
        "status", task_id, caller.viewer, caller.admission
    )
    return FastJSON(status.to_wire(), headers=headers)


@router.post(
    "/tasks/{taskId}/cancel",
    response_model=CancelResponse,
    responses=_errors(404),
    summary="Cancel a task",
)
async def cancel_task(
    task_id: Annotated[str, Path(alias="taskId", max_length=200)],
    caller: Canceller,
    request: Request,
) -> Any:
    """Cancel a running task; answers once none of its agent calls runs any more."""
    response, headers = await request.app.state.hv.ask(
        "cancel", task_id, caller.viewer, caller.admission
    )
    assert isinstance(response, CancelResponse)
    if response.status == "not_found":
        raise TaskNotFound(task_id).with_headers(headers)
    return FastJSON(response.to_wire(), headers=headers)


@router.get("/tasks", responses=_errors(), summary="List tasks (extension)")
async def list_tasks(
    request: Request,
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """The newest tasks the caller may see (its own; an admin's org's too)."""
    tasks, headers = await request.app.state.hv.ask(
        "list_tasks", caller.viewer, limit, caller.admission
    )
    return FastJSON({"tasks": [t.to_wire() for t in tasks]}, headers=headers)

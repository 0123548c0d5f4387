"""``/execute`` and ``/tasks``: run tasks, read them, cancel them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request

from rlm.auth.scopes import SCOPE_EXECUTE, SCOPE_READ
from rlm.errors import TaskNotFound, error_from_payload
from rlm.models.errors import ErrorEnvelope
from rlm.models.tasks import CancelResponse, ExecuteRequest, ExecuteResponse, TaskStatus
from serve_app.deps import Caller, authenticated
from serve_app.responses import FastJSON

__all__ = ["router"]

router = APIRouter(tags=["tasks"])

Executor = Annotated[Caller, Depends(authenticated(SCOPE_EXECUTE))]
Reader = Annotated[Caller, Depends(authenticated(SCOPE_READ))]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorEnvelope} for code in (400, 401, 403, 429, 500, *codes)}


@router.post(
    "/execute",
    response_model=ExecuteResponse,
    response_model_exclude_none=True,
    status_code=200,
    responses={202: {"model": ExecuteResponse}, **_errors(408)},
    summary="Execute a task",
)
async def execute(
    body: ExecuteRequest,
    caller: Executor,
    request: Request,
    prefer: Annotated[str | None, Header()] = None,
) -> Any:
    """Run a task and answer with its result; ``options.async`` or ``Prefer: respond-async``
    answers 202 at once with the taskId, to poll with ``GET /tasks/{taskId}``."""
    hv = request.app.state.hv
    if isinstance(body.input, dict) and "source" in body.input:
        # A task over a file in storage reads it: it needs the read scope as well.
        caller.principal.require_scope(SCOPE_READ)
    spec = hv.prepare(body, **caller.owner, reader=caller.reader)
    if body.options.async_ or (prefer is not None and "respond-async" in prefer.lower()):
        task_id, headers = await hv.ask("submit", spec, caller.admission)
        pending = {
            "taskId": task_id,
            "status": "pending",
            "executionTimeMs": 0,
            "agentCalls": 0,
            "decompositionDepth": 0,
            "success": False,
        }
        headers = {
            **headers,
            "Location": f"/v1/tasks/{task_id}",
            "Preference-Applied": "respond-async",
        }
        return FastJSON(pending, status_code=202, headers=headers)
    result, headers = await hv.ask("execute", spec, caller.admission)
    assert isinstance(result, ExecuteResponse)
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
    caller: Executor,
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

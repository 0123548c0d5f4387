"""``/execute`` and ``/tasks``: run tasks, read them, watch them, cancel them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from starlette.responses import Response

from rlm.auth.scopes import SCOPE_EXECUTE, SCOPE_READ
from rlm.errors import InvalidInput, RateLimited, RLMError, TaskNotFound, error_from_payload
from rlm.models.base import parse_model
from rlm.models.events import Trajectory
from rlm.models.tasks import (
    CancelResponse,
    ExecuteRequest,
    ExecuteResponse,
    TaskPage,
    TaskStatus,
)
from rlm.operations.base import is_builtin
from rlm.tasks.idempotency import MAX_KEY_LENGTH, REPLAYED_HEADER, IdempotencyKey
from rlm.tasks.listing import (
    CURSOR_PATTERN,
    MAX_PAGE,
    TASK_STATES,
    TASK_TYPES,
    TaskCursor,
    TaskQuery,
)
from serve_app.bodies import INLINE_BYTES, off_loop
from serve_app.crashes import chosen_task_id, engine_died, engine_lost
from serve_app.deps import Caller, authenticated, count_request
from serve_app.headroom import RateHeadroom
from serve_app.openapi import ROUTE_ERRORS, error_responses, json_body
from serve_app.query import instant, listed
from serve_app.responses import FastJSON, json_bytes
from serve_app.sse import EventStreamResponse, event_stream

if TYPE_CHECKING:  # the runtime imports Ray; the app must import without it
    from rlm.admission import Admission
    from rlm.runtime.run import TaskSpec

__all__ = ["router"]

router = APIRouter(tags=["tasks"])

#: ``POST /execute`` counts the request before anything costly happens, or in the engine call
#: that runs it when the caller is known to have room (see :mod:`serve_app.headroom`).
Executor = Annotated[Caller, Depends(authenticated(SCOPE_EXECUTE))]
Canceller = Annotated[Caller, Depends(authenticated(SCOPE_EXECUTE))]
Reader = Annotated[Caller, Depends(authenticated(SCOPE_READ))]
TaskId = Annotated[str, Path(alias="taskId", max_length=200)]

#: The largest event number a client may name (SQLite integers are 64-bit).
_MAX_EVENT_ID = 2**53


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(*ROUTE_ERRORS, *codes)


def _json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    # A route whose own answer is not JSON: its errors still are (FastAPI would otherwise
    # document them with the route's media type).
    envelope = {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
    return {
        code: {"description": "Error", "content": {"application/json": envelope}}
        for code in (*ROUTE_ERRORS, *codes)
    }


def _parse_execute(raw: bytes, content_type: str | None) -> tuple[Any, ExecuteRequest]:
    """The body of ``POST /execute``: the JSON document, and the request it validates to."""
    if content_type is not None and "json" not in content_type.lower():
        raise InvalidInput("the body must be JSON (Content-Type: application/json)", field="body")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _json_error(raw) from None
    return document, parse_model(ExecuteRequest, document)


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
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            # Printable ASCII; no space at either end (HTTP strips it, so the key would
            # change on the way).
            pattern=r"^[!-~]([ -~]*[!-~])?$",
            description="The same key and body within 24 h answer the first request's task "
            "(its result, or its status while it runs) instead of running it again; the same "
            "key with another body is refused (400).",
        ),
    ] = None,
) -> Any:
    """Run a task and answer with its result; ``options.async`` or ``Prefer: respond-async``
    answers 202 at once with the taskId, to poll with ``GET /tasks/{taskId}``."""
    # The caller is authenticated before the body is even read. Its request is counted
    # against its rate limits first (a rate-limited caller costs nothing more) unless the
    # engine said moments ago it had room: then the engine call that runs the task counts it
    # (one round trip instead of two), and a refusal on the way counts it then.
    principal = caller.principal
    headroom: RateHeadroom = request.app.state.headroom
    rate_key = principal.rate_limit_key
    fast = headroom.claim(rate_key)
    counted = [not fast]
    try:
        if not fast:
            headroom.record(rate_key, await count_request(request, principal))
        return await _execute(caller, request, prefer, idempotency_key, counted)
    except RLMError as err:
        headroom.record(rate_key, err.headers)
        if counted[0]:
            raise
        # Refused before the engine counted it (bad body, input policy, quota...): counted
        # now, as it would have been first; a rate refusal then answers instead.
        try:
            headroom.record(rate_key, await count_request(request, principal))
        except RateLimited as limited:
            raise limited from None
        raise
    finally:
        if fast:
            headroom.release(rate_key)


async def _execute(
    caller: Caller,
    request: Request,
    prefer: str | None,
    idempotency_key: str | None,
    counted: list[bool],
) -> Any:
    """``POST /execute`` once the caller is known; ``counted[0]`` turns true once the engine
    has counted the request."""
    raw = await request.body()
    hv = request.app.state.hv
    content_type = request.headers.get("content-type")
    chosen = chosen_task_id(request.headers)
    principal = caller.principal
    admission = replace(caller.admission, rate_counted=counted[0])
    rate = getattr(request.state, "rate", None) or {}

    def parse() -> tuple[ExecuteRequest, IdempotencyKey | None]:
        document, body = _parse_execute(raw, content_type)
        key = None
        if idempotency_key is not None:
            key = IdempotencyKey.of(principal.user_id, idempotency_key, document)
        return body, key

    # Parsing and validation of a large body run in a worker thread: the replica's event loop
    # keeps answering other requests meanwhile.
    body, key = await off_loop(len(raw), parse)
    if isinstance(body.input, dict) and "source" in body.input:
        # A task over a file in storage reads it: it needs the read scope as well.
        principal.require_scope(SCOPE_READ)
    # The org's input policies: a critical violation refuses the task (400, violations in
    # details); lower ones are recorded.
    security = request.app.state.security
    policies = await security.check_execute(body, principal, size_hint=len(raw))

    def prepare() -> TaskSpec:
        spec: TaskSpec = hv.prepare(body, task_id=chosen, reader=caller.reader, **caller.owner)
        # A file in storage: its text (lines, decoded bytes, Arrow strings) passes the same
        # policies as inline items, here (off the loop, bounded by maxScanChars) and before
        # admission, so a refused task costs no quota.
        security.check_source(
            spec.items, lambda: hv.storage, policies, principal, task_id=spec.task_id
        )
        return spec

    # Planning, regular expressions, storage reads, a large input's ray.put and an operation's
    # own code: off the loop. A small input of a built-in operation is planned in place
    # (a few microseconds; a thread hand-over each way costs more).
    if _prepares_inline(hv, body, len(raw)):
        spec = prepare()
    else:
        spec = await asyncio.to_thread(prepare)
    respond_async = body.options.async_ or (
        prefer is not None and "respond-async" in prefer.lower()
    )
    try:
        if respond_async:
            return await _submitted(request, caller, admission, spec, key, rate, counted)
        result, headers = await hv.ask("execute", spec, admission, key)
        counted[0] = True
    except Exception as lost:
        if not engine_died(lost):
            raise
        counted[0] = True  # the engine may have counted it before it died: never twice
        raise await engine_lost(hv, spec.task_id, caller.viewer, key, lost) from None
    assert isinstance(result, ExecuteResponse)
    request.app.state.headroom.record(caller.principal.rate_limit_key, headers)
    headers = {**rate, **headers}
    if result.status == "failed" and result.error is not None:
        # The task ran and failed: the error's own status, with the whole result in details.
        err = error_from_payload(result.error.to_wire())
        err.details = {**err.details, "taskId": result.task_id, "result": result.to_wire()}
        raise err.with_headers(headers)
    return FastJSON(result.to_wire(), headers=headers)


def _prepares_inline(hv: Any, body: ExecuteRequest, size: int) -> bool:
    """Whether preparing ``body`` is quick and runs no user code: a small input, not read
    from storage, of a built-in operation that calls no LM."""
    raw = body.input
    if size > INLINE_BYTES or not isinstance(raw, dict) or "source" in raw:
        return False
    registry = getattr(hv, "registry", None)
    if registry is None:
        return False
    try:
        op = registry.get(raw.get("operation"))
    except InvalidInput:
        return False  # prepared in a thread, which refuses it the usual way
    return is_builtin(op) and not op.uses_lm


async def _submitted(
    request: Request,
    caller: Caller,
    admission: Admission,
    spec: TaskSpec,
    key: IdempotencyKey | None,
    rate: dict[str, str],
    counted: list[bool],
) -> FastJSON:
    """``202 Accepted`` with the taskId; for a replayed key, the task as it stands now."""
    hv = request.app.state.hv
    task_id, headers = await hv.ask("submit", spec, admission, key)
    counted[0] = True
    request.app.state.headroom.record(caller.principal.rate_limit_key, headers)
    body: dict[str, Any] = {
        "taskId": task_id,
        "status": "pending",
        "executionTimeMs": 0,
        "agentCalls": 0,
        "decompositionDepth": 0,
        "success": False,
    }
    if REPLAYED_HEADER in headers:
        status, _ = await hv.ask("lookup", task_id, caller.viewer, None)
        assert isinstance(status, TaskStatus)
        body = (
            status.result.to_wire()
            if status.result is not None
            else body
            | {
                "status": status.status,
                "agentCalls": status.progress.current if status.progress is not None else 0,
            }
        )
    headers = {
        **rate,
        **headers,
        "Location": f"/v1/tasks/{task_id}",
        "Preference-Applied": "respond-async",
    }
    return FastJSON(body, status_code=202, headers=headers)


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


#: One or more task states, comma-separated (``running,pending``).
_STATUS = "(" + "|".join(TASK_STATES) + ")"
_STATUS_LIST = rf"^ *{_STATUS} *(, *{_STATUS} *)*$"
_DATE_TIME = {"format": "date-time"}


@router.get(
    "/tasks",
    response_model=TaskPage,
    response_model_exclude_none=True,
    responses=_errors(),
    summary="List tasks (extension)",
)
async def list_tasks(
    request: Request,
    caller: Reader,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    status: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=_STATUS_LIST,
            description="One or more (comma-separated) of " + ", ".join(TASK_STATES) + ".",
        ),
    ] = None,
    type: Annotated[
        str | None,
        Query(
            pattern="^(" + "|".join(TASK_TYPES) + ")$",
            description="One of " + ", ".join(TASK_TYPES) + ".",
        ),
    ] = None,
    operation: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=r"^[A-Za-z0-9_.:-]+$",
            description="The operation the task's input named (``rlm`` for RLM tasks).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            json_schema_extra=_DATE_TIME,
            description="Only tasks created at or after this RFC 3339 time.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            max_length=64,
            json_schema_extra=_DATE_TIME,
            description="Only tasks created before this RFC 3339 time.",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(
            pattern=CURSOR_PATTERN,
            description="The previous page's ``nextCursor`` (with the same filters).",
        ),
    ] = None,
) -> Any:
    """The tasks the caller may see (its own; an org admin's, its org's too), newest first,
    filtered in the store; ``nextCursor`` (when set) fetches the next, older page."""
    query = TaskQuery(
        statuses=frozenset(listed(status, "status") or ()),
        type=type,
        operation=operation,
        since=instant(since, "since"),
        until=instant(until, "until"),
        after=None if cursor is None else TaskCursor.decode(cursor),
        limit=limit,
    )
    page, headers = await request.app.state.hv.ask(
        "list_tasks", caller.viewer, query, caller.admission
    )
    return FastJSON(page.to_wire(), headers=headers)


_EVENTS_DOC = """A task's events as Server-Sent Events (``text/event-stream``), from the one after
``Last-Event-ID`` (or ``?lastEventId=``) to ``task.completed``, which ends the stream and
carries the result. Each message is ``id:`` (the event's number), ``event:`` (its type) and
``data:`` (``{"id", "event", "timestamp", "data"}`` as JSON); ``: keep-alive`` comments come
every ~15 s without events. Works for every task: progress for built-in operations; turns,
cells, sub-calls and child RLMs for RLM tasks. Counted once against the rate limit."""


@router.get(
    "/tasks/{taskId}/events",
    response_class=EventStreamResponse,
    responses={
        200: {
            "description": "The event stream",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **_json_errors(404),
    },
    summary="Stream a task's events (extension)",
    description=_EVENTS_DOC,
)
async def task_events(
    task_id: TaskId,
    caller: Reader,
    request: Request,
    last_event_id: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=0, le=_MAX_EVENT_ID)
    ] = None,
    last_event_id_query: Annotated[
        int | None, Query(alias="lastEventId", ge=0, le=_MAX_EVENT_ID)
    ] = None,
) -> Any:
    """See ``_EVENTS_DOC``; 404 before the stream starts for a task the caller may not see."""
    hv = request.app.state.hv
    after = last_event_id if last_event_id is not None else last_event_id_query or 0
    # The first answer is asked for at once, admitted: a refusal or a 404 is a plain error.
    first, headers = await hv.ask("events", task_id, caller.viewer, after, 0.0, caller.admission)
    heartbeat_s = request.app.state.settings.server.sse_heartbeat_s
    stream = event_stream(hv.ask, task_id, caller.viewer, after, first, heartbeat_s)
    headers = {**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventStreamResponse(stream, headers=headers)


@router.get(
    "/tasks/{taskId}/trajectory",
    response_model=Trajectory,
    responses={
        200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
        **_errors(404),
    },
    summary="Get a task's trajectory (extension)",
)
async def task_trajectory(
    task_id: TaskId,
    caller: Reader,
    request: Request,
    format: Annotated[Literal["json", "jsonl"], Query()] = "json",
) -> Any:
    """An RLM task's turns, code cells, sub-call batches and child RLMs, in order, then
    ``task.completed`` once it has ended: ``{"taskId", "status", "events"}``, or with
    ``?format=jsonl`` one event per line (``application/x-ndjson``) to download."""
    trajectory, headers = await request.app.state.hv.ask(
        "trajectory", task_id, caller.viewer, caller.admission
    )
    if format == "json":
        return FastJSON(trajectory, headers=headers)
    lines = b"".join(json_bytes(e) + b"\n" for e in trajectory["events"])
    disposition = f'attachment; filename="{task_id}.trajectory.jsonl"'
    headers = {**headers, "Content-Disposition": disposition}
    return Response(lines, media_type="application/x-ndjson", headers=headers)

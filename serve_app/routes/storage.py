"""``/storage/read``: a byte range of an object in a named connector."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from rlm.auth.scopes import SCOPE_READ
from rlm.models.storage import StorageReadRequest, StorageReadResponse
from serve_app.deps import Caller, admitted
from serve_app.openapi import ROUTE_ERRORS, error_responses
from serve_app.responses import FastJSON

__all__ = ["router"]

router = APIRouter(tags=["storage"])


@router.post(
    "/storage/read",
    response_model=StorageReadResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        **error_responses(*ROUTE_ERRORS),
    },
    summary="Read a byte range",
)
async def read(
    body: StorageReadRequest,
    request: Request,
    caller: Annotated[Caller, Depends(admitted(SCOPE_READ))],
    accept: Annotated[str | None, Header()] = None,
) -> Any:
    """Bytes ``[start, end)`` of ``key`` in ``connector``: base64 in JSON, or raw bytes when
    the request says ``Accept: application/octet-stream``. Only keys the connector's access
    policy gives the caller (its user's and its org's prefixes, the public one) are read."""
    service = request.app.state.storage
    # Reads block (disk, or a remote GET): keep them off the event loop. The connector's
    # access policy is checked first, in the same thread: a refused key is never touched.
    result = await asyncio.to_thread(service.read_request, body, caller.reader)
    headers = getattr(request.state, "rate", None) or {}
    if accept is not None and "application/octet-stream" in accept:
        meta = {
            "X-Read-Method": result.method,
            "X-Latency-Ms": f"{result.latency_ms:.3f}",
            "X-Object-Size": str(result.size),
        }
        return Response(
            bytes(result.data), media_type="application/octet-stream", headers={**headers, **meta}
        )
    return FastJSON(result.to_wire(), headers=headers)

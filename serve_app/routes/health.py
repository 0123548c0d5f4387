"""``/health``: is the service up (no token needed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from serve_app.deps import Caller, admitted
from serve_app.responses import FastJSON

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/health", summary="Service health (no token)")
async def health(request: Request, caller: Annotated[Caller, Depends(admitted(None))]) -> Any:
    """``{"status": "ok", "engine": {tasks, inflight, queued}}``."""
    del caller
    running = await request.app.state.hv.running_async()
    return FastJSON(
        {"status": "ok", "version": request.app.version, "engine": running},
        headers=getattr(request.state, "rate", None),
    )

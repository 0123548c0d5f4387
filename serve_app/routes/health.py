"""``/health``: is the service up (no token, never rate-limited).

Load balancers and Kubernetes probe this route many times a minute from one address; counting
those probes as an anonymous caller (10 a minute) would take a healthy service out of
rotation. So the route reads no token and counts nothing. What bounds its cost instead: the
engine's load is asked at most once a second per replica, whatever the number of probes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request

from serve_app.openapi import UNTHROTTLED
from serve_app.responses import FastJSON

__all__ = ["EngineLoad", "router"]

router = APIRouter(tags=["health"])


class EngineLoad:
    """The engine's load, asked at most once per ``ttl_s`` however many callers want it.

    Args:
        ttl_s: How long an answer is reused.
        clock: Monotonic seconds.
    """

    def __init__(self, ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._value: dict[str, int] | None = None
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, ask: Callable[[], Awaitable[dict[str, int]]]) -> dict[str, int]:
        """The cached load, or ``await ask()`` when it is older than ``ttl_s``."""
        if self._value is not None and self._clock() - self._at < self._ttl_s:
            return self._value
        async with self._lock:  # concurrent probes share one engine call
            if self._value is None or self._clock() - self._at >= self._ttl_s:
                self._value = await ask()
                self._at = self._clock()
            return self._value


@router.get(
    "/health",
    summary="Service health (no token, never rate-limited)",
    openapi_extra={UNTHROTTLED: True},
)
async def health(request: Request) -> Any:
    """``{"status": "ok", "version", "engine": {tasks, inflight, queued}}``; the engine's
    figures are at most a second old."""
    state = request.app.state
    running = await state.engine_load.get(state.hv.running_async)
    return FastJSON({"status": "ok", "version": request.app.version, "engine": running})

"""JSON answers: orjson-encoded, and the one error envelope."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse

from rlm.errors import RLMError
from rlm.jsonable import dumps

__all__ = ["FastJSON", "error_response", "json_bytes"]


def json_bytes(content: Any) -> bytes:
    """``content`` as compact JSON on one line, encoded with orjson (numpy values included)."""
    return dumps(content)


class FastJSON(JSONResponse):
    """A JSON response encoded with orjson (numpy values included)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def error_response(
    err: RLMError, request_id: str, headers: dict[str, str] | None = None
) -> FastJSON:
    """``{"error": {code, message, details?}, "requestId"}`` with the error's status."""
    merged = {**(headers or {}), **err.headers}
    if err.status == 401:
        merged.setdefault("WWW-Authenticate", 'Bearer realm="rlm"')
    if err.status == 429 and "Retry-After" not in merged:
        retry = err.details.get("retryAfterS", 1)
        reset = err.details.get("resetTime")
        if isinstance(reset, str):
            with contextlib.suppress(ValueError):
                retry = (datetime.fromisoformat(reset) - datetime.now(UTC)).total_seconds()
        merged["Retry-After"] = str(max(1, int(-(-float(retry) // 1))))
    body = {"error": err.to_payload(), "requestId": request_id}
    return FastJSON(body, status_code=err.status, headers=merged)

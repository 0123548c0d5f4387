"""Per-request plumbing: request ids, rate-limit headers, body size, the error handlers."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rlm.errors import InternalError, InvalidInput, RLMError
from rlm.models.base import _loc_to_field
from serve_app.crashes import engine_died
from serve_app.responses import error_response

__all__ = ["BodyLimit", "RequestIds", "install_error_handlers", "request_id_of"]

log = logging.getLogger("rlm.api")


def request_id_of(request: Request) -> str:
    """The request's id (from ``X-Request-ID`` when sane, else a new one)."""
    rid: str | None = getattr(request.state, "request_id", None)
    if rid is None:
        given = request.headers.get("x-request-id", "")
        rid = given if 0 < len(given) <= 128 and given.isprintable() else f"req-{uuid.uuid4().hex}"
        request.state.request_id = rid
    return rid


class RequestIds:
    """Answer with ``X-Request-ID`` when the request came without one (Serve's proxy sets it).

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` runs each request in an
    extra task with a streamed body, which cost about a millisecond per request here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(k == b"x-request-id" for k, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        rid = f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = rid  # what request_id_of reads

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        await self.app(scope, receive, tagged)


class BodyLimit:
    """Refuse bodies over ``max_bytes`` (by header or as they stream) before a route reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = InvalidInput(
            f"the request body is larger than {self.max_bytes} bytes",
            {"maxBytes": self.max_bytes},
            field="body",
        )
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, too_big)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_big
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, err: RLMError) -> None:
        request = Request(scope, receive)
        response = error_response(err, request_id_of(request))
        response.status_code = 413
        await response(scope, receive, send)


def _json_error(error: Any, document: Any) -> str:
    """``not valid JSON: Expecting value at line 2, column 12`` (the reason as json says it)."""
    reason = str((error.get("ctx") or {}).get("error") or "invalid JSON")
    loc = tuple(error.get("loc", ()))
    pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    if pos is None or not isinstance(document, str | bytes):
        return f"not valid JSON: {reason}"
    text = document.decode("utf-8", "replace") if isinstance(document, bytes) else document
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"not valid JSON: {reason} at line {line}, column {column}"


def _validation_to_invalid_input(exc: RequestValidationError) -> InvalidInput:
    errors = []
    for e in exc.errors():
        loc = tuple(e.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header"):
            where, loc = str(loc[0]), loc[1:]
        else:
            where = "body"
        field = _loc_to_field(loc) or where
        message = str(e.get("msg", "invalid"))
        if e.get("type") == "json_invalid":
            field = "body"
            message = _json_error(e, exc.body)
        errors.append({"field": field, "message": message, "in": where})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return InvalidInput(
        f"{first['field']}: {first['message']}", {"field": first["field"], "errors": errors}
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render every failure, FastAPI's own included, in the one envelope."""

    async def rlm_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, RLMError)
        from serve_app.audit import record_refusal  # imports this module

        record_refusal(request, exc)  # 401, 403 and 429 are security events
        return error_response(exc, request_id_of(request), getattr(request.state, "rate", None))

    async def validation(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, RequestValidationError)
        return error_response(_validation_to_invalid_input(exc), request_id_of(request))

    async def http_error(request: Request, exc: Exception) -> Any:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "INVALID_INPUT")
        err = RLMError(str(exc.detail))
        body_err = err.to_payload() | {"code": code}
        from serve_app.responses import FastJSON

        return FastJSON(
            {"error": body_err, "requestId": request_id_of(request)},
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    async def crash(request: Request, exc: Exception) -> Any:
        rid = request_id_of(request)
        if engine_died(exc):
            # The engine's core died under the call; Ray restarts it by itself.
            log.warning("request %s: the engine stopped (%s)", rid, type(exc).__name__)
            err = InternalError(
                "the engine stopped while answering this request; it restarts by itself "
                "within seconds: send the request again",
                {"requestId": rid, "retryable": True},
            )
            return error_response(err, rid)
        log.exception("request %s failed", rid)
        return error_response(
            InternalError("the service failed to answer this request", {"requestId": rid}), rid
        )

    app.add_exception_handler(RLMError, rlm_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crash)

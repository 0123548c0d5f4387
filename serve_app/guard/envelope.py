"""The error envelope as the proxy guard writes it: over ASGI, or as raw HTTP bytes.

The same ``{"error": {code, message, details}, "requestId"}`` the API's replicas answer
(:func:`serve_app.responses.error_response`), built without FastAPI: the guard runs in Serve's
proxy, in front of any replica.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any

import orjson
from starlette.types import Send

__all__ = ["envelope", "new_request_id", "raw_response", "send_envelope"]


def new_request_id() -> str:
    """A request id in the API's format."""
    return f"req-{uuid.uuid4().hex}"


def envelope(code: str, message: str, details: dict[str, Any] | None, request_id: str) -> bytes:
    """The JSON envelope's bytes."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return orjson.dumps({"error": error, "requestId": request_id})


def raw_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> bytes:
    """A whole HTTP/1.1 response carrying the envelope, that closes the connection.

    For answers written straight to a connection, outside any request (a request head that
    never arrived whole).
    """
    rid = request_id or new_request_id()
    body = envelope(code, message, details, rid)
    reason = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {rid}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def send_envelope(
    send: Send,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None,
    request_id: str,
    *,
    headers: dict[str, str] | None = None,
    close: bool = False,
) -> None:
    """Answer an ASGI request with the envelope; ``close`` ends the connection after it."""
    body = envelope(code, message, details, request_id)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})

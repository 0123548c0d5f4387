"""Turn an HTTP error answer back into the server's typed error (:mod:`rlm.errors`)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from rlm.errors import InternalError, RLMError, error_from_payload

__all__ = ["error_from_response", "unexpected_response"]

# Enough of a foreign body (a proxy's HTML page, a stack trace) to diagnose, not to flood logs.
_BODY_EXCERPT_CHARS = 1000


def _attach(err: RLMError, response: httpx.Response, request_id: str | None) -> RLMError:
    # The classes are shared with the server and declare no HTTP fields, so the SDK sets them
    # on the instance: ``err.request_id`` for support tickets, ``err.status_code`` as received.
    vars(err).update(request_id=request_id, status_code=response.status_code)
    return err


def error_from_response(response: httpx.Response) -> RLMError:
    """The :class:`~rlm.errors.RLMError` subclass an error answer stands for.

    The API's envelope ``{"error": {"code", "message", "details"?}, "requestId"}`` becomes the
    class registered for ``code`` (an unknown code gives the base :class:`RLMError`). Any other
    body (HTML from a proxy, plain text, JSON of another shape) becomes
    :class:`~rlm.errors.InternalError` with ``status`` and a ``body`` excerpt in ``details``.

    Args:
        response: A non-2xx response whose body has been read.

    Returns:
        The error, with ``request_id`` (``str | None``) and ``status_code`` (``int``) set.
    """
    request_id = response.headers.get("X-Request-ID")
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        payload = dict(error)
        payload["message"] = str(payload.get("message", ""))
        details = payload.get("details")
        if details is not None and not isinstance(details, dict):
            # error_from_payload wants a mapping; keep a list or scalar rather than lose it.
            payload["details"] = {"details": details}
        if isinstance(body.get("requestId"), str):
            request_id = body["requestId"]
        return _attach(error_from_payload(payload), response, request_id)
    err = InternalError(
        f"HTTP {response.status_code} {response.reason_phrase} without the API's error envelope",
        {"status": response.status_code, "body": response.text[:_BODY_EXCERPT_CHARS]},
    )
    return _attach(err, response, request_id)


def unexpected_response(response: httpx.Response, what: str, reason: str) -> InternalError:
    """An :class:`~rlm.errors.InternalError` for a 2xx body that is not the promised shape.

    Not :class:`~rlm.errors.InvalidInput`: the caller's request was fine, the answer was not
    (usually a server and SDK of different versions).

    Args:
        response: The successful response.
        what: The shape that was expected (a model name).
        reason: Why it did not fit.
    """
    err = InternalError(
        f"the server's answer is not a valid {what}: {reason}",
        {"status": response.status_code, "body": response.text[:_BODY_EXCERPT_CHARS]},
    )
    _attach(err, response, response.headers.get("X-Request-ID"))
    return err

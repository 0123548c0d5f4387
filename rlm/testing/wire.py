"""OpenAI's chat completion wire shapes, as the fake LM server reads and writes them.

Requests become :class:`~rlm.testing.responders.ChatRequest`; answers are the JSON of
``chat.completion`` and ``model`` objects, and errors are :class:`Refusal` bodies
``{"error": {"message", "type", "param", "code"}}`` that the ``openai`` client maps to its
exception classes (401 ``AuthenticationError``, 404 ``NotFoundError``, ...).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from rlm.testing.responders import ChatRequest
from rlm.testing.tokens import count_tokens

__all__ = ["Refusal", "completion_body", "model_body", "parse_chat_request"]


class Refusal(Exception):
    """An error answer in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

    Raised inside a handler and turned into the response by :meth:`response`.

    Args:
        status: The HTTP status.
        message: Human-readable, worded as OpenAI words it where the case exists there.
        type: OpenAI's error ``type`` (``invalid_request_error``, ``server_error``, ...).
        code: OpenAI's error ``code`` (``invalid_api_key``, ``model_not_found``, ...).
        param: The request field at fault, if any.
        headers: Extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The JSON error response."""
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def _text(content: Any) -> str:
    """Message content as one string: a string, ``None``, or a list of ``text`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [part for part in parts if isinstance(part, str)]
        if len(texts) == len(parts):
            return "".join(texts)
    raise Refusal(
        400, "Invalid message content: expected a string or text parts.", param="messages"
    )


def parse_chat_request(body: bytes, headers: Mapping[str, str]) -> ChatRequest:
    """Read a chat completion body.

    Args:
        body: The raw request body.
        headers: The request headers (names lower-cased).

    Raises:
        Refusal: The 400 OpenAI would answer to a malformed body.
    """
    try:
        raw = json.loads(body)
    except ValueError:
        raise Refusal(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(raw, dict):
        raise Refusal(400, "The request body must be a JSON object.")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise Refusal(400, "You must provide a model parameter.", param="model")
    messages = raw.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Refusal(400, "'messages' must be a non-empty array.", param="messages")
    parsed: list[dict[str, str]] = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise Refusal(400, "Each message needs a string 'role'.", param="messages")
        parsed.append({"role": message["role"], "content": _text(message.get("content"))})
    max_tokens = raw.get("max_completion_tokens", raw.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise Refusal(400, "'max_tokens' must be a positive integer.", param="max_tokens")
    temperature = raw.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        raise Refusal(400, "'temperature' must be a number.", param="temperature")
    return ChatRequest(
        model=model,
        messages=parsed,
        max_tokens=max_tokens,
        temperature=None if temperature is None else float(temperature),
        raw=raw,
        headers=dict(headers),
    )


def completion_body(
    chat: ChatRequest, text: str, finish_reason: str, prompt_tokens: int, *, usage: bool = True
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice.

    Args:
        chat: The request answered.
        text: The completion text (already cut to ``max_tokens``).
        finish_reason: ``"stop"``, or ``"length"`` when the text was cut.
        prompt_tokens: The prompt's token count.
        usage: Include ``usage`` (completion tokens counted from ``text``).
    """
    body: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "system_fingerprint": "fp_rlm_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
    }
    if usage:
        completion_tokens = count_tokens(text)
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return body


def model_body(model_id: str) -> dict[str, Any]:
    """A ``model`` object, as ``GET /v1/models`` lists them."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "rlm-testing"}

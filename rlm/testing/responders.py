"""What the fake LM server receives (:class:`ChatRequest`) and how it decides what to say.

A *responder* is a plain function ``ChatRequest -> str``. The server counts tokens, applies
``max_tokens`` and wraps the text in OpenAI's wire shape; the responder only picks the words.

* :func:`echo` (the default) answers ``"echo: <h> <n>"``, where ``<h>`` is the first 8 hex
  digits of the SHA-256 of the last user message (UTF-8) and ``<n>`` its length in characters.
  The same prompt always gets the same reply, and different prompts almost surely differ.
* :func:`scripted` answers canned replies in order, starting over after the last.
* :func:`by_prompt` answers ``fn(last user message)``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TENANT_HEADER", "ChatRequest", "Responder", "by_prompt", "echo", "scripted"]

TENANT_HEADER = "x-rlm-tenant"
"""Requests carrying this header are also measured per tenant."""


@dataclass(frozen=True)
class ChatRequest:
    """One ``POST /v1/chat/completions`` as the server understood it.

    Attributes:
        model: The requested model.
        messages: ``{"role", "content"}`` dicts in order; content parts sent as a list are
            joined into one string.
        max_tokens: ``max_completion_tokens`` or ``max_tokens`` when given.
        temperature: The requested temperature, if any (it changes nothing).
        raw: The JSON body as received.
        headers: Request headers, names lower-cased.
    """

    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def last_user_message(self) -> str:
        """The content of the last ``user`` message (``""`` when there is none)."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return message["content"]
        return ""

    @property
    def tenant(self) -> str | None:
        """The ``X-RLM-Tenant`` header, if sent."""
        return self.headers.get(TENANT_HEADER)


Responder = Callable[[ChatRequest], str]
"""Decides the completion text of a request. Called on the server's event loop: keep it quick."""


def echo(request: ChatRequest) -> str:
    """The default responder: ``"echo: " + sha256(last user message)[:8] + " " + its length``.

    Example:
        >>> echo(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
        'echo: 8f434346 2'
    """
    prompt = request.last_user_message
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    return f"echo: {digest[:8]} {len(prompt)}"


def scripted(replies: Iterable[str]) -> Responder:
    """A responder that answers ``replies`` in order, cycling after the last one.

    Thread-safe: concurrent requests each take the next reply (in arrival order at the server).

    Args:
        replies: The canned replies; at least one.

    Raises:
        ValueError: If ``replies`` is empty.

    Example:
        >>> answer = scripted(["a", "b"])
        >>> request = ChatRequest(model="m", messages=[])
        >>> [answer(request) for _ in range(3)]
        ['a', 'b', 'a']
    """
    script = list(replies)
    if not script:
        raise ValueError("scripted() needs at least one reply")
    lock = threading.Lock()
    position = 0

    def respond(request: ChatRequest) -> str:
        nonlocal position
        with lock:
            reply = script[position % len(script)]
            position += 1
        return reply

    return respond


def by_prompt(fn: Callable[[str], str]) -> Responder:
    """A responder that answers ``fn(last user message)``.

    Example:
        >>> shout = by_prompt(str.upper)
        >>> shout(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))
        'HI'
    """

    def respond(request: ChatRequest) -> str:
        return fn(request.last_user_message)

    return respond

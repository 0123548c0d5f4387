"""One language-model call: what is asked, what came back, and what it cost.

These are plain values that cross process boundaries (agent → core → gateway). Token counts
before a call are *estimates* used to reserve budgets and rate limits; after it, the
provider's own ``usage`` is what is charged.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "LMReply",
    "LMRequest",
    "LMUsage",
    "cost_usd",
    "estimate_tokens",
    "memo_key",
]

#: Every message costs a few tokens of framing (role, separators) in chat formats.
_PER_MESSAGE = 8


def estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """A deliberately generous estimate of a prompt's tokens, before a tokenizer has seen it.

    Budgets and rate limits reserve the worst case before a call is sent, so the estimate
    errs high: one token per 3 UTF-8 bytes (English averages ~4 characters a token) plus a
    few per message. The provider's ``usage`` replaces it once the call is answered.
    """
    total = 0
    for message in messages:
        total += math.ceil(len(str(message.get("content", "")).encode("utf-8")) / 3)
        total += _PER_MESSAGE
    return total


def cost_usd(
    input_tokens: int, output_tokens: int, input_price_per_mtok: float, output_price_per_mtok: float
) -> float:
    """USD for a call from its token counts and per-million-token prices."""
    return (input_tokens * input_price_per_mtok + output_tokens * output_price_per_mtok) / 1e6


@dataclass(frozen=True, slots=True)
class LMRequest:
    """A chat completion as an operation asks for it.

    Attributes:
        messages: ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``.
        max_tokens: Completion tokens at most (the provider's default when ``None``).
        temperature: Sampling temperature; ``0`` makes the call memoisable.
        model: A model of the provider (its default when ``None``).
        provider: A configured provider's name (the default provider when ``None``).
        memo: Whether a memoised answer may be used (and this one memoised).
        purpose: What the call is for (``leaf``, ``combine``, ``retry``...), for records.
    """

    messages: tuple[dict[str, str], ...]
    max_tokens: int | None = None
    temperature: float = 0.0
    model: str | None = None
    provider: str | None = None
    memo: bool = True
    purpose: str = "call"

    @staticmethod
    def chat(
        prompt: str,
        *,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        model: str | None = None,
        provider: str | None = None,
        memo: bool = True,
        purpose: str = "call",
    ) -> LMRequest:
        """A one-turn request: an optional system message and one user message."""
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": prompt})
        return LMRequest(
            messages=tuple(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            model=model,
            provider=provider,
            memo=memo,
            purpose=purpose,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "messages": [dict(m) for m in self.messages],
            "maxTokens": self.max_tokens,
            "temperature": self.temperature,
            "model": self.model,
            "provider": self.provider,
            "memo": self.memo,
            "purpose": self.purpose,
        }


@dataclass(frozen=True, slots=True)
class LMReply:
    """What a call answered.

    Attributes:
        text: The assistant message's content.
        provider: The provider that answered.
        model: The model that answered.
        input_tokens: Prompt tokens (the provider's count; 0 when cached).
        output_tokens: Completion tokens (the provider's count; 0 when cached).
        cost_usd: What the call cost (0 when cached).
        cached: Answered from the memo cache (nothing was sent).
        latency_s: Wall time of the call as the gateway saw it.
        finish_reason: The provider's ``finish_reason``.
    """

    text: str
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    latency_s: float = 0.0
    finish_reason: str | None = None


@dataclass(slots=True)
class LMUsage:
    """What a task's LM calls used; ``ExecuteResponse.usage`` on the wire."""

    lm_calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    by_model: dict[str, int] = field(default_factory=dict)

    def add(self, reply: LMReply) -> None:
        """Count one answered call."""
        self.lm_calls += 1
        if reply.cached:
            self.cached_calls += 1
        self.input_tokens += reply.input_tokens
        self.output_tokens += reply.output_tokens
        self.cost_usd += reply.cost_usd
        key = f"{reply.provider}/{reply.model}"
        self.by_model[key] = self.by_model.get(key, 0) + 1

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def to_wire(self) -> dict[str, Any]:
        """The ``usage`` object of an ``ExecuteResponse``."""
        return {
            "lmCalls": self.lm_calls,
            "cachedCalls": self.cached_calls,
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "costUsd": round(self.cost_usd, 9),
        }


def memo_key(provider: str, model: str, request: LMRequest, max_tokens: int) -> str:
    """The memo cache's key: a digest of everything that decides a temperature-0 answer."""
    body = orjson.dumps(
        {
            "provider": provider,
            "model": model,
            "messages": [[m.get("role", ""), m.get("content", "")] for m in request.messages],
            "maxTokens": max_tokens,
            "temperature": request.temperature,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(body).hexdigest()

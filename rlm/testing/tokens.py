"""The fake LM server's token rule: one deterministic count for usage and for ``max_tokens``.

Real tokenizers are model-specific; tests need a rule they can recompute by hand::

    tokens(text)          = ceil(len(text) / 4)              # characters, not bytes
    prompt_tokens         = sum(4 + tokens(m.content) for m in messages)
    completion_tokens     = tokens(reply)
    total_tokens          = prompt_tokens + completion_tokens

A reply longer than ``max_tokens`` tokens is cut to its first ``4 * max_tokens`` characters,
which is the longest prefix the same rule counts as ``max_tokens`` tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "CHARS_PER_TOKEN",
    "TOKENS_PER_MESSAGE",
    "count_prompt_tokens",
    "count_tokens",
    "truncate_to_tokens",
]

CHARS_PER_TOKEN = 4
"""Characters counted as one token (rounded up)."""

TOKENS_PER_MESSAGE = 4
"""Tokens each prompt message costs on top of its content (role and framing)."""


def count_tokens(text: str) -> int:
    """Count the tokens of a text: ``ceil(len(text) / 4)``.

    Example:
        >>> count_tokens(""), count_tokens("abcd"), count_tokens("abcde")
        (0, 1, 2)
    """
    return -(-len(text) // CHARS_PER_TOKEN)


def count_prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    """Count a prompt's tokens: 4 per message plus the tokens of its ``content``.

    Example:
        >>> count_prompt_tokens([{"role": "user", "content": "hello"}])
        6
    """
    return sum(TOKENS_PER_MESSAGE + count_tokens(m["content"]) for m in messages)


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """Cut a text to at most ``max_tokens`` tokens (its first ``4 * max_tokens`` characters).

    Example:
        >>> truncate_to_tokens("abcdefghij", 2)
        'abcdefgh'
    """
    return text[: max(max_tokens, 0) * CHARS_PER_TOKEN]

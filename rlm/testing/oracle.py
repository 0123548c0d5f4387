"""Oracle language models: answer LM operations' prompts from known data.

With an oracle in place of a model, every mode that can see the lines must score 100 %: that
proves the harness (prompting, parsing, counting, combining) and leaves the model as the only
thing a real run measures. An oracle is a function ``prompt -> reply``; plug it into
:class:`rlm.lm.handle.FunctionLM` (in-process) or into the loopback OpenAI-compatible server
(:mod:`rlm.testing.openai_server`) as its responder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

__all__ = ["classify_lines", "classify_oracle"]

_ITEM = re.compile(r"^(\d+)\. (.*)$")


def classify_lines(prompt: str) -> list[tuple[int, str]]:
    """The numbered items of an ``llm_classify`` prompt (after its ``Lines:`` line)."""
    _, sep, body = prompt.partition("\nLines:\n")
    if not sep:
        return []
    items: list[tuple[int, str]] = []
    for line in body.splitlines():
        match = _ITEM.match(line)
        if match is None:
            # The retry prompt appends a note after the items: they end at the first other line.
            break
        items.append((int(match.group(1)), match.group(2)))
    return items


def classify_oracle(
    label_of: Mapping[str, str] | Callable[[str], str], default: str = "unknown"
) -> Callable[[str], str]:
    """An oracle for ``llm_classify`` prompts.

    Args:
        label_of: The gold label of each line's text (a mapping or a function).
        default: The answer for a line the mapping does not know.

    Returns:
        ``prompt -> reply``: one ``<number>: <label>`` line per item of the prompt.
    """

    def label(text: str) -> str:
        if callable(label_of):
            return label_of(text)
        return label_of.get(text, default)

    def reply(prompt: str) -> str:
        return "\n".join(f"{n}: {label(text)}" for n, text in classify_lines(prompt))

    return reply

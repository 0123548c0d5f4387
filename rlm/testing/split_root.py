"""A scripted RLM root that splits its context into K sub-calls: the RLM benchmark's model.

The same replies drive this service's RLM mode and the reference implementation (``rlms``
0.1.3), so a benchmark compares the two runtimes on identical model output. The query names
K (:func:`split_query`); the root's first reply is one ```` ```repl ```` block that cuts
``context`` into K parts of whole lines, sends one prompt per part through
``llm_query_batched`` (:data:`SUB_HEAD` then the part's lines), adds up the sub-calls' line
counts and sets ``answer["content"]`` and ``answer["ready"]``, so the run ends after that
turn with the context's line count as its answer. A sub-call is answered with the number of
lines after :data:`SUB_HEAD`.

A request is the root's when its first message is a system prompt of an RLM (both
implementations open with "You are a Recursive Language Model"); the query is read from any
user message that starts ``Answer the following:`` (this service sends the query and turn 1
as one message, the reference as two).

Example:
    ``python -m rlm.testing.openai_server --latency-ms 100 --split-root``
"""

from __future__ import annotations

import re

from rlm.testing.responders import ChatRequest

__all__ = ["SUB_HEAD", "UNANSWERABLE", "root_code", "split_query", "split_root_responder"]

#: The first line of every sub-call prompt the root's code sends.
SUB_HEAD = "Count the lines below. Answer with the number only.\n\n"

#: The reply to a request the script does not recognise.
UNANSWERABLE = "I cannot answer this prompt."

_ROOT_SYSTEM = "You are a Recursive Language Model"
_QUERY = re.compile(r"^Answer the following: .*?split into (\d+) sub-calls", re.DOTALL)


def split_query(parts: int) -> str:
    """The query that asks the scripted root for ``parts`` sub-calls.

    Example:
        >>> split_query(64)
        'How many lines does the context hold? Count them split into 64 sub-calls.'
    """
    return f"How many lines does the context hold? Count them split into {parts} sub-calls."


def root_code(parts: int) -> str:
    """The REPL code of the root's reply (works in both REPLs: standard library only)."""
    return (
        f"HEAD = {SUB_HEAD!r}\n"
        "lines = context.splitlines() if isinstance(context, str) else [str(x) for x in context]\n"
        f"size = max(1, -(-len(lines) // {parts}))\n"
        "prompts = [HEAD + '\\n'.join(lines[i : i + size]) for i in range(0, len(lines), size)]\n"
        "replies = llm_query_batched(prompts)\n"
        "total = sum(int(r) for r in replies)\n"
        "print(len(prompts), 'sub-calls,', total, 'lines')\n"
        'answer["content"] = str(total)\n'
        'answer["ready"] = True'
    )


def _root_reply(parts: int) -> str:
    return (
        f"I will count the lines in {parts} sub-calls and add them up.\n\n"
        f"```repl\n{root_code(parts)}\n```\n"
    )


def split_root_responder(request: ChatRequest) -> str:
    """Answer a request of the split benchmark (see the module docstring).

    Returns:
        The root's reply with its ```` ```repl ```` block, a sub-call's line count, or
        :data:`UNANSWERABLE`.
    """
    messages = request.messages
    if messages and messages[0]["role"] == "system":
        if not messages[0]["content"].startswith(_ROOT_SYSTEM):
            return UNANSWERABLE
        for message in messages:
            if message["role"] != "user":
                continue
            found = _QUERY.match(message["content"])
            if found is not None:
                return _root_reply(int(found.group(1)))
        return UNANSWERABLE
    prompt = request.last_user_message
    if prompt.startswith(SUB_HEAD):
        body = prompt[len(SUB_HEAD) :]
        return str(len(body.splitlines()))
    return UNANSWERABLE

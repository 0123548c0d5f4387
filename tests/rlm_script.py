"""Scripted root models for RLM tests, served by the fake LM server.

``FakeLMServer`` stands in for a paid LM API (this machine reaches none). Its responder here
answers three kinds of requests:

* an RLM's turn (its system prompt names a Recursive Language Model) whose first user
  message states a query registered with :func:`script`: that script's reply for the turn;
* a child RLM's turn (no query: its prompt is its context): :data:`CHILD` scripts, keyed by a
  marker the child's prompt starts with (its head is shown in the metadata preview);
* anything else (a sub-call): ``sub:<prompt>``.

A script is a list of replies (turn 1, 2, ...; the reply to the last call after
``maxIterations`` is the list's next item, or ``FINAL(out of turns)``) or a function of the
:class:`Turn`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rlm.testing import ChatRequest

__all__ = ["CHILD", "Turn", "responder", "script", "sub_answer"]

_QUERY_PREFIX = "Answer the following: "
_LAST_CALL = "Please provide a final answer"


@dataclass(frozen=True)
class Turn:
    """One RLM turn as the fake server received it."""

    number: int
    last_call: bool
    request: ChatRequest

    @property
    def prompt(self) -> str:
        """The user message that opened this turn (the previous cells' feedback...)."""
        return self.request.last_user_message


Script = Sequence[str] | Callable[[Turn], str]

_SCRIPTS: dict[str, Script] = {}
#: Child RLM scripts by the marker their prompt starts with.
CHILD: dict[str, Script] = {}
_lock = threading.Lock()


def script(replies: Script, query: str | None = None) -> str:
    """Register a root script; returns the query that selects it (unique unless given)."""
    chosen = query or f"rlm test {uuid.uuid4().hex[:12]}"
    with _lock:
        _SCRIPTS[chosen] = replies
    return chosen


def sub_answer(prompt: str) -> str:
    """What a sub-call answers."""
    return f"sub:{prompt}"


def _reply(chosen: Script, turn: Turn) -> str:
    if callable(chosen):
        return chosen(turn)
    index = turn.number - 1
    if index < len(chosen):
        return chosen[index]
    return "FINAL(out of turns)"


def responder(request: ChatRequest) -> str:
    """The fake server's responder (see the module docstring)."""
    messages = request.messages
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if "Recursive Language Model" not in system:
        return sub_answer(request.last_user_message)
    number = sum(1 for m in messages if m["role"] == "assistant") + 1
    turn = Turn(number, _LAST_CALL in request.last_user_message, request)
    first = messages[1]["content"]
    if first.startswith(_QUERY_PREFIX):
        query = first[len(_QUERY_PREFIX) :].split("\n\n", 1)[0]
        with _lock:
            chosen = _SCRIPTS.get(query)
        if chosen is None:
            return f"FINAL(no script for {query!r})"
        return _reply(chosen, turn)
    with _lock:
        children = dict(CHILD)
    for marker, chosen in children.items():
        if f"<head>\n{marker}" in first:
            return _reply(chosen, turn)
    return "FINAL(no child script)"

"""The turn loop of one RLM: ask the root, run its ```` ```repl ```` blocks, feed back, repeat.

Pure: it is given a ``complete(messages)`` function (the root's model, bound by the caller), a
REPL (:class:`Repl`: a sandbox, or a double) and an event sink, and knows nothing of Ray,
providers or processes. One call of :func:`run_loop` is one RLM, root or child:

1. the conversation opens with the system prompt and turn 1's prompt (the query and the
   context's metadata, never the context itself);
2. each turn: the root's reply; every ```` ```repl ```` block of it runs, in order, in the
   REPL's persistent namespace; the turn has answered when a cell ended with
   ``answer["ready"]`` (the first such cell's content), else on a ``FINAL_VAR(name)`` /
   ``FINAL(text)`` in the reply (see :func:`rlm.rlmmode.answer.turn_answer`);
3. otherwise the cells' feedback (truncated head + tail) opens the next turn;
4. after ``max_iterations`` turns without an answer, one last call asks for it, and its reply
   is the answer (:func:`rlm.rlmmode.answer.answer_from_last_reply`).

What stops a loop early is the caller's: ``complete`` or the REPL raise (the task was
cancelled, a budget is spent), and the exception propagates.

Events (see :mod:`rlm.tasks.events`): ``rlm.turn`` after each reply, ``rlm.cell`` after each
cell, ``rlm.answer`` at the end, each with the RLM's ``path``; long texts are cut to
:data:`EVENT_TEXT_CHARS` (head + tail).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rlm.rlmmode.answer import answer_from_last_reply, turn_answer
from rlm.rlmmode.blocks import extract_code_blocks
from rlm.rlmmode.feedback import FEEDBACK_LIMIT, format_cell_feedback, format_turn_feedback
from rlm.rlmmode.prompts import context_metadata, final_turn_prompt, system_prompt, turn_prompt
from rlm.sandbox.host import CellResult, Lookup

__all__ = [
    "EVENT_TEXT_CHARS",
    "Complete",
    "Completion",
    "EventSink",
    "LoopConfig",
    "LoopResult",
    "Messages",
    "Repl",
    "clip",
    "run_loop",
]

#: Characters of a reply, code, output or answer kept in an event (head + tail).
EVENT_TEXT_CHARS = 2_000

Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Completion:
    """The root model's reply to one turn.

    Attributes:
        text: The reply.
        input_tokens: Prompt tokens the provider reported (0 when answered from the memo).
        output_tokens: Completion tokens.
        latency_ms: Wall time of the call.
        cached: Answered from the memo cache.
    """

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    cached: bool = False


#: Asks the root's model for the next reply to the conversation so far.
Complete = Callable[[Messages], Completion]

#: Receives an event: ``(type, data)`` (see :mod:`rlm.tasks.events`).
EventSink = Callable[[str, dict[str, Any]], None]


class Repl(Protocol):
    """The REPL an RLM drives (the session's sandbox, whose ``context`` is already set)."""

    def run(self, code: str) -> CellResult:
        """Run one cell; what the code did wrong is in the result, never raised."""
        ...

    def lookup(self, name: str) -> Lookup:
        """``str()`` of a variable and the names of all of them (for ``FINAL_VAR``)."""
        ...


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """One RLM's place in the tree and its bounds.

    Attributes:
        max_iterations: Turns before the last call.
        depth: This RLM's depth: 0 for the root, 1 for a child the root started...
        max_depth: The task's ``maxDepth`` (whether this RLM may start children is
            ``depth + 1 < max_depth``, the reference's rule).
        path: This RLM's path in events (``"0"``, ``"0.1"``...).
        legacy_final: Also teach ``FINAL(...)`` / ``FINAL_VAR(...)`` in the system prompt
            (they are read either way).
        feedback_limit: Characters of a cell's feedback the root reads.
    """

    max_iterations: int = 30
    depth: int = 0
    max_depth: int = 1
    path: str = "0"
    legacy_final: bool = False
    feedback_limit: int = FEEDBACK_LIMIT


@dataclass(frozen=True, slots=True)
class LoopResult:
    """How an RLM ended.

    Attributes:
        answer: The final answer.
        turns: Root turns taken (the last call at ``max_iterations`` not counted).
        forced: Whether the answer came from the last call at ``max_iterations``.
    """

    answer: str
    turns: int
    forced: bool


def clip(text: str | None, limit: int = EVENT_TEXT_CHARS) -> str | None:
    """``text`` cut to ``limit`` characters, head and tail kept (``None`` stays ``None``)."""
    if text is None or len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit:,} characters cut] ...\n{text[-half:]}"


class _Namespace(Mapping[str, str]):
    """The REPL's variables as :func:`turn_answer` reads them, fetched only when asked."""

    def __init__(self, repl: Repl) -> None:
        self._repl = repl
        self._names: list[str] | None = None
        self._values: dict[str, str | None] = {}

    def _lookup(self, name: str) -> str | None:
        if name not in self._values:
            found = self._repl.lookup(name)
            self._values[name] = found.value
            self._names = found.names
        return self._values[name]

    def __getitem__(self, name: str) -> str:
        value = self._lookup(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        if self._names is None:
            self._names = self._repl.lookup("").names
        return iter(self._names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _cell_event(
    config: LoopConfig, turn: int, index: int, code: str, cell: CellResult
) -> dict[str, Any]:
    return {
        "path": config.path,
        "turn": turn,
        "index": index,
        "code": clip(code),
        "stdout": clip(cell.stdout),
        "stderr": clip(cell.stderr),
        "error": clip(cell.error),
        "newVars": cell.new_vars,
        "durationMs": round(cell.duration_ms, 3),
        "killedReason": cell.killed_reason,
    }


def _turn_event(
    config: LoopConfig, turn: int, reply: Completion, *, last_call: bool = False
) -> dict[str, Any]:
    return {
        "path": config.path,
        "depth": config.depth,
        "turn": turn,
        "maxIterations": config.max_iterations,
        "reply": clip(reply.text),
        "inputTokens": reply.input_tokens,
        "outputTokens": reply.output_tokens,
        "latencyMs": round(reply.latency_ms, 3),
        "cached": reply.cached,
        "lastCall": last_call,
    }


def run_loop(
    query: str | None,
    context: Any,
    complete: Complete,
    repl: Repl,
    config: LoopConfig,
    emit: EventSink | None = None,
) -> LoopResult:
    """Run one RLM until it answers (see the module docstring).

    Args:
        query: The task's query; ``None`` for a child RLM (its prompt is its context).
        context: The context, as the REPL holds it (only its metadata is shown to the root).
        complete: The root's model.
        repl: The RLM's REPL, ``context`` already set.
        config: Bounds and place in the tree.
        emit: Where events go (none when omitted).

    Returns:
        The answer, the turns taken and whether the last call forced it.

    Raises:
        Exception: Whatever ``complete`` or ``repl`` raise (a stopped task, a spent budget).
    """

    def send(type_: str, data: dict[str, Any]) -> None:
        if emit is not None:
            emit(type_, data)

    metadata = context_metadata(context)
    has_children = config.depth + 1 < config.max_depth
    below = max(0, config.max_depth - config.depth - 1)
    messages: Messages = [
        {
            "role": "system",
            "content": system_prompt(below, has_children, legacy_final=config.legacy_final),
        }
    ]
    feedback = ""
    for turn in range(1, config.max_iterations + 1):
        prompt = turn_prompt(query, metadata, turn, config.max_iterations, feedback)
        messages.append({"role": "user", "content": prompt})
        reply = complete(messages)
        messages.append({"role": "assistant", "content": reply.text})
        send("rlm.turn", _turn_event(config, turn, reply))
        cells: list[str] = []
        answers: list[str | None] = []
        for index, code in enumerate(extract_code_blocks(reply.text)):
            cell = repl.run(code)
            send("rlm.cell", _cell_event(config, turn, index, code, cell))
            cells.append(
                format_cell_feedback(
                    cell.stdout, cell.stderr, cell.new_vars, cell.error, config.feedback_limit
                )
            )
            answers.append(cell.answer)
        resolution = turn_answer(answers, reply.text, _Namespace(repl))
        if resolution.answer is not None:
            send(
                "rlm.answer",
                {
                    "path": config.path,
                    "answer": clip(resolution.answer),
                    "turns": turn,
                    "forced": False,
                },
            )
            return LoopResult(resolution.answer, turn, forced=False)
        feedback = format_turn_feedback(cells) if cells else ""
        if resolution.feedback:
            feedback = f"{feedback}\n\n{resolution.feedback}" if feedback else resolution.feedback
    messages.append({"role": "user", "content": final_turn_prompt(feedback)})
    reply = complete(messages)
    send("rlm.turn", _turn_event(config, config.max_iterations + 1, reply, last_call=True))
    answer = answer_from_last_reply(reply.text)
    send(
        "rlm.answer",
        {
            "path": config.path,
            "answer": clip(answer),
            "turns": config.max_iterations,
            "forced": True,
        },
    )
    return LoopResult(answer, config.max_iterations, forced=True)

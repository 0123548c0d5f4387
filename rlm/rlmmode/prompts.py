"""What the root model is told: the system prompt, the context's metadata, each turn's prompt.

The root model never reads the context. It is told what the context *is* (type, size, item
count, a short head and tail) and works on it from the REPL, where it is the variable
``context``. The conversation has the reference's (``rlms`` 0.1.3) shape:

1. system: :func:`system_prompt` (the REPL, its functions, how to answer);
2. user: turn 1, :func:`turn_prompt` with ``turn=1`` (the query, the metadata, "look before you
   answer", ``Turn 1/N:``);
3. assistant: the reply; user: the cells' feedback and ``Turn 2/N:`` (:func:`turn_prompt`);
   and so on;
4. when turn N ends without an answer, :func:`final_turn_prompt` asks for one last reply,
   which is the answer as it stands.

The wording is ours; the facts and the protocol are the reference's: the same function names
and signatures, ```` ```repl ```` blocks, the ``answer`` dict (``FINAL``/``FINAL_VAR`` too when
``legacy_final`` is set, for models tuned on the older prompts), output truncated at ~20K
characters, only ``print`` output shown, ``Turn i/N:`` numbering.

Where we differ from the reference, deliberately:

* The reference sends the metadata and the turn-1 prompt as two user messages, and the cells'
  feedback and the next ``Turn`` line as two more; we send one user message for each (some
  chat APIs refuse two user messages in a row). The text is the same.
* The metadata adds the item count and a head + tail preview; the reference states only the
  type and total length.
* The last call (at ``maxIterations``) goes as a *user* message; the reference appends it as
  an assistant message, which several chat APIs reject or treat as a prefill.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TypedDict

__all__ = [
    "ContextMetadata",
    "ContextPreview",
    "PREVIEW_CHARS",
    "context_metadata",
    "final_turn_prompt",
    "metadata_text",
    "system_prompt",
    "turn_prompt",
]

#: Characters of the context's start and end shown at most (each).
PREVIEW_CHARS = 300


class ContextPreview(TypedDict):
    """The start and the end of the context's text form."""

    head: str
    tail: str


class ContextMetadata(TypedDict):
    """What the root model knows of its context without reading it.

    Keys:
        type: ``"str"``, ``"list"``, ``"dict"`` or another JSON type's Python name.
        totalLength: Characters of the context: a string's length; for a list or a dict, the
            sum of its items' lengths (a string item counts its characters, another item its
            JSON text's), as the reference counts them.
        items: Items of a list or a dict, ``None`` for anything else.
        preview: A short head and tail of the context's text (a string as is, anything else
            as JSON), never more than half of it.
    """

    type: str
    totalLength: int
    items: int | None
    preview: ContextPreview


def _text_of(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _item_length(item: object) -> int:
    # The reference's counting: a list of chat messages counts their "content".
    if isinstance(item, Mapping) and "content" in item:
        return len(str(item.get("content", "")))
    return len(_text_of(item))


def context_metadata(context: object, preview_chars: int = PREVIEW_CHARS) -> ContextMetadata:
    """Describe ``context`` for the root model: type, size, item count, a short preview.

    The preview keeps at most ``preview_chars`` characters from each end, and never more than
    a quarter of the text from each, so the root never sees the whole context, however short.

    Args:
        context: The task's context (a string, a list or a dict, as JSON carries them).
        preview_chars: Most characters shown from each end.

    Returns:
        The metadata (JSON-ready).

    Example:
        >>> context_metadata(["ab", "cde"])["totalLength"]
        5
    """
    items: int | None = None
    if isinstance(context, str):
        total = len(context)
    elif isinstance(context, Mapping):
        items = len(context)
        # A dict's values count as text (a chat message's "content" counts in lists only).
        total = sum(len(_text_of(v)) for v in context.values())
    elif isinstance(context, Sequence):
        items = len(context)
        total = sum(_item_length(v) for v in context)
    else:
        total = len(_text_of(context))
    text = _text_of(context)
    n = min(preview_chars, len(text) // 4)
    preview: ContextPreview = {"head": text[:n], "tail": text[len(text) - n :] if n else ""}
    return {
        "type": type(context).__name__,
        "totalLength": total,
        "items": items,
        "preview": preview,
    }


_SYSTEM = """\
You are a Recursive Language Model (RLM). You answer a query about a context that can be far \
too long to read yourself. The context lives in a Python REPL that you drive turn by turn, and \
the REPL can call other language models for you. You will be prompted turn after turn until you \
submit an answer.

Write code for the REPL in ```repl``` blocks; every block of your reply runs, in order, in one \
namespace that persists across turns. In the REPL you have:
- `context`: the information the query is about, usually a `str` or a `list[str]`; it can be \
very long.
- `llm_query(prompt: str, model: str | None = None) -> str`: one completion from a sub-LLM (no \
REPL). Good for extracting, classifying, summarizing or answering over a chunk of text; a \
sub-LLM reads about 500K characters.
- `llm_query_batched(prompts: list[str], model: str | None = None) -> list[str]`: many \
`llm_query` calls run concurrently; answers come back in the order of the prompts.
{rlm_query_line}
- `SHOW_VARS() -> str`: the variables defined in the REPL.
- `answer`: a dict, initially `{{"content": "", "ready": False}}`. To submit, set \
`answer["content"]` to your final answer and `answer["ready"] = True` in a ```repl``` block. The \
run ends as soon as `ready` is true.
- `print`, and the standard library's pure modules (json, re, math, collections, itertools...).
{legacy_final}
Only what the code prints reaches you: a bare expression on the last line shows nothing, so wrap \
what you want to see in `print(...)`. Output longer than about 20K characters is cut, so slice \
`context` and hand the slices to `llm_query` instead of printing them. A sub-call that fails \
returns a string starting with "Error:".

Start by probing the context (print a few lines, count them), then build the answer in the REPL. \
Plan in prose, run one ```repl``` block per turn, read its output, go on. Do not set \
`answer["ready"] = True` on turn 1, before you have looked at `context`.
"""

_RLM_QUERY_ON = """\
- `rlm_query(prompt: str, model: str | None = None) -> str` and `rlm_query_batched(prompts: \
list[str], model: str | None = None) -> list[str]`: recursive RLM sub-calls. Each prompt gets a \
child RLM with its own REPL, for sub-tasks that need several steps of their own (at most \
{levels} level{s} of nesting below you)."""

_RLM_QUERY_OFF = """\
- `rlm_query(prompt, model=None)` / `rlm_query_batched(prompts, model=None)`: recursive RLM \
sub-calls; recursion is disabled here, so they behave as `llm_query` / `llm_query_batched`."""

_LEGACY_FINAL = """
You can also answer outside the REPL, on a line of its own in your reply, once you are done:
FINAL(your final answer) gives the answer as text; FINAL_VAR(variable_name) gives the value of a \
variable you created in an EARLIER turn's ```repl``` block.
"""

_ORCHESTRATOR = """
Act as an orchestrator, not a solver. Once you have probed `context`, state how the task splits \
into REPL and sub-LLM steps and which turn does what, then run the plan one turn at a time, \
printing a small sample of each result to check it. Your own context window is small: push \
reading, summarizing and classifying of long text into `llm_query` / `llm_query_batched`, and \
print short results only (a plain `re` or keyword search is fine when it pins the answer). \
Sub-LLMs have no REPL and see only the prompt you give them: ask for short, structured answers \
you can combine in code. Pack each prompt well (up to ~100K characters) and keep batches to ~20 \
prompts; batch independent calls rather than looping over single ones. If you are running out \
of turns, submit your best answer rather than none.
"""


def system_prompt(
    max_depth: int,
    has_rlm_query: bool,
    *,
    legacy_final: bool = False,
    orchestrator: bool = True,
) -> str:
    """The root model's system prompt.

    Args:
        max_depth: Levels of ``rlm_query`` nesting the task allows (``maxDepth``).
        has_rlm_query: Whether this RLM may start child RLMs (its depth is below
            ``max_depth``); otherwise ``rlm_query`` is described as falling back to
            ``llm_query``, as in the reference.
        legacy_final: Also teach ``FINAL(...)`` / ``FINAL_VAR(...)`` in the reply text.
        orchestrator: Add the reference's "orchestrator, not solver" advice (its default).

    Returns:
        The system prompt.

    Raises:
        ValueError: When ``max_depth`` is negative.
    """
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    if has_rlm_query:
        levels = max(max_depth, 1)
        rlm_line = _RLM_QUERY_ON.format(levels=levels, s="" if levels == 1 else "s")
    else:
        rlm_line = _RLM_QUERY_OFF
    text = _SYSTEM.format(
        rlm_query_line=rlm_line, legacy_final=_LEGACY_FINAL if legacy_final else ""
    )
    return text + _ORCHESTRATOR if orchestrator else text


def metadata_text(query: str | None, metadata: ContextMetadata) -> str:
    """The query and what the context is, as the first user message states them.

    Args:
        query: The task's query (``None`` for a child RLM, whose prompt is its context).
        metadata: From :func:`context_metadata`.

    Returns:
        ``"Answer the following: <query>"`` (when there is one) and the metadata in sentences.
    """
    items = metadata["items"]
    counted = f" with {items:,} items" if items is not None else ""
    lines = [
        f"Your context is a {metadata['type']}{counted} of {metadata['totalLength']:,} total "
        "characters. Each sub-LLM call can handle roughly ~100k tokens at once."
    ]
    preview = metadata["preview"]
    if preview["head"]:
        lines.append(
            "Its start and end (never read it all yourself; use the REPL):\n"
            f"<head>\n{preview['head']}\n</head>\n...\n<tail>\n{preview['tail']}\n</tail>"
        )
    body = "\n\n".join(lines)
    return f"Answer the following: {query}\n\n{body}" if query else body


_FIRST_TURN = (
    "You have not interacted with the REPL environment or seen your prompt / context yet. "
    "Look at the context first; do not provide a final answer yet."
)


def turn_prompt(
    query: str | None,
    metadata: ContextMetadata,
    turn: int,
    max_turns: int,
    last_feedback: str = "",
) -> str:
    """The user message that opens turn ``turn`` of ``max_turns`` (1-based).

    Args:
        query: The task's query (``None`` for a child RLM).
        metadata: From :func:`context_metadata`; stated in turn 1 only.
        turn: This turn's number, from 1.
        max_turns: ``maxIterations``.
        last_feedback: The previous reply's cells' feedback
            (:func:`rlm.rlmmode.feedback.format_turn_feedback`), ``""`` when it ran no code.

    Returns:
        Turn 1: the query and metadata, the reference's "look before you answer" warning and
        ``Turn 1/N:``. Later turns: the feedback (if any) and ``Turn i/N:``.

    Raises:
        ValueError: When ``turn`` is not within ``1..max_turns``.

    Example:
        >>> turn_prompt("q", context_metadata("abc"), 2, 30, "REPL output:\\n3")
        'REPL output:\\n3\\n\\nTurn 2/30:'
    """
    if not 1 <= turn <= max_turns:
        raise ValueError(f"turn must be within 1..{max_turns}, got {turn}")
    line = f"Turn {turn}/{max_turns}:"
    if turn == 1:
        parts = [metadata_text(query, metadata), f"{_FIRST_TURN}\n\n{line}"]
    else:
        parts = [last_feedback, line] if last_feedback else [line]
    return "\n\n".join(parts)


_LAST_CALL = (
    "Please provide a final answer to the user's question based on the information provided."
)


def final_turn_prompt(last_feedback: str = "") -> str:
    """The last call's message, when ``maxIterations`` turns ended without an answer.

    The reply to it is the task's answer as it stands (a ``FINAL(text)`` in it may be
    unwrapped, see :func:`rlm.rlmmode.answer.answer_from_last_reply`); its code is not run.

    Args:
        last_feedback: The last turn's cells' feedback, ``""`` when it ran no code.

    Returns:
        The feedback (if any) and the reference's request for a final answer.
    """
    return f"{last_feedback}\n\n{_LAST_CALL}" if last_feedback else _LAST_CALL

"""When a turn has answered, and what the answer is.

Three ways to answer, read in this order (the reference's order):

1. **The ``answer`` dict** (``rlms`` 0.1.3's only way): a cell sets ``answer["content"]`` and
   ``answer["ready"] = True``. The first cell of a reply that ends with ``ready`` truthy gives
   the answer ``str(answer["content"])``; the reply's later cells still run, as in the
   reference. :func:`answer_from_dict` is the rule the sandbox applies to its ``answer`` after
   each cell (the result travels as ``done.answer``).
2. **``FINAL_VAR(name)``** in the reply text: the value of a variable, ``str()``-ed.
3. **``FINAL(text)``** in the reply text: the text.

Where we differ from the reference, deliberately:

* The dict is read when the cell *ends*: the reference captures ``content`` at the moment
  ``ready`` flips, so ``answer["ready"] = True; answer["content"] = "x"`` answers ``""`` there
  and ``"x"`` here, and ``answer.update(ready=True, content="x")`` (which never calls the
  reference's hook) answers here too.
* ``FINAL_VAR`` of an unknown variable (or of an empty one) is not silently ignored: the turn
  does not end, and the root is told why in its next prompt (the reference prints the same
  message into a REPL output nobody reads, and carries on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rlm.rlmmode.blocks import FinalAnswer, find_final

__all__ = [
    "Resolution",
    "answer_from_dict",
    "answer_from_last_reply",
    "resolve_final",
    "turn_answer",
]


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of a turn, as far as answering goes.

    Attributes:
        answer: The final answer, or ``None`` when the run goes on.
        feedback: A message for the root's next prompt when its answer could not be taken
            (``FINAL_VAR`` of a missing variable), else ``None``.
    """

    answer: str | None = None
    feedback: str | None = None


def answer_from_dict(answer: object) -> str | None:
    """The answer an ``answer`` dict gives at the end of a cell, if it is ready.

    Args:
        answer: The REPL's ``answer`` object (whatever the code made of it).

    Returns:
        ``str(answer["content"])`` (``""`` when there is no content) when ``answer`` is a
        mapping whose ``"ready"`` is truthy; ``None`` otherwise (not ready, or rebound to
        something that is not a mapping).

    Example:
        >>> answer_from_dict({"content": 42, "ready": True})
        '42'
        >>> answer_from_dict({"content": "draft", "ready": False}) is None
        True
    """
    if not isinstance(answer, Mapping) or not answer.get("ready"):
        return None
    return str(answer.get("content", ""))


def _missing_variable(name: str, namespace: Mapping[str, str]) -> str:
    available = sorted(k for k in namespace if not k.startswith("_"))
    if available:
        listed = f"Available variables: {available}."
    else:
        listed = "No variables have been created yet."
    return (
        f"Error: FINAL_VAR({name}): variable '{name}' not found. {listed} "
        "Create and assign the variable in a ```repl``` block first, then call FINAL_VAR on it "
        "in a later reply."
    )


def resolve_final(final: FinalAnswer, namespace: Mapping[str, str]) -> Resolution:
    """Resolve a ``FINAL``/``FINAL_VAR`` against the REPL's variables.

    Args:
        final: From :func:`rlm.rlmmode.blocks.find_final`.
        namespace: The REPL's variables after the reply's cells ran, each name mapped to
            ``str(value)`` (what the reference answers with).

    Returns:
        ``FINAL(text)``: the text. ``FINAL_VAR(name)``: the variable's text, stripped of
        surrounding whitespace (the reference prints it and strips the output); no answer and
        an error feedback when the variable does not exist or its text is empty (the reference
        does not accept an empty ``FINAL_VAR`` either).
    """
    if final.kind == "text":
        return Resolution(answer=final.value)
    value = namespace.get(final.value)
    if value is None:
        return Resolution(feedback=_missing_variable(final.value, namespace))
    text = value.strip()
    if not text:
        return Resolution(
            feedback=(
                f"Error: FINAL_VAR({final.value}): variable '{final.value}' is empty, so it is "
                "not taken as the final answer."
            )
        )
    return Resolution(answer=text)


def turn_answer(
    cell_answers: Sequence[str | None], reply: str, namespace: Mapping[str, str]
) -> Resolution:
    """Whether a turn answered: the ``answer`` dict first, then ``FINAL_VAR``, then ``FINAL``.

    Args:
        cell_answers: Each cell's ``done.answer`` (``None`` when it did not answer), in order.
        reply: The root model's reply.
        namespace: The REPL's variables after the cells ran (see :func:`resolve_final`); only
            read for ``FINAL_VAR``.

    Returns:
        The first cell's answer; else the resolved ``FINAL_VAR``/``FINAL`` of the reply; else
        no answer and no feedback.
    """
    for answer in cell_answers:
        if answer is not None:
            return Resolution(answer=answer)
    final = find_final(reply)
    if final is None:
        return Resolution()
    return resolve_final(final, namespace)


def answer_from_last_reply(reply: str) -> str:
    """The task's answer from the reply to the last call (after ``maxIterations`` turns).

    The reference returns that reply as it is. We do too, except that a reply with a
    ``FINAL(text)`` line (see :func:`rlm.rlmmode.blocks.find_final`) gives ``text``: models
    tuned on the older prompts answer that way. A ``FINAL_VAR`` cannot be resolved there (no
    code runs after the last call), so such a reply is returned whole.

    Args:
        reply: The last call's reply.

    Returns:
        The answer text.
    """
    final = find_final(reply)
    if final is not None and final.kind == "text":
        return final.value
    return reply

"""Reading a root model's reply: its ```` ```repl ```` code blocks and a ``FINAL``/``FINAL_VAR``.

The rules are the reference's (``rlms`` 0.1.3 and, for ``FINAL``, the releases before it), so
the same reply drives both implementations the same way. They are loose in places; the loose
places are kept on purpose and listed here so nobody "fixes" one side only.

Code blocks (as ``rlms`` 0.1.3):

* Only fences tagged ``repl`` run. ```` ```python ```` blocks are prose to both
  implementations: the reference never executes them, so neither do we.
* The opening fence is ```` ```repl ```` followed by optional whitespace and a line break;
  ```` ```repl x = 1 ```` on one line is not a block, ```` ```replace ```` is not a block.
* A block ends at the first line that *starts* with three backticks, whatever follows them
  (```` ```python ```` closes a block too). A ```` ``` ```` line inside a string literal
  therefore cuts the block short; an indented ```` ``` ```` does not close it.
* An opener directly followed by its closer (```` ```repl\\n``` ````) is not an empty block:
  the search runs on to the next line starting with three backticks.
* The code is stripped of surrounding whitespace, including the first line's indentation: a
  uniformly indented block loses only its first line's indent and fails with an
  ``IndentationError`` the model sees in its feedback, exactly as with the reference.

Final answers (the releases before 0.1.3, which taught ``FINAL``/``FINAL_VAR`` in the system
prompt; 0.1.3 itself only reads the ``answer`` dict, see :mod:`rlm.rlmmode.answer`):

* ``FINAL_VAR(name)`` wins over ``FINAL(...)`` anywhere in the reply. It must start a line
  (after optional whitespace); the name runs to the *first* ``)`` (possibly across lines) and
  is stripped of whitespace, then of double quotes at its ends, then of single quotes:
  ``FINAL_VAR("x")`` and ``FINAL_VAR('x')`` name ``x``; ``FINAL_VAR(d["k"])`` names ``d["k"]``
  (the first ``)`` ends it), which is no variable.
* ``FINAL(text)`` must start a line; the text runs to the *last* ``)`` in the reply that ends a
  line (only whitespace after it before a line break or the end). So nested parentheses are
  kept (``FINAL(f(x) = (a+b))`` gives ``f(x) = (a+b)``), a multi-line answer is kept, and a
  later line ending in ``)`` extends the answer to that line. ``FINAL(x) because...`` with no
  ``)`` ending a later line is not an answer.
* Neither is recognised mid-line (``**FINAL(x)**``, ``the answer is FINAL(x)``), but both are
  recognised inside a code block, as the reference does.
* ``FINAL()`` is an answer: the empty string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["FinalAnswer", "extract_code_blocks", "find_final"]

# ```repl, optional whitespace (which may include blank lines), a line break, then the shortest
# run of anything up to a line break followed by three backticks.
_REPL_BLOCK = re.compile(r"```repl\s*\n(.*?)\n```", re.DOTALL)
# FINAL_VAR( at the start of a line, up to the first closing parenthesis.
_FINAL_VAR = re.compile(r"^\s*FINAL_VAR\((.*?)\)", re.MULTILINE | re.DOTALL)
# FINAL( at the start of a line, up to the last closing parenthesis that ends a line.
_FINAL = re.compile(r"^\s*FINAL\((.*)\)\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """A final answer written in the reply text.

    Attributes:
        kind: ``"text"`` for ``FINAL(text)``, ``"var"`` for ``FINAL_VAR(name)``.
        value: The answer text, or the variable's name.
    """

    kind: Literal["text", "var"]
    value: str


def extract_code_blocks(reply: str) -> list[str]:
    """Every ```` ```repl ```` block of a reply, in order, stripped.

    Args:
        reply: The root model's reply.

    Returns:
        The code of each block, in the order the blocks appear (empty when there is none).

    Example:
        >>> extract_code_blocks("Look first.\\n```repl\\nprint(len(context))\\n```")
        ['print(len(context))']
    """
    return [match.group(1).strip() for match in _REPL_BLOCK.finditer(reply)]


def find_final(reply: str) -> FinalAnswer | None:
    """The ``FINAL_VAR(name)`` or ``FINAL(text)`` of a reply, if it has one.

    Args:
        reply: The root model's reply.

    Returns:
        The answer (``FINAL_VAR`` first), or ``None`` when the reply has neither.

    Example:
        >>> find_final("Done.\\nFINAL(42)")
        FinalAnswer(kind='text', value='42')
        >>> find_final("FINAL_VAR('result')")
        FinalAnswer(kind='var', value='result')
    """
    match = _FINAL_VAR.search(reply)
    if match is not None:
        # Whitespace, then double quotes, then single quotes, as the reference strips them.
        name = match.group(1).strip().strip('"').strip("'")
        return FinalAnswer(kind="var", value=name)
    match = _FINAL.search(reply)
    if match is not None:
        return FinalAnswer(kind="text", value=match.group(1).strip())
    return None

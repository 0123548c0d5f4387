"""What the root model reads after its code ran: each cell's output, truncated head + tail.

The reference (``rlms`` 0.1.3) shows, per block, the cell's stdout, its stderr (where an
exception appears as ``TypeName: message``) and a list of variable names, or ``No output``; the
blocks of one reply are answered together in one user message, headed ``REPL output:`` (or
``REPL output (block i):`` when the reply had several). It keeps the first 20,000 characters of
a long block and appends ``... + [N chars...]``.

We differ in two ways, both deliberate:

* Truncation keeps the head *and the tail* (half each) with a marker in the middle saying how
  many characters were cut. The end of a cell's output is where the exception, the last
  ``print`` and the variable list are; the reference's head-only cut loses exactly those.
* The variable list names the variables the cell *created* (``newVars`` from the sandbox),
  not every variable of the namespace each time; ``SHOW_VARS()`` lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "FEEDBACK_LIMIT",
    "NO_OUTPUT",
    "format_cell_feedback",
    "format_turn_feedback",
    "truncate_middle",
    "truncation_marker",
]

#: Characters of one cell's feedback the root model sees (the reference's 20K).
FEEDBACK_LIMIT = 20_000
#: A cell that printed nothing, raised nothing and created nothing (the reference's wording).
NO_OUTPUT = "No output"


def truncation_marker(cut: int) -> str:
    """The line put where ``cut`` characters were removed.

    Args:
        cut: How many characters were removed.

    Returns:
        The marker, with its own line breaks.
    """
    return f"\n... [{cut:,} characters truncated] ...\n"


def truncate_middle(text: str, limit: int = FEEDBACK_LIMIT) -> str:
    """``text`` when it fits in ``limit`` characters, else its head and tail around a marker.

    Args:
        text: The text to shorten.
        limit: The most characters of ``text`` kept (the marker comes on top).

    Returns:
        ``text`` itself, or ``head + truncation_marker(cut) + tail`` where ``head`` is the
        first ``limit // 2`` characters and ``tail`` the last ``limit - limit // 2``, so the
        result is exactly ``limit + len(marker)`` characters long.

    Raises:
        ValueError: When ``limit`` is negative.

    Example:
        >>> truncate_middle("abcdefghij", 4)
        'ab\\n... [6 characters truncated] ...\\nij'
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    cut = len(text) - limit
    # text[len(text):] is "", so a limit of 0 or 1 keeps no tail rather than the whole text.
    return text[:head] + truncation_marker(cut) + text[len(text) - tail :]


def format_cell_feedback(
    stdout: str,
    stderr: str,
    new_vars: Sequence[str],
    error: str | None = None,
    limit: int = FEEDBACK_LIMIT,
) -> str:
    """The feedback of one code cell, as the root model reads it.

    Args:
        stdout: What the cell printed.
        stderr: What the cell wrote to stderr.
        new_vars: Names of the variables the cell created, in creation order.
        error: The exception that ended the cell (``"TypeName: message"``), if any.
        limit: The most characters of feedback kept (head + tail, see
            :func:`truncate_middle`).

    Returns:
        The parts that are not empty (stdout, stderr, error, the variable list), separated by
        blank lines and truncated as a whole, or ``"No output"``.

    Example:
        >>> format_cell_feedback("3\\n", "", ["n"])
        "3\\n\\n\\nREPL variables: ['n']"
    """
    parts = [part for part in (stdout, stderr, error or "") if part]
    if new_vars:
        parts.append(f"REPL variables: {list(new_vars)!r}")
    if not parts:
        return NO_OUTPUT
    return truncate_middle("\n\n".join(parts), limit)


def format_turn_feedback(cells: Sequence[str]) -> str:
    """The one user message answering all the cells of a reply.

    Args:
        cells: Each cell's feedback (:func:`format_cell_feedback`), in execution order.

    Returns:
        ``"REPL output:\\n..."`` for one cell, ``"REPL output (block i):\\n..."`` sections
        separated by blank lines for several, ``""`` when the reply ran no code (the reference
        then sends no feedback message at all).
    """
    if len(cells) == 1:
        return f"REPL output:\n{cells[0]}"
    return "\n\n".join(f"REPL output (block {i}):\n{cell}" for i, cell in enumerate(cells, 1))

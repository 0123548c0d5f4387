"""JSON nesting and size bombs: in JSON text, and in values already parsed.

A document nested thousands deep exhausts a parser's stack or a validator's recursion; one
with millions of tiny values costs far more memory parsed than its bytes suggest. Both checks
are linear and stop at the first limit passed, so a bomb costs only as much as the limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = ["StructureFinding", "check_json_text", "check_value"]

# Strings (skipped whole, so brackets inside them do not count) or structural characters.
_TOKENS: Final = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')
_SCALARS: Final = frozenset({int, float, str, bool, type(None)})


@dataclass(frozen=True, slots=True)
class StructureFinding:
    """A limit a JSON document passes.

    Attributes:
        limit: ``depth``, ``values`` or ``bytes``.
        found: How far it went when the check stopped (at least the limit + 1).
        maximum: The limit.
    """

    limit: Literal["depth", "values", "bytes"]
    found: int
    maximum: int


def check_json_text(
    text: str, *, max_depth: int, max_values: int, max_bytes: int
) -> StructureFinding | None:
    """Check text that looks like JSON (starts with ``{`` or ``[``) without parsing it.

    Returns:
        The first limit passed, or ``None`` (also for text that is not JSON-like).
    """
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "[{":
        return None
    if len(text) > max_bytes:
        return StructureFinding("bytes", len(text), max_bytes)
    depth = 0
    values = 1
    for m in _TOKENS.finditer(stripped):
        c = m.group()
        if c in "[{":
            depth += 1
            if depth > max_depth:
                return StructureFinding("depth", depth, max_depth)
        elif c in "]}":
            depth -= 1
        elif c == ",":
            values += 1
            if values > max_values:
                return StructureFinding("values", values, max_values)
    return None


def check_value(value: Any, *, max_depth: int, max_values: int) -> StructureFinding | None:
    """Check a parsed value (dicts, lists, scalars) for depth and number of values.

    Lists of scalars are counted without visiting each item in Python (one C-level pass over
    their types), so a million numbers cost milliseconds, not a walk.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    values = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            values += 1
            continue
        if depth + 1 > max_depth:
            return StructureFinding("depth", depth + 1, max_depth)
        values += len(children) if isinstance(node, list | tuple) else len(node) * 2
        if values > max_values:
            return StructureFinding("values", values, max_values)
        if isinstance(node, list | tuple) and set(map(type, node)) <= _SCALARS:
            continue
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return None

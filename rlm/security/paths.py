"""Path traversal: ``..`` segments, plain or percent-encoded, and NUL bytes in paths.

A ``..`` counts only as a whole path segment (``../x``, ``a\\..\\b``, a lone ``..``), so
``a/b..c``, ``wait...`` or ``1..10`` are not traversal. Encoded forms (``%2e%2e%2f``, double
encoding ``%252e``, overlong UTF-8 ``%c0%ae``) are decoded up to twice before the check; text
that only traverses once decoded is an evasion and counts as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote

__all__ = ["TraversalFinding", "find_traversal", "looks_like_path"]

_SEGMENT: Final = re.compile(r"(?:^|(?<=[\\/\s\"'=:,;(]))\.\.(?=[\\/]|$|[\s\"',;)])", re.M)
_OVERLONG: Final = re.compile(r"%(?:c0%ae|e0%80%ae|c0%af|c1%9c|c1%pc|c0%2f|c0%5c)", re.I)
_NUL: Final = re.compile(r"%00|\x00")
_PATHLIKE: Final = re.compile(r"[^\s]*[\\/][^\s]*")


@dataclass(frozen=True, slots=True)
class TraversalFinding:
    """A traversal found.

    Attributes:
        form: ``plain`` (``../``), ``encoded`` (only after percent-decoding), ``overlong``
            (overlong UTF-8 dots or slashes) or ``nul`` (a NUL byte, which truncates paths).
        start: Where it is in the text.
    """

    form: Literal["plain", "encoded", "overlong", "nul"]
    start: int


def looks_like_path(text: str) -> bool:
    """Whether the whole of ``text`` is one path (no spaces, a separator or a ``..``)."""
    stripped = text.strip()
    return bool(stripped) and len(stripped) <= 4096 and not any(c.isspace() for c in stripped)


def find_traversal(text: str) -> list[TraversalFinding]:
    """Traversal in ``text``: one finding per form, at its first occurrence."""
    found: list[TraversalFinding] = []
    if ".." in text:
        m = _SEGMENT.search(text)
        if m is not None:
            found.append(TraversalFinding("plain", m.start()))
    if "%" in text:
        m = _OVERLONG.search(text)
        if m is not None:
            found.append(TraversalFinding("overlong", m.start()))
        decoded = text
        for _ in range(2):
            decoded = unquote(decoded)
            if ".." in decoded and _SEGMENT.search(decoded) is not None and not found:
                found.append(TraversalFinding("encoded", text.find("%")))
                break
    if "\x00" in text or "%00" in text:
        m = _NUL.search(text)
        if m is not None and (looks_like_path(text) or _PATHLIKE.search(text) is not None):
            found.append(TraversalFinding("nul", m.start()))
    return found

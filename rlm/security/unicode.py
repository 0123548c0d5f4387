"""Unicode clean-up: NFKC, and the characters that hide text from a reader removed.

"Trojan Source" (CVE-2021-42574) hides code or instructions with bidirectional overrides: the
text a person sees is not the text a program (or a model) reads. Invisible characters split
words past keyword filters, Unicode tag characters smuggle whole ASCII sentences no one sees,
private-use and unassigned code points carry anything. :func:`clean` removes all of them and
normalises to NFKC (full-width letters, ligatures, compatibility forms become their plain
equivalents), so detectors read what a reader sees.

Classes removed (``category`` is :func:`unicodedata.category` of Python's Unicode database):

=============  ==============================================================================
``bidi``       U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates
``tag``        U+E0000-U+E007F tag characters (invisible ASCII)
``invisible``  other format characters (``Cf``: zero-width space and joiners, soft hyphen,
               word joiner, BOM, bidi marks...), Hangul fillers, variation selectors
               U+E0100-U+E01EF, C0/C1 controls (``Cc``) except tab, line feed, carriage return
``private``    private-use code points (``Co``)
``unassigned`` unassigned code points (``Cn``) and lone surrogates (``Cs``)
=============  ==============================================================================

Each distinct character of a text is classified once (cached), so a check costs one pass over
the text in C plus a few microseconds per distinct character.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["CharClass", "UnicodeReport", "clean", "is_clean", "lower_in_place"]

CharClass = Literal["bidi", "tag", "invisible", "private", "unassigned"]

_BIDI: Final = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
_TAGS: Final = range(0xE0000, 0xE0080)
_HANGUL_FILLERS: Final = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0})
_VARIATION_SUPPLEMENT: Final = range(0xE0100, 0xE01F0)
_KEPT_CONTROLS: Final = frozenset({0x09, 0x0A, 0x0D})

# ASCII needs no table: only its controls can be removed.
_ASCII_CONTROLS: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@functools.lru_cache(maxsize=65536)
def _classify(cp: int) -> CharClass | None:
    if cp in _BIDI:
        return "bidi"
    if cp in _TAGS:
        return "tag"
    category = unicodedata.category(chr(cp))
    if category == "Co":
        return "private"
    if category in ("Cn", "Cs"):
        return "unassigned"
    if category == "Cf" or cp in _HANGUL_FILLERS or cp in _VARIATION_SUPPLEMENT:
        return "invisible"
    if category == "Cc" and cp not in _KEPT_CONTROLS:
        return "invisible"
    return None


@dataclass(frozen=True, slots=True)
class UnicodeReport:
    """What :func:`clean` removed and changed.

    Attributes:
        removed: Characters removed, by class.
        normalized: Whether NFKC changed the text (compatibility forms, full-width letters...).
    """

    removed: dict[CharClass, int]
    normalized: bool


def _remove(text: str, report: Counter[str]) -> str:
    if text.isascii():
        stripped, n = _ASCII_CONTROLS.subn("", text)
        if n:
            report["invisible"] += n
        return stripped
    # Classify each distinct character once (a text has few), then drop them in one pass.
    drop: dict[int, None] = {}
    for ch in set(text):
        found = _classify(ord(ch))
        if found is not None:
            drop[ord(ch)] = None
            report[found] += text.count(ch)
    return text.translate(drop) if drop else text


def clean(text: str) -> tuple[str, UnicodeReport]:
    """Remove hidden characters and normalise to NFKC.

    The result is NFKC-normalised, holds none of the removed classes, and ``clean`` of it
    is itself (idempotent). It is never longer than the NFKC form of ``text``: removing
    never adds, though NFKC itself expands a few compatibility characters ("…" → "...").

    Args:
        text: Any string (lone surrogates included).

    Returns:
        The clean text and a report of what was removed.

    Example:
        >>> clean("\\uff49gnore\\u200b me\\u202e")[0]
        'ignore me'
    """
    removed: Counter[str] = Counter()
    out = _remove(text, removed)
    normalized = False
    # Removing can join characters that then compose, and normalising could in principle
    # produce a removable character: repeat until stable (twice at most in practice).
    for _ in range(3):
        if unicodedata.is_normalized("NFKC", out):
            break
        out = unicodedata.normalize("NFKC", out)
        normalized = True
        again = _remove(out, removed)
        if again == out:
            break
        out = again
    return out, UnicodeReport(dict(removed), normalized)  # type: ignore[arg-type]


def is_clean(text: str) -> bool:
    """Whether :func:`clean` would leave ``text`` unchanged (cheap: no copy for ASCII)."""
    if text.isascii():
        return _ASCII_CONTROLS.search(text) is None
    if any(_classify(ord(ch)) is not None for ch in set(text)):
        return False
    return unicodedata.is_normalized("NFKC", text)


def lower_in_place(text: str) -> str:
    """``text`` lowered position for position, so offsets in it are offsets in ``text`` (the
    few characters that lower to two, e.g. "İ", are kept as they are)."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)

"""Text operations over lines: word_count, line_count, grep.

Items are strings (``input_kind = "text"``), one per line; ``input.text`` is split into lines
before it gets here. ``grep`` runs the bounded engine of :mod:`rlm.operations.regex`, never
Python's backtracking ``re``, on user patterns.

Example:
    >>> op = Grep()
    >>> p = op.parse_params({"pattern": r"^ERROR\\b", "count_only": True})
    >>> op.finish(op.combine([op.leaf(["ERROR x", "ok"], p), op.leaf(["ERROR y"], p)], p), p)
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlm.errors import InvalidInput
from rlm.operations.base import Operation
from rlm.operations.context import check_cancelled
from rlm.operations.params import ParamReader, field_of
from rlm.operations.regex import MAX_PATTERN_CHARS, Regex, RegexError, compile_regex
from rlm.operations.schema import flag, params, string
from rlm.operations.values import descending_counts

__all__ = ["Grep", "LineCount", "WordCount"]

_CANCEL_EVERY = 1024


@dataclass(frozen=True)
class _WordCountParams:
    by_word: bool


class WordCount(Operation):
    """Words in the lines: runs of non-whitespace, as ``str.split()`` finds them.

    Params:
        by_word (bool, default false): Count each word separately (case-sensitive, punctuation
            kept: ``"end."`` and ``"end"`` differ).

    Output: the total number of words (an int), or with ``by_word`` a ``{word: count}``
    object ordered by descending count, then word.
    """

    name = "word_count"
    input_kind = "text"
    params_schema = params(by_word=flag())
    description = "Words in the lines (or per-word counts with params.by_word)."

    def parse_params(self, params: Mapping[str, Any]) -> _WordCountParams:
        return _WordCountParams(ParamReader(self.name, params, ("by_word",)).flag("by_word", False))

    def leaf(self, chunk: Sequence[str], params: _WordCountParams) -> int | dict[str, int]:
        if not params.by_word:
            return sum(len(line.split()) for line in chunk)
        counts: dict[str, int] = {}
        for line in chunk:
            for word in line.split():
                counts[word] = counts.get(word, 0) + 1
        return counts

    def combine(self, partials: Sequence[Any], params: _WordCountParams) -> int | dict[str, int]:
        if not params.by_word:
            words: int = sum(partials)
            return words
        total: dict[str, int] = {}
        for counts in partials:
            for word, n in counts.items():
                total[word] = total.get(word, 0) + n
        return total

    def finish(self, partial: Any, params: _WordCountParams) -> int | dict[str, int]:
        return descending_counts(partial) if params.by_word else partial


class LineCount(Operation):
    """How many lines there are (empty lines count). Output: an int."""

    name = "line_count"
    input_kind = "text"
    description = "Number of lines."

    def leaf(self, chunk: Sequence[str], params: Any) -> int:
        return len(chunk)

    def combine(self, partials: Sequence[int], params: Any) -> int:
        return sum(partials)


@dataclass(frozen=True)
class _GrepParams:
    regex: Regex
    invert: bool
    count_only: bool


class Grep(Operation):
    """Lines matching a pattern (``re.search`` semantics), in order, or how many.

    Params:
        pattern (str, required, at most 1000 characters): See :mod:`rlm.operations.regex`
            for the syntax.
        ignore_case (bool, default false): Letters match regardless of case.
        invert (bool, default false): Keep the lines that do *not* match.
        count_only (bool, default false): Output the number of lines instead.

    Output: the list of kept lines, or an int.

    Raises:
        InvalidInput: the pattern does not compile (``input.params.pattern``, with
            ``position``).
    """

    name = "grep"
    params_schema = params(
        {"pattern": string(MAX_PATTERN_CHARS, format="rlm-regex")},
        ignore_case=flag(),
        invert=flag(),
        count_only=flag(),
    )
    input_kind = "text"
    description = "Lines matching params.pattern (bounded regex); ignore_case, invert, count_only."

    def parse_params(self, params: Mapping[str, Any]) -> _GrepParams:
        reader = ParamReader(self.name, params, ("pattern", "ignore_case", "invert", "count_only"))
        pattern = reader.string("pattern", max_len=MAX_PATTERN_CHARS)
        ignore_case = reader.flag("ignore_case", False)
        try:
            regex = compile_regex(pattern, ignore_case)
        except RegexError as err:
            raise InvalidInput(
                f"invalid pattern: {err}", {"position": err.position}, field=field_of("pattern")
            ) from None
        return _GrepParams(regex, reader.flag("invert", False), reader.flag("count_only", False))

    def leaf(self, chunk: Sequence[str], params: _GrepParams) -> int | list[str]:
        search, keep_matches = params.regex.search, not params.invert
        kept = []
        for i, line in enumerate(chunk):
            if i % _CANCEL_EVERY == 0:
                check_cancelled()
            if search(line) is keep_matches:
                kept.append(line)
        return len(kept) if params.count_only else kept

    def combine(self, partials: Sequence[Any], params: _GrepParams) -> int | list[str]:
        if params.count_only:
            lines: int = sum(partials)
            return lines
        return [line for part in partials for line in part]

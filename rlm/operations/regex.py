"""A regular-expression engine that cannot backtrack: Thompson NFA run as a lazy DFA.

``grep`` takes patterns from users, and Python's backtracking ``re`` needs exponential time on
patterns such as ``(a+)+$``. This engine compiles a pattern to Thompson-NFA instructions and
simulates every thread at once (Pike's method); the sets of threads reached are cached as DFA
states, built lazily, one per (state, character) pair actually met. Each character costs one
dict lookup once its transition is cached and ``O(len(program))`` the first time, so a search
is linear in ``len(text) * len(pattern)`` whatever the pattern.

Supported syntax (a subset of Python's): literals; ``.`` (not newline); classes ``[a-z]``,
``[^...]``; escapes ``\\d \\w \\s \\D \\W \\S``, ``\\n \\t \\r \\f \\v \\a \\0``,
``\\xhh \\uhhhh \\Uhhhhhhhh`` and escaped punctuation; anchors ``^ $ \\A \\Z`` and word
boundaries ``\\b \\B``; groups ``(...)`` and ``(?:...)`` (nothing is captured); alternation
``|``; quantifiers ``* + ?`` and ``{m}``, ``{m,}``, ``{,n}``, ``{m,n}`` with ``n <= 1000``,
each optionally lazy (``*?``; laziness cannot change whether a line matches). Unlike Python,
``$`` matches only at the very end of the text (Python's also matches before a final newline);
lines from ``grep`` hold no newline, so the two agree there. Back-references, look-around,
inline flags and possessive quantifiers are refused.

Example:
    >>> compile_regex(r"^(a+)+$").search("a" * 5000 + "b")
    False
    >>> compile_regex(r"err(or)?\\s+\\d{3}", ignore_case=True).search("ERROR 404 at /x")
    True
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_PROGRAM_SIZE",
    "MAX_REPEAT",
    "Regex",
    "RegexError",
    "compile_regex",
]

#: Longest pattern accepted.
MAX_PATTERN_CHARS = 1000
#: Largest bound in ``{m,n}``.
MAX_REPEAT = 1000
#: Most NFA instructions a pattern may compile to (after expanding ``{m,n}``).
MAX_PROGRAM_SIZE = 20_000
_MAX_DFA_STATES = 4096

_CHAR, _SPLIT, _JMP, _MATCH, _ASSERT = range(5)
_MATCHED, _DEAD = -1, -2
_CATEGORIES = "dDwWsS"
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}


class RegexError(Exception):
    """A pattern that cannot be compiled.

    Args:
        message: What is wrong.
        position: The 0-based offset in the pattern.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def _in_category(code: str, c: str) -> bool:
    if code in "dD":
        hit = c.isdecimal()
    elif code in "wW":
        hit = _is_word(c)
    else:
        hit = c.isspace()
    return hit if code.islower() else not hit


@dataclass(frozen=True)
class _CharSet:
    """What one consuming instruction accepts."""

    chars: frozenset[str] = frozenset()
    ranges: tuple[tuple[str, str], ...] = ()
    categories: str = ""
    negated: bool = False
    ignore_case: bool = False
    dot: bool = False

    def _raw(self, c: str) -> bool:
        return (
            c in self.chars
            or any(lo <= c <= hi for lo, hi in self.ranges)
            or any(_in_category(code, c) for code in self.categories)
        )

    def matches(self, c: str) -> bool:
        if self.dot:
            return c != "\n"
        hit = self._raw(c)
        if not hit and self.ignore_case:
            hit = any(len(v) == 1 and self._raw(v) for v in (c.lower(), c.upper()))
        return hit != self.negated


# AST: ("char", _CharSet, literal | None) | ("assert", kind) | ("cat", [nodes])
#      | ("alt", [nodes]) | ("repeat", node, lo, hi | None). Sizes are computed alongside.
_Node = tuple[Any, ...]


class _PatternParser:
    def __init__(self, pattern: str, ignore_case: bool) -> None:
        self.p = pattern
        self.i = 0
        self.icase = ignore_case

    def error(self, message: str, position: int | None = None) -> RegexError:
        return RegexError(message, self.i if position is None else position)

    def parse(self) -> _Node:
        node = self.alternation()
        if self.i < len(self.p):
            raise self.error("unbalanced parenthesis")
        return node

    def alternation(self) -> _Node:
        branches = [self.sequence()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self) -> _Node:
        items: list[_Node] = []
        while self.i < len(self.p) and self.p[self.i] not in "|)":
            items.append(self.quantified(self.atom()))
        return items[0] if len(items) == 1 else ("cat", items)

    def quantifier(self) -> tuple[int, int | None] | None:
        """The quantifier at ``self.i`` (consumed), or None (nothing consumed)."""
        if self.i >= len(self.p):
            return None
        c = self.p[self.i]
        if c in "*+?":
            self.i += 1
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        if c != "{":
            return None
        close = self.p.find("}", self.i)
        body = self.p[self.i + 1 : close] if close > 0 else ""
        low_text, comma, high_text = body.partition(",")
        valid = close > 0 and all(t.isascii() and (t == "" or t.isdigit()) for t in body.split(","))
        if not valid or body.count(",") > 1 or (not comma and not low_text):
            return None  # Python reads a malformed "{" as a literal
        low = int(low_text) if low_text else 0
        high = int(high_text) if high_text else (None if comma else low)
        if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
            raise self.error(f"repeat counts may not exceed {MAX_REPEAT}")
        if high is not None and high < low:
            raise self.error("min repeat greater than max repeat")
        self.i = close + 1
        return low, high

    def quantified(self, atom: _Node) -> _Node:
        start = self.i
        bounds = self.quantifier()
        if bounds is None:
            return atom
        if atom[0] == "assert":
            raise self.error("nothing to repeat", start)
        if self.i < len(self.p) and self.p[self.i] == "?":
            self.i += 1  # lazy: the same lines match
        elif self.i < len(self.p) and self.p[self.i] == "+":
            raise self.error("possessive quantifiers are not supported")
        following = self.i
        if self.quantifier() is not None:
            raise self.error("multiple repeat", following)
        return ("repeat", atom, bounds[0], bounds[1])

    def atom(self) -> _Node:
        p, start = self.p, self.i
        c = p[start]
        self.i += 1
        if c == "(":
            if p.startswith("?:", self.i):
                self.i += 2
            elif p.startswith("?", self.i):
                raise self.error("only (...) and (?:...) groups are supported", start)
            node = self.alternation()
            if self.i >= len(p) or p[self.i] != ")":
                raise self.error("missing ), unterminated subpattern", start)
            self.i += 1
            # A group is an item even when it holds only an anchor: "(^)*" is legal.
            return ("cat", [node]) if node[0] == "assert" else node
        if c == "[":
            return self.char_class(start)
        if c == ".":
            return ("char", _CharSet(dot=True), None)
        if c == "^":
            return ("assert", "bol")
        if c == "$":
            return ("assert", "eol")
        if c == "\\":
            return self.escape(start)
        if c in "*+?":
            raise self.error("nothing to repeat", start)
        if c == "{":
            self.i = start
            if self.quantifier() is not None:
                raise self.error("nothing to repeat", start)
            self.i = start + 1
        return self.literal(c)

    def literal(self, c: str) -> _Node:
        chars = {c, c.lower(), c.upper()} if self.icase else {c}
        return ("char", _CharSet(frozenset(v for v in chars if len(v) == 1)), c)

    def escape_code(self, start: int, in_class: bool) -> tuple[str, str]:
        """An escape's meaning: ``("char", c)``, ``("category", code)`` or ``("assert", kind)``."""
        if self.i >= len(self.p):
            raise self.error("bad escape (end of pattern)", start)
        c = self.p[self.i]
        self.i += 1
        if c in _CATEGORIES:
            return "category", c
        if c in _CHAR_ESCAPES:
            return "char", _CHAR_ESCAPES[c]
        if c == "b" and in_class:
            return "char", "\b"
        if c in "bBAZ" and not in_class:
            return "assert", {"b": "word", "B": "nonword", "A": "bol", "Z": "eol"}[c]
        if c in _HEX_LENGTHS:
            digits = self.p[self.i : self.i + _HEX_LENGTHS[c]]
            if len(digits) != _HEX_LENGTHS[c] or not all(
                d in "0123456789abcdefABCDEF" for d in digits
            ):
                raise self.error(f"incomplete escape \\{c}{digits}", start)
            self.i += len(digits)
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise self.error(f"bad escape \\{c}{digits}", start)
            return "char", chr(code)
        if c == "0":
            digits = ""
            while len(digits) < 2 and self.i < len(self.p) and self.p[self.i] in "01234567":
                digits += self.p[self.i]
                self.i += 1
            return "char", chr(int(digits or "0", 8))
        if c.isascii() and c.isalnum():
            what = "back-references are" if c.isdigit() else f"the escape \\{c} is"
            raise self.error(f"{what} not supported", start)
        return "char", c

    def escape(self, start: int) -> _Node:
        kind, value = self.escape_code(start, in_class=False)
        if kind == "assert":
            return ("assert", value)
        if kind == "category":
            return ("char", _CharSet(categories=value, ignore_case=self.icase), None)
        return self.literal(value)

    def class_item(self) -> tuple[str, str]:
        start = self.i
        if self.p[self.i] == "\\":
            self.i += 1
            return self.escape_code(start, in_class=True)
        self.i += 1
        return "char", self.p[start]

    def char_class(self, start: int) -> _Node:
        p = self.p
        negated = p.startswith("^", self.i)
        self.i += negated
        chars: set[str] = set()
        ranges: list[tuple[str, str]] = []
        categories = ""
        first = True
        while True:
            if self.i >= len(p):
                raise self.error("unterminated character set", start)
            if p[self.i] == "]" and not first:
                self.i += 1
                break
            first = False
            item_start = self.i
            kind, value = self.class_item()
            ranged = p.startswith("-", self.i) and self.i + 1 < len(p) and p[self.i + 1] != "]"
            if kind == "category":
                if ranged:
                    raise self.error("bad character range", item_start)
                categories += value
            elif not ranged:
                chars.add(value)
            else:
                self.i += 1
                if self.i >= len(p):
                    raise self.error("unterminated character set", start)
                kind_hi, high = self.class_item()
                if kind_hi != "char" or high < value:
                    raise self.error("bad character range", item_start)
                ranges.append((value, high))
        charset = _CharSet(
            frozenset(chars), tuple(ranges), categories, negated=negated, ignore_case=self.icase
        )
        return ("char", charset, None)


def _size(node: _Node) -> int:
    """Instructions ``node`` compiles to (a plain int even when astronomically large)."""
    kind = node[0]
    if kind in ("char", "assert"):
        return 1
    if kind == "cat":
        return sum(_size(n) for n in node[1])
    if kind == "alt":
        return sum(_size(n) for n in node[1]) + 2 * (len(node[1]) - 1)
    inner = _size(node[1])
    low: int = node[2]
    high: int | None = node[3]
    if high is None:
        return low * inner + inner + 2
    return low * inner + (high - low) * (inner + 1)


def _emit(node: _Node, prog: list[Any]) -> None:
    kind = node[0]
    if kind == "char":
        prog.append((_CHAR, node[1]))
    elif kind == "assert":
        prog.append((_ASSERT, node[1]))
    elif kind == "cat":
        for item in node[1]:
            _emit(item, prog)
    elif kind == "alt":
        jumps = []
        for branch in node[1][:-1]:
            split = len(prog)
            prog.append(None)
            _emit(branch, prog)
            jumps.append(len(prog))
            prog.append(None)
            prog[split] = (_SPLIT, split + 1, len(prog))
        _emit(node[1][-1], prog)
        for jump in jumps:
            prog[jump] = (_JMP, len(prog))
    else:
        _, item, low, high = node
        for _ in range(low):
            _emit(item, prog)
        if high is None:
            loop = len(prog)
            prog.append(None)
            _emit(item, prog)
            prog.append((_JMP, loop))
            prog[loop] = (_SPLIT, loop + 1, len(prog))
        else:
            holes = []
            for _ in range(high - low):
                holes.append(len(prog))
                prog.append(None)
                _emit(item, prog)
            for hole in holes:
                prog[hole] = (_SPLIT, hole + 1, len(prog))


def _literal_runs(node: _Node) -> list[str]:
    """Literal strings that every match of ``node`` must contain."""
    kind = node[0]
    if kind == "char":
        return [node[2]] if node[2] is not None else []
    if kind == "repeat":
        return _literal_runs(node[1]) if node[2] >= 1 else []
    if kind != "cat":
        return []
    runs, current = [], ""
    for item in node[1]:
        if item[0] == "char" and item[2] is not None:
            current += item[2]
            continue
        runs.append(current)
        runs.extend(_literal_runs(item))
        current = ""
    runs.append(current)
    return [r for r in runs if r]


class _Dfa:
    """Lazily built DFA states over the NFA program (one per :class:`Regex` generation)."""

    def __init__(self, regex: Regex) -> None:
        self.regex = regex
        self.lock = threading.Lock()
        self.ids: dict[tuple[frozenset[int], bool, bool], int] = {}
        self.keys: list[tuple[frozenset[int], bool, bool]] = []
        self.moves: list[dict[str, int]] = []
        self.ends: list[bool | None] = []
        # The start state is marked at_start even without ``^`` so it can never be DEAD.
        self.start = self.intern(frozenset(), True, False)

    def intern(self, kernel: frozenset[int], at_start: bool, prev_word: bool) -> int:
        key = (kernel, at_start, prev_word)
        sid = self.ids.get(key)
        if sid is None:
            if not kernel and not at_start and self.regex.restart_is_useless:
                return _DEAD
            sid = len(self.keys)
            self.ids[key] = sid
            self.keys.append(key)
            self.moves.append({})
            self.ends.append(None)
        return sid

    def step(self, sid: int, c: str) -> int:
        with self.lock:
            kernel, at_start, prev_word = self.keys[sid]
            regex = self.regex
            next_word = regex.uses_word and _is_word(c)
            threads, matched = regex.closure(kernel, at_start, False, prev_word, next_word)
            if matched:
                nxt = _MATCHED
            else:
                prog = regex.program
                following = frozenset(pc + 1 for pc in threads if prog[pc][1].matches(c))
                nxt = self.intern(following, False, next_word)
            self.moves[sid][c] = nxt
            return nxt

    def at_end(self, sid: int) -> bool:
        cached = self.ends[sid]
        if cached is None:
            kernel, at_start, prev_word = self.keys[sid]
            cached = self.regex.closure(kernel, at_start, True, prev_word, False)[1]
            self.ends[sid] = cached
        return cached


class Regex:
    """A compiled pattern. Use :func:`compile_regex` (cached) rather than this constructor.

    Args:
        pattern: The pattern text.
        ignore_case: Match letters regardless of case.

    Raises:
        RegexError: the pattern is malformed, unsupported or too large.
    """

    def __init__(self, pattern: str, ignore_case: bool = False) -> None:
        if len(pattern) > MAX_PATTERN_CHARS:
            raise RegexError(f"the pattern is longer than {MAX_PATTERN_CHARS} characters", 0)
        self.pattern = pattern
        self.ignore_case = ignore_case
        tree = _PatternParser(pattern, ignore_case).parse()
        size = _size(tree)
        if size > MAX_PROGRAM_SIZE:
            raise RegexError(
                f"the pattern expands to {size} instructions; at most {MAX_PROGRAM_SIZE} "
                "are allowed (lower the {m,n} counts)",
                0,
            )
        self.program: list[Any] = []
        _emit(tree, self.program)
        self.program.append((_MATCH,))
        asserts = {ins[1] for ins in self.program if ins[0] == _ASSERT}
        self.uses_bol = "bol" in asserts
        self.uses_word = bool(asserts & {"word", "nonword"})
        runs = _literal_runs(tree)
        self.required = max(runs, key=len) if runs else ""
        self.literal = self.required if tree[0] in ("char", "cat") and not ignore_case else None
        if self.literal is not None and _size(tree) != len(self.literal):
            self.literal = None
        self.restart_is_useless = not any(
            self.closure(frozenset(), False, end, prev, nxt) != ([], False)
            for end in (False, True)
            for prev in (False, True)
            for nxt in (False, True)
        )
        self._dfa = _Dfa(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Locks and DFA caches do not pickle; the receiving process recompiles (cached).
        return (compile_regex, (self.pattern, self.ignore_case))

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r}, ignore_case={self.ignore_case})"

    def closure(
        self, kernel: frozenset[int], at_start: bool, at_end: bool, prev_word: bool, next_word: bool
    ) -> tuple[list[int], bool]:
        """Consuming instructions reachable from ``kernel`` plus a fresh start, and whether
        the match instruction is reachable, at a position with the given context."""
        prog = self.program
        seen: set[int] = set()
        threads: list[int] = []
        matched = False
        stack = [0, *kernel]
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            ins = prog[pc]
            op = ins[0]
            if op == _CHAR:
                threads.append(pc)
            elif op == _SPLIT:
                stack.append(ins[2])
                stack.append(ins[1])
            elif op == _JMP:
                stack.append(ins[1])
            elif op == _MATCH:
                matched = True
            else:
                kind = ins[1]
                if kind == "bol":
                    ok = at_start
                elif kind == "eol":
                    ok = at_end
                elif kind == "word":
                    ok = prev_word != next_word
                else:
                    # As Python's re, \B never matches in an empty text.
                    ok = prev_word == next_word and not (at_start and at_end)
                if ok:
                    stack.append(pc + 1)
        threads.sort()
        return threads, matched

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text`` (``re.search`` is not None)."""
        if self.literal is not None:
            return self.literal in text
        if self.required and not self._may_contain(text):
            return False
        dfa = self._dfa
        if len(dfa.keys) > _MAX_DFA_STATES:
            # Bound memory: later searches start a fresh cache; this one keeps its own.
            self._dfa = dfa = _Dfa(self)
        moves, sid = dfa.moves, dfa.start
        for c in text:
            nxt = moves[sid].get(c)
            if nxt is None:
                nxt = dfa.step(sid, c)
            if nxt < 0:
                return nxt == _MATCHED
            sid = nxt
        return dfa.at_end(sid)

    def _may_contain(self, text: str) -> bool:
        if not self.ignore_case:
            return self.required in text
        if text.isascii() and self.required.isascii():
            return self.required.lower() in text.lower()
        return True  # Unicode case folding is not one-to-one per character: do not guess


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str, ignore_case: bool = False) -> Regex:
    """The compiled pattern, cached per process.

    Raises:
        RegexError: the pattern is malformed, unsupported or too large.
    """
    return Regex(pattern, ignore_case)

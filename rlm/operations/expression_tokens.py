"""Tokens of the expression language (see :mod:`rlm.operations.expressions`).

Numbers (``12``, ``1.5``, ``2e3``); strings in single or double quotes, where a backslash
escapes a backslash, a quote, ``n``, ``t``, ``r`` or ``0``; names; and the operators
``**  //  ==  !=  <=  >=  +  -  *  /  %  <  >  (  )  [  ]  ,  .``. Integer literals are bounded
like every integer the language makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlm.operations.expression_values import MAX_INT_BITS

__all__ = ["ExpressionSyntaxError", "Token", "tokenize"]

_TWO_CHAR_OPS = ("**", "//", "==", "!=", "<=", ">=")
_ONE_CHAR_OPS = "+-*/%<>()[],."
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}


class ExpressionSyntaxError(Exception):
    """A malformed expression, at a 0-based ``position`` of its source."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class Token:
    """One lexeme and where it starts."""

    kind: str  # "num", "str", "name", "op" or "end"
    value: Any
    pos: int


def tokenize(src: str) -> list[Token]:
    """The tokens of ``src``, ending with an ``end`` token.

    Raises:
        ExpressionSyntaxError: an unexpected character, a bad string or number.
    """
    tokens: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
        elif c.isascii() and c.isdigit():
            i = _number_token(src, i, tokens)
        elif c in "'\"":
            i = _string_token(src, i, tokens)
        elif c.isascii() and (c.isalpha() or c == "_"):
            j = i + 1
            while j < n and src[j].isascii() and (src[j].isalnum() or src[j] == "_"):
                j += 1
            tokens.append(Token("name", src[i:j], i))
            i = j
        elif src[i : i + 2] in _TWO_CHAR_OPS:
            tokens.append(Token("op", src[i : i + 2], i))
            i += 2
        elif c in _ONE_CHAR_OPS:
            tokens.append(Token("op", c, i))
            i += 1
        elif c == "=":
            raise ExpressionSyntaxError("use '==' to compare", i)
        else:
            raise ExpressionSyntaxError(f"unexpected character {c!r}", i)
    tokens.append(Token("end", None, n))
    return tokens


def _digits_end(src: str, i: int) -> int:
    while i < len(src) and src[i].isascii() and src[i].isdigit():
        i += 1
    return i


def _number_token(src: str, start: int, tokens: list[Token]) -> int:
    i = _digits_end(src, start)
    is_float = False
    if i + 1 < len(src) and src[i] == "." and src[i + 1].isascii() and src[i + 1].isdigit():
        i, is_float = _digits_end(src, i + 1), True
    if i < len(src) and src[i] in "eE":
        j = i + 1 + (i + 1 < len(src) and src[i + 1] in "+-")
        if j < len(src) and src[j].isascii() and src[j].isdigit():
            i, is_float = _digits_end(src, j), True
    text = src[start:i]
    if is_float:
        value: int | float = float(text)
        if value in (float("inf"), float("-inf")):
            raise ExpressionSyntaxError("the number is too large", start)
    else:
        value = int(text)
        if value.bit_length() > MAX_INT_BITS:
            raise ExpressionSyntaxError(f"the integer has more than {MAX_INT_BITS} bits", start)
    tokens.append(Token("num", value, start))
    return i


def _string_token(src: str, start: int, tokens: list[Token]) -> int:
    quote, i, out = src[start], start + 1, []
    while i < len(src) and src[i] != quote:
        if src[i] == "\\":
            if i + 1 >= len(src) or src[i + 1] not in _ESCAPES:
                raise ExpressionSyntaxError("unknown escape in string", i)
            out.append(_ESCAPES[src[i + 1]])
            i += 2
        else:
            out.append(src[i])
            i += 1
    if i >= len(src):
        raise ExpressionSyntaxError("unterminated string", start)
    tokens.append(Token("str", "".join(out), start))
    return i + 1

"""What the expression language's operators and functions do to values.

Everything here is bounded: integers stay under :data:`MAX_INT_BITS` bits, strings under
:data:`MAX_STRING_CHARS` characters, ``**`` takes exponents in ``[-64, 64]``, and results are
finite numbers (JSON has no NaN or infinity). Types are strict and JSON-like: booleans are not
numbers, ``"a" * 3`` is refused, ``1 == true`` is false.

Failures raise :class:`EvalError`; the operation running the expression turns it into
:class:`~rlm.errors.InvalidInput` naming the item.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from rlm.operations.values import is_number, type_name

__all__ = [
    "FUNCTIONS",
    "MAX_EXPONENT",
    "MAX_INT_BITS",
    "MAX_STRING_CHARS",
    "EvalError",
    "arithmetic",
    "checked",
    "contains",
    "equal",
    "order",
    "power",
]

#: Largest integer an expression may produce, in bits.
MAX_INT_BITS = 4096
#: Largest ``|exponent|`` accepted by ``**``.
MAX_EXPONENT = 64
#: Longest string an expression may build.
MAX_STRING_CHARS = 1_000_000
_MAX_PARSE_CHARS = 100


class EvalError(Exception):
    """An expression failed on a value (wrong type, division by zero, result too large).

    Args:
        message: What went wrong.
        position: Where in the expression's source the failing operation is.
    """

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def checked(value: Any, pos: int) -> Any:
    """``value`` after the size and finiteness checks every numeric result passes."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise EvalError(f"the integer result has more than {MAX_INT_BITS} bits", pos)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise EvalError("the result is not a finite number", pos)
    elif isinstance(value, complex):
        raise EvalError("the result is not a real number", pos)
    return value


def _number(value: Any, pos: int, what: str) -> int | float:
    if not is_number(value):
        raise EvalError(f"{what} needs a number, not {type_name(value)}", pos)
    number: int | float = value
    return number


def _text(value: Any, pos: int, what: str) -> str:
    if not isinstance(value, str):
        raise EvalError(f"{what} needs a string, not {type_name(value)}", pos)
    return value


def arithmetic(op: str, a: Any, b: Any, pos: int) -> Any:
    """``a <op> b`` for ``+ - * / // %`` (``+`` also joins two strings)."""
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STRING_CHARS:
            raise EvalError(f"the string would exceed {MAX_STRING_CHARS} characters", pos)
        return a + b
    if not (is_number(a) and is_number(b)):
        raise EvalError(f"cannot apply {op!r} to {type_name(a)} and {type_name(b)}", pos)
    try:
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            # Check before multiplying: the product's size is the sum of the sizes.
            if (
                isinstance(a, int)
                and isinstance(b, int)
                and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1
            ):
                raise EvalError(f"the integer result has more than {MAX_INT_BITS} bits", pos)
            result = a * b
        elif op == "/":
            result = a / b
        elif op == "//":
            result = a // b
        else:
            result = a % b
    except ZeroDivisionError:
        raise EvalError("division by zero", pos) from None
    except OverflowError:
        raise EvalError("the number is too large", pos) from None
    return checked(result, pos)


def power(a: Any, b: Any, pos: int) -> Any:
    """``a ** b`` with ``|b| <= 64`` and an integer result of at most 4096 bits."""
    base = _number(a, pos, "'**'")
    exponent = _number(b, pos, "'**'")
    if abs(exponent) > MAX_EXPONENT:
        raise EvalError(f"the exponent must be between -{MAX_EXPONENT} and {MAX_EXPONENT}", pos)
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and base.bit_length() * exponent > MAX_INT_BITS
    ):
        raise EvalError(f"the integer result has more than {MAX_INT_BITS} bits", pos)
    try:
        result = base**exponent
    except ZeroDivisionError:
        raise EvalError("zero cannot be raised to a negative power", pos) from None
    except OverflowError:
        raise EvalError("the number is too large", pos) from None
    return checked(result, pos)


def equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value, booleans only equal booleans, containers by content."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    return bool(a == b)


def order(op: str, a: Any, b: Any, pos: int) -> bool:
    """``a <op> b`` for ``< <= > >=``: two numbers or two strings."""
    if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise EvalError(f"cannot compare {type_name(a)} and {type_name(b)} with {op!r}", pos)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def contains(container: Any, item: Any, pos: int) -> bool:
    """``item in container``: membership in an array, a substring, or a key of an object."""
    if isinstance(container, list | tuple):
        return any(equal(item, x) for x in container)
    if isinstance(container, str):
        return _text(item, pos, "'in' on a string") in container
    if isinstance(container, Mapping):
        return _text(item, pos, "'in' on an object") in container
    raise EvalError(f"'in' needs an array, a string or an object, not {type_name(container)}", pos)


def _abs(args: list[Any], pos: int) -> Any:
    return checked(abs(_number(args[0], pos, "abs()")), pos)


def _len(args: list[Any], pos: int) -> Any:
    value = args[0]
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise EvalError(f"len() needs a string, an array or an object, not {type_name(value)}", pos)


def _lower(args: list[Any], pos: int) -> Any:
    return _text(args[0], pos, "lower()").lower()


def _upper(args: list[Any], pos: int) -> Any:
    return _text(args[0], pos, "upper()").upper()


def _round(args: list[Any], pos: int) -> Any:
    value = _number(args[0], pos, "round()")
    if len(args) == 1:
        return checked(round(value), pos)
    digits = args[1]
    if isinstance(digits, bool) or not isinstance(digits, int) or not -20 <= digits <= 20:
        raise EvalError("round()'s digits must be an integer between -20 and 20", pos)
    return checked(round(value, digits), pos)


def _extreme(args: list[Any], pos: int, name: str, pick: Callable[[list[Any]], Any]) -> Any:
    values = args
    if len(args) == 1:
        if not isinstance(args[0], list | tuple) or not args[0]:
            raise EvalError(f"{name}() of one value needs a non-empty array", pos)
        values = list(args[0])
    if not (all(is_number(v) for v in values) or all(isinstance(v, str) for v in values)):
        raise EvalError(f"{name}() needs all numbers or all strings", pos)
    return pick(values)


def _min(args: list[Any], pos: int) -> Any:
    return _extreme(args, pos, "min", min)


def _max(args: list[Any], pos: int) -> Any:
    return _extreme(args, pos, "max", max)


def _int(args: list[Any], pos: int) -> Any:
    value = args[0]
    if is_number(value):
        return checked(int(value), pos)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if text.isascii() and digits.isdigit() and len(text) <= _MAX_PARSE_CHARS:
            return int(text)
        raise EvalError(f"int() cannot read {value[:40]!r} as an integer", pos)
    raise EvalError(f"int() needs a number or a string, not {type_name(value)}", pos)


def _float(args: list[Any], pos: int) -> Any:
    value = args[0]
    try:
        if is_number(value):
            return checked(float(value), pos)
        if isinstance(value, str) and len(value) <= _MAX_PARSE_CHARS:
            return checked(float(value), pos)
    except OverflowError:
        raise EvalError("the number is too large for a float", pos) from None
    except ValueError:
        pass
    if isinstance(value, str):
        raise EvalError(f"float() cannot read {value[:40]!r} as a number", pos)
    raise EvalError(f"float() needs a number or a string, not {type_name(value)}", pos)


def _str(args: list[Any], pos: int) -> Any:
    value = args[0]
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(checked(value, pos))
    if isinstance(value, float):
        return repr(value)
    raise EvalError(f"str() needs a scalar, not {type_name(value)}", pos)


def _startswith(args: list[Any], pos: int) -> Any:
    return _text(args[0], pos, "startswith()").startswith(_text(args[1], pos, "startswith()"))


def _endswith(args: list[Any], pos: int) -> Any:
    return _text(args[0], pos, "endswith()").endswith(_text(args[1], pos, "endswith()"))


def _contains(args: list[Any], pos: int) -> Any:
    return contains(args[0], args[1], pos)


#: name -> (fewest arguments, most arguments, implementation(args, position)).
FUNCTIONS: dict[str, tuple[int, int, Callable[[list[Any], int], Any]]] = {
    "abs": (1, 1, _abs),
    "contains": (2, 2, _contains),
    "endswith": (2, 2, _endswith),
    "float": (1, 1, _float),
    "int": (1, 1, _int),
    "len": (1, 1, _len),
    "lower": (1, 1, _lower),
    "max": (1, 32, _max),
    "min": (1, 32, _min),
    "round": (1, 2, _round),
    "startswith": (2, 2, _startswith),
    "str": (1, 1, _str),
    "upper": (1, 1, _upper),
}

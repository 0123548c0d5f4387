"""JSON values as the collection operations see them.

Python's own equality is too loose for JSON data: ``True == 1 == 1.0`` and all three hash alike,
so a plain ``set`` would call ``[1, true]`` one distinct value. These helpers keep booleans,
numbers, strings, ``null``, arrays and objects apart, and give each value a stable key.

Example:
    >>> value_key(True) == value_key(1), value_key(1) == value_key(1.0)
    (False, True)
    >>> render_key(None), render_key(2.5), render_key("a")
    ('null', '2.5', 'a')
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

from rlm.errors import InvalidInput

__all__ = [
    "descending_counts",
    "is_number",
    "item_error",
    "render_key",
    "type_name",
    "value_key",
]


def is_number(value: Any) -> bool:
    """Whether ``value`` is a JSON number (an ``int`` or ``float``, never a ``bool``)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    """The JSON name of ``value``'s type (``number``, ``string``, ``array``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def value_key(value: Any) -> Hashable:
    """A hashable key equal for equal JSON values and different otherwise.

    Numbers compare by value (``1`` and ``1.0`` share a key), booleans are not numbers, arrays
    and objects are compared by content, and every NaN shares one key.

    Raises:
        TypeError: ``value`` is not a JSON value (the caller names the item).
    """
    if value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        return ("nan",) if math.isnan(value) else ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list | tuple):
        return ("l", tuple(value_key(v) for v in value))
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("object keys must be strings")
        return ("d", tuple(sorted((k, value_key(v)) for k, v in value.items())))
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def render_key(value: Any) -> str:
    """The text that stands for a JSON scalar as an object key.

    Strings are themselves; ``true``/``false``/``null`` and numbers are their JSON text
    (floats as Python's shortest round-trip ``repr``, so ``1`` and ``1.0`` differ).

    Raises:
        TypeError: ``value`` is an array, an object or not a JSON value.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise TypeError(f"{type_name(value)} values cannot be counted; use numbers or strings")


def descending_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """``counts`` ordered by descending count, then ascending key (a stable, total order)."""
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def item_error(index: int, message: str) -> InvalidInput:
    """An :class:`InvalidInput` blaming item ``index`` (``field="input.items[<index>]"``)."""
    return InvalidInput(f"item {index}: {message}", {"index": index}, field=f"input.items[{index}]")

"""Turning operation outputs into JSON-ready values."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

__all__ = ["dumps", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, tuples and sets made plain JSON types.

    Non-finite floats become ``None`` (JSON has no NaN); mapping keys become strings.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def dumps(value: Any, *, sort_keys: bool = False, indent: bool = False) -> bytes:
    """``value`` as UTF-8 JSON: orjson's speed, with the standard library's reach.

    orjson (numpy values included) writes almost everything; it refuses two kinds of valid
    JSON values a result or a report can hold — integers beyond 64 bits (an exact sum can be
    larger) and strings with lone surrogates (``"\\ud800"`` in a request body). Those go
    through :mod:`json` instead, written ASCII-only so the surrogate survives as an escape, with
    the same output rules: numpy values as plain ones, non-finite floats as ``null``.

    Args:
        value: What to write.
        sort_keys: Sort object keys (a canonical form, e.g. to fingerprint a body).
        indent: Two-space indentation instead of one compact line.

    Raises:
        TypeError: ``value`` holds something that is not JSON (a set, an object).
    """
    option = orjson.OPT_SERIALIZE_NUMPY
    if sort_keys:
        option |= orjson.OPT_SORT_KEYS
    if indent:
        option |= orjson.OPT_INDENT_2
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        pass
    text = json.dumps(
        _plain(value),
        sort_keys=sort_keys,
        indent=2 if indent else None,
        separators=None if indent else (",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return text.encode()


def _plain(value: Any) -> Any:
    """What orjson would write, as values :mod:`json` writes the same way (or ``TypeError``)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    raise TypeError("Dict key must be str")

"""Scoring an output against ``expectedOutput``, as OOLONG scores answers.

- Exact match scores 1.
- Numbers score ``0.75 ** |expected - actual|``.
- Strings compare the answer after the last ``:`` (trimmed, case-insensitive); numeric strings
  score as numbers.
- Lists score by multiset overlap: ``|A ∩ B| / max(|A|, |B|)`` (order is not scored).
- Objects score the mean of their keys' scores over the union of keys.

Example:
    >>> score(55, 55), score(53, 55)
    (1.0, 0.5625)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

__all__ = ["score"]


def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float):
        return float(x)
    if isinstance(x, str):
        try:
            return float(_answer(x).replace(",", ""))
        except ValueError:
            return None
    return None


def _answer(text: str) -> str:
    return text.rsplit(":", 1)[-1].strip().lower()


def _key(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def score(actual: Any, expected: Any) -> float:
    """How well ``actual`` matches ``expected``, from 0 to 1."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return 1.0 if actual is expected else 0.0
    if isinstance(expected, int | float) and isinstance(actual, int | float | str):
        try:
            a = _number(actual)
        except OverflowError:
            return 0.0
        if a is None or not math.isfinite(a):
            return 0.0
        try:
            e = float(expected)
        except OverflowError:
            return 1.0 if actual == expected else 0.0
        if math.isclose(a, e, rel_tol=1e-9, abs_tol=1e-9):
            return 1.0
        try:
            return float(0.75 ** abs(e - a))
        except OverflowError:
            return 0.0
    if isinstance(expected, str):
        if isinstance(actual, int | float):
            return score(actual, _number(expected)) if _number(expected) is not None else 0.0
        if not isinstance(actual, str):
            return 0.0
        e_ans, a_ans = _answer(expected), _answer(actual)
        if e_ans == a_ans:
            return 1.0
        e_num, a_num = _number(e_ans), _number(a_ans)
        if e_num is not None and a_num is not None:
            return score(a_num, e_num)
        return 0.0
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return 0.0
        if not expected and not actual:
            return 1.0
        common = Counter(map(_key, expected)) & Counter(map(_key, actual))
        return sum(common.values()) / max(len(expected), len(actual))
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return 0.0
        keys = set(expected) | set(actual)
        if not keys:
            return 1.0
        return sum(
            score(actual[k], expected[k]) if k in actual and k in expected else 0.0 for k in keys
        ) / len(keys)
    return 1.0 if actual == expected else 0.0

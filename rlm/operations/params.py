"""Reading an operation's ``input.params``, with errors that name the bad field.

Every built-in operation validates its parameters once, in ``parse_params``, before any agent
runs. :class:`ParamReader` does the repetitive part: it refuses unknown keys, checks types
(``true`` is not a number here, ``1`` is not a boolean) and ranges, and raises
:class:`~rlm.errors.InvalidInput` with ``field="input.params.<name>"``.

Example:
    >>> r = ParamReader("top_k", {"k": 3}, allowed=("k", "largest"))
    >>> r.integer("k", lo=1, hi=10_000), r.flag("largest", True)
    (3, True)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from rlm.errors import InvalidInput

__all__ = ["ParamReader", "field_of"]

_MISSING: Any = object()


def field_of(name: str) -> str:
    """The error ``field`` for parameter ``name``: ``input.params.<name>``."""
    return f"input.params.{name}"


class ParamReader:
    """Typed access to one operation's parameters.

    Args:
        op_name: The operation's name, for messages.
        params: The raw ``input.params`` mapping.
        allowed: Every parameter name the operation accepts.

    Raises:
        InvalidInput: ``params`` holds a name not in ``allowed``.
    """

    def __init__(self, op_name: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
        self._op = op_name
        self._params = params
        self._allowed = tuple(allowed)
        for key in params:
            if key not in self._allowed:
                hint = ", ".join(self._allowed) if self._allowed else "none"
                raise InvalidInput(
                    f"operation {op_name!r} has no parameter {key!r} (it takes: {hint})",
                    {"allowed": list(self._allowed)},
                    field=field_of(str(key)),
                )

    def has(self, name: str) -> bool:
        """Whether the caller gave ``name`` (``null`` counts as not given)."""
        return self._params.get(name) is not None

    def _get(self, name: str, default: Any) -> Any:
        value = self._params.get(name)
        if value is None:
            if default is _MISSING:
                raise InvalidInput(
                    f"operation {self._op!r} needs parameter {name!r}", field=field_of(name)
                )
            return default
        return value

    def _bad(self, name: str, what: str, value: Any) -> InvalidInput:
        return InvalidInput(
            f"parameter {name!r} of {self._op!r} must be {what}; got {_show(value)}",
            field=field_of(name),
        )

    def flag(self, name: str, default: bool) -> bool:
        """A boolean parameter.

        Raises:
            InvalidInput: the value is not ``true``/``false``.
        """
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false", value)
        return value

    def integer(self, name: str, *, lo: int, hi: int, default: int | None = None) -> int:
        """An integer parameter in ``[lo, hi]``; required when ``default`` is None.

        Raises:
            InvalidInput: missing, not an integer, or out of range.
        """
        value = self._get(name, _MISSING if default is None else default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON's 3.0 is the integer 3
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, "an integer", value)
        if not lo <= value <= hi:
            raise self._bad(name, f"between {lo} and {hi}", value)
        return value

    def number(self, name: str) -> float:
        """A required finite number parameter.

        Raises:
            InvalidInput: missing, not a number, or not finite.
        """
        value = self._get(name, _MISSING)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(name, "a number", value)
        if not math.isfinite(value):
            raise self._bad(name, "finite", value)
        return float(value)

    def string(
        self,
        name: str,
        *,
        default: str | None = None,
        max_len: int = 1000,
        choices: Collection[str] | None = None,
        non_empty: bool = False,
    ) -> str:
        """A string parameter; required when ``default`` is None.

        Raises:
            InvalidInput: missing, not a string, too long, empty when ``non_empty``, or not
                one of ``choices``.
        """
        value = self._get(name, _MISSING if default is None else default)
        if not isinstance(value, str):
            raise self._bad(name, "a string", value)
        if len(value) > max_len:
            raise self._bad(name, f"at most {max_len} characters long", f"{len(value)} characters")
        if non_empty and not value:
            raise self._bad(name, "a non-empty string", value)
        if choices is not None and value not in choices:
            raise self._bad(name, "one of " + ", ".join(sorted(choices)), value)
        return value

    def optional_string(self, name: str, *, max_len: int = 1000) -> str | None:
        """A string parameter that may be absent (``None`` then).

        Raises:
            InvalidInput: present but not a string, or too long.
        """
        if not self.has(name):
            return None
        return self.string(name, max_len=max_len)

    def number_pair(self, name: str, *, bound: float = math.inf) -> tuple[float, float]:
        """A required pair of finite numbers within ``±bound``, in increasing order (a pair
        given the other way round is read as its bounds; both may be equal).

        Raises:
            InvalidInput: missing, malformed, not finite or out of bounds.
        """
        value = self._get(name, _MISSING)
        ok = (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(
                not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
                for v in value
            )
        )
        if not ok or any(abs(v) > bound for v in value):
            within = "" if bound == math.inf else f" within ±{bound:g}"
            raise self._bad(name, f"a pair [lo, hi] of finite numbers{within}", value)
        lo, hi = sorted((float(value[0]), float(value[1])))
        return lo, hi

    def forbid(self, name: str, reason: str) -> None:
        """Refuse ``name`` when given, because ``reason``.

        Raises:
            InvalidInput: the caller gave ``name``.
        """
        if self.has(name):
            raise InvalidInput(
                f"parameter {name!r} of {self._op!r} is not used {reason}", field=field_of(name)
            )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

"""Checks of the plain arguments the quota core accepts (ids and counts).

The ledger is called from Ray actors and HTTP routes alike, so it validates its own inputs
instead of trusting a type checker: a bad value raises ``InvalidInput`` naming the field.
"""

from __future__ import annotations

from rlm.errors import InvalidInput

__all__ = ["MAX_ID_LENGTH", "check_count", "check_id"]

MAX_ID_LENGTH = 200


def check_id(value: object, field: str) -> str:
    """Return ``value`` if it is a non-empty string of at most 200 characters.

    Raises:
        InvalidInput: Otherwise, naming ``field``.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidInput(
            f"{field} must be a non-empty string of at most {MAX_ID_LENGTH} characters",
            field=field,
        )
    return value


def check_count(value: object, field: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return ``value`` if it is an integer (not a bool) of at least ``minimum`` (and at most
    ``maximum``, if given).

    Raises:
        InvalidInput: Otherwise, naming ``field``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{field} must be an integer >= {minimum}", field=field)
    if maximum is not None and value > maximum:
        raise InvalidInput(f"{field} must be an integer <= {maximum}", field=field)
    return value

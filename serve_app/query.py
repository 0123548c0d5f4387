"""Query parameters several routes read the same way: RFC 3339 instants and comma lists."""

from __future__ import annotations

import re
from datetime import datetime

from rlm.errors import InvalidInput

__all__ = ["instant", "listed"]

#: An RFC 3339 date-time with its offset (what JSON Schema's ``date-time`` format means).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def instant(value: str | None, field: str) -> datetime | None:
    """``value`` (an RFC 3339 time, as its documented format says) as an aware datetime.

    Not pydantic's ``datetime``: it also takes numbers (``0.5``) and ISO 8601's other forms,
    which the document's ``date-time`` does not.

    Raises:
        InvalidInput: ``value`` is not an RFC 3339 time, or names one that does not exist.
    """
    if value is None:
        return None
    if _RFC3339.fullmatch(value) is None:
        raise InvalidInput(
            f"{field} must be an RFC 3339 time with its offset (e.g. 2026-01-15T10:30:00Z)",
            field=field,
        )
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:  # a date that does not exist: 2026-02-30, 25:00
        raise InvalidInput(f"{field}: {value!r} is not a valid time", field=field) from None


def listed(value: str | None, field: str) -> list[str] | None:
    """A comma-separated parameter's items (``None`` when it was not given).

    Raises:
        InvalidInput: the parameter names nothing (``?status=,``).
    """
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise InvalidInput(f"{field} is empty", field=field)
    return items

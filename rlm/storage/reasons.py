"""Why a storage read was refused: the ``reason`` in an error's ``details``.

Every refusal raises :class:`~rlm.errors.InvalidInput` (400) or, for an attempt to leave a
connector's root or a key the caller's tenant may not read, :class:`~rlm.errors.Forbidden`
(403); ``details["reason"]`` names the rule that refused it, so a program need not parse
messages.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from rlm.errors import Forbidden, InvalidInput

__all__ = ["Reason", "forbidden", "invalid"]


class Reason(StrEnum):
    """A machine-readable cause of a refused read."""

    # Ranges (INVALID_INPUT).
    BAD_RANGE = "bad_range"
    RANGE_TOO_LARGE = "range_too_large"
    START_PAST_EOF = "start_past_eof"
    MISALIGNED = "misaligned"
    # Connectors and methods (INVALID_INPUT).
    UNKNOWN_CONNECTOR = "unknown_connector"
    UNSUPPORTED_METHOD = "unsupported_method"
    # Keys and objects (INVALID_INPUT).
    INVALID_KEY = "invalid_key"
    MISSING_KEY = "missing_key"
    NOT_REGULAR_FILE = "not_regular_file"
    INVALID_FORMAT = "invalid_format"
    # Confinement (FORBIDDEN).
    ABSOLUTE_KEY = "absolute_key"
    PARENT_SEGMENT = "parent_segment"
    ESCAPES_ROOT = "escapes_root"
    SYMLINK_REFUSED = "symlink_refused"
    PERMISSION_DENIED = "permission_denied"
    # The connector's access policy (FORBIDDEN): the key is not the caller's tenant's.
    NOT_PERMITTED = "not_permitted"


def invalid(reason: Reason, message: str, **details: Any) -> InvalidInput:
    """An INVALID_INPUT error whose details carry ``reason`` and ``details``.

    Args:
        reason: The rule that refused the read.
        message: A sentence for a person.
        **details: Structured facts (JSON-serialisable).
    """
    return InvalidInput(message, {"reason": reason.value, **details})


def forbidden(reason: Reason, message: str, **details: Any) -> Forbidden:
    """A FORBIDDEN error whose details carry ``reason`` and ``details``.

    Args:
        reason: The rule that refused the read.
        message: A sentence for a person.
        **details: Structured facts (JSON-serialisable).
    """
    return Forbidden(message, {"reason": reason.value, **details})

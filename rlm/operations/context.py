"""Cooperative cancellation inside agent calls.

The engine runs each agent call with a cancellation token bound to the calling thread. Long
operations call :func:`check_cancelled` between pieces of work, so a cancel or a timeout stops
them promptly even though Python threads cannot be interrupted from outside.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CallCancelled", "cancellation_scope", "check_cancelled", "is_cancelled"]

_local = threading.local()


class CallCancelled(Exception):  # a signal, not an error of the user's (hence no Error suffix)
    """Raised by :func:`check_cancelled` when the running call's task was cancelled."""


@contextmanager
def cancellation_scope(token: threading.Event) -> Iterator[None]:
    """Bind ``token`` to this thread while the block runs."""
    previous = getattr(_local, "token", None)
    _local.token = token
    try:
        yield
    finally:
        _local.token = previous


def is_cancelled() -> bool:
    """Whether the task of the call running on this thread has been cancelled."""
    token: threading.Event | None = getattr(_local, "token", None)
    return token is not None and token.is_set()


def check_cancelled() -> None:
    """Raise :class:`CallCancelled` if the running call's task was cancelled.

    Raises:
        CallCancelled: the task was cancelled or timed out.
    """
    if is_cancelled():
        raise CallCancelled("the task was cancelled")

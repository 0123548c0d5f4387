"""Incidents: failures whose detail is for the operator's log, never for the caller.

The text of an exception raised by a user's code (an operation's ``leaf``, ``combine``,
``fold`` or ``finish``) or by the engine's own internals may carry anything: paths, data,
credentials, another library's internals. A caller sees a generic sentence naming what failed
and an *incident id*; the log keeps the whole exception under the same id, so an operator
finds it from the id the caller quotes::

    >>> incident = log_incident(log, "operation 'parse' failed", err, task_id="task-1")
    >>> InvalidInput(f"operation 'parse' failed on this input (incident {incident})")
"""

from __future__ import annotations

import logging
import uuid

__all__ = ["log_incident", "new_incident"]


def new_incident() -> str:
    """A fresh incident id: 12 hex digits, unique enough to grep a log for."""
    return uuid.uuid4().hex[:12]


def log_incident(log: logging.Logger, what: str, err: BaseException, *, task_id: str = "") -> str:
    """Log ``err`` with its traceback under a new incident id, and return the id.

    Args:
        log: Where the operator reads it.
        what: A sentence saying what failed (no secret in it: it is logged as is).
        err: The exception, logged with its text and traceback.
        task_id: The task it happened in, when there is one.

    Returns:
        The incident id, to quote in what the caller sees.
    """
    incident = new_incident()
    log.error("task %s: %s (incident %s)", task_id or "-", what, incident, exc_info=err)
    return incident

"""Task records and the table that keeps them."""

from __future__ import annotations

from rlm.tasks.record import TERMINAL_STATES, TaskRecord
from rlm.tasks.store import INTERRUPTED_MESSAGE, TaskStore

__all__ = ["INTERRUPTED_MESSAGE", "TERMINAL_STATES", "TaskRecord", "TaskStore"]

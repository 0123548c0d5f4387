"""Which cells broke one of their sandbox's limits: what the audit log records as
``sandbox.violation``.

A cell's result says how it ended (:class:`~rlm.sandbox.host.CellResult`): stopped by its CPU
cap or wall clock, its process crashed or broke the protocol (both gone, restarted by the
session), or its code met a limit the OS enforces and got an exception for it: the address
space (``MemoryError``), the process count (``BlockingIOError`` from ``fork``), the file size
(``File too large``) or the network that is not there (``Network is unreachable``). Those are
violations; an ordinary exception of the code is not, nor is output beyond the cap (the cap
keeps head and tail, as the feedback says).

Only the reason and a severity come out of a cell: never its code or output, which may hold
whatever the context or the model put there.

Example:
    >>> from rlm.sandbox.host import CellResult
    >>> cell_violation(CellResult("", "", error="...", killed_reason="cpu_limit"))
    SandboxViolation(reason='cpu_limit', severity='medium')
    >>> cell_violation(CellResult("", "", error="Traceback ...\\nValueError: no")) is None
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from rlm.sandbox.host import CellResult

__all__ = ["SandboxViolation", "cell_violation"]

Severity = Literal["medium", "high"]

#: How each ``killed_reason`` is recorded.
_KILLED: Final[dict[str, Severity]] = {
    "cpu_limit": "medium",
    "wall_timeout": "medium",
    "wall_timeout_killed": "medium",
    # Its code raised its own CPU limit or ignored the signal: tampering, not only slowness.
    "cpu_limit_killed": "high",
    "crashed": "high",
    "protocol_violation": "high",
}

#: The last line of a traceback, when the code met a limit the OS enforces.
_LIMITS: Final[tuple[tuple[re.Pattern[str], str, Severity], ...]] = (
    (re.compile(r"^MemoryError\b"), "memory", "medium"),
    (re.compile(r"^BlockingIOError\b.*Resource temporarily unavailable"), "processes", "medium"),
    (re.compile(r"^OSError: \[Errno 27\]"), "file_size", "medium"),
    (re.compile(r"Network is unreachable"), "network", "high"),
)


@dataclass(frozen=True, slots=True)
class SandboxViolation:
    """A limit a cell ran into.

    Attributes:
        reason: ``cpu_limit``, ``wall_timeout``, ``wall_timeout_killed``,
            ``cpu_limit_killed``, ``crashed``, ``protocol_violation``, ``memory``,
            ``processes``, ``file_size`` or ``network``.
        severity: ``high`` for a process that crashed or broke the protocol and for a network
            attempt (code reaching past its confinement), ``medium`` for a resource cap.
    """

    reason: str
    severity: Severity


def cell_violation(cell: CellResult) -> SandboxViolation | None:
    """The limit ``cell`` ran into, or ``None`` when it ended within its limits."""
    if cell.killed_reason is not None:
        return SandboxViolation(cell.killed_reason, _KILLED.get(cell.killed_reason, "high"))
    if not cell.error:
        return None
    last = cell.error.rstrip().rsplit("\n", 1)[-1].strip()
    for pattern, reason, severity in _LIMITS:
        if pattern.search(last):
            return SandboxViolation(reason, severity)
    return None

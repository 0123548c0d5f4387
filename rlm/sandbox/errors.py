"""Errors of the sandbox's host side; all are :class:`rlm.errors.InternalError` (500)::

    InternalError
    └── SandboxError              the sandbox failed (protocol violation, broken pipe)
        ├── SandboxUnavailable    the OS can not provide the isolation (and unsafe_local is off)
        └── SandboxDead           the process was killed or died; call ``restart()``

What model-written code does wrong is *not* an error here: it is feedback in a ``CellResult``.
"""

from __future__ import annotations

from rlm.errors import InternalError

__all__ = ["SandboxDead", "SandboxError", "SandboxUnavailable"]


class SandboxError(InternalError):
    """The sandbox process failed in a way the cell's feedback can not describe."""


class SandboxUnavailable(SandboxError):
    """The OS can not isolate the sandbox; start with ``unsafe_local=True`` to run anyway."""


class SandboxDead(SandboxError):
    """The sandbox process is gone (killed after a timeout, or crashed); ``restart()`` it."""

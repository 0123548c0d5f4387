"""The sandboxed REPL of RLM mode: model-written code runs in a confined child process.

:class:`Sandbox` is the host-side handle (see :mod:`rlm.sandbox.host` for exactly how the child
is confined); :mod:`rlm.sandbox.framing` is the wire format between them;
:mod:`rlm.sandbox.violations` says which cells ran into a limit (what the audit log records).
"""

from __future__ import annotations

from rlm.sandbox.errors import SandboxDead, SandboxError, SandboxUnavailable
from rlm.sandbox.host import (
    HOST_FUNCTIONS,
    CellResult,
    HostCall,
    Lookup,
    Sandbox,
    SandboxLimits,
)

__all__ = [
    "HOST_FUNCTIONS",
    "CellResult",
    "HostCall",
    "Lookup",
    "Sandbox",
    "SandboxDead",
    "SandboxError",
    "SandboxLimits",
    "SandboxUnavailable",
]

"""``RLM_SANDBOX__*``: how RLM sessions' REPLs are confined and limited.

Example:
    ``RLM_SANDBOX__MEMORY_MB=2048 RLM_SANDBOX__CELL_TIMEOUT_S=120 rlm serve``

Without isolation (the service does not run as root, or user namespaces are disabled) RLM
tasks are refused, unless an operator sets ``RLM_SANDBOX__UNSAFE_LOCAL=true``: then the REPL
runs as the service's own user with no network or filesystem isolation (its resource limits
still apply) — only for a single-user machine running its own code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from rlm.sandbox.host import SandboxLimits

__all__ = ["SandboxSettings"]


class SandboxSettings(BaseModel):
    """The sandbox of RLM mode (one confined REPL process per RLM session).

    Attributes:
        unsafe_local: Run REPLs without isolation where the OS cannot provide it (an explicit
            operator opt-in; see the module docstring).
        memory_mb: Address space of a REPL (``RLIMIT_AS``).
        max_processes: Processes and threads of a REPL's uid (``RLIMIT_NPROC``).
        cpu_s_total: CPU seconds a REPL may use over its life.
        file_mb: The largest file a REPL may write in its scratch directory.
        scratch_mb: Everything a REPL writes, together: its working directory, ``/tmp``,
            ``/var/tmp`` and ``/dev/shm`` are one tmpfs of this size (memory, not disk).
        output_chars: stdout / stderr of a cell kept (head + tail).
        cell_timeout_s: Wall time of one cell, sub-calls included.
        cell_cpu_s: CPU time of one cell.
        python: The REPL's interpreter (default: this one, else the system's same version).
        hidden_paths: More directories REPLs must not see (the state directory and Ray's
            temporary directory always are).
    """

    model_config = ConfigDict(frozen=True)

    unsafe_local: bool = False
    memory_mb: int = Field(default=1024, ge=64, le=1 << 20)
    max_processes: int = Field(default=32, ge=1, le=4096)
    cpu_s_total: int = Field(default=3600, ge=1)
    file_mb: int = Field(default=256, ge=1)
    scratch_mb: int = Field(default=256, ge=1, le=1 << 20)
    output_chars: int = Field(default=20_000, ge=100, le=10_000_000)
    cell_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    cell_cpu_s: int = Field(default=120, ge=1, le=86_400)
    python: str | None = None
    hidden_paths: tuple[str, ...] = ()

    def limits(self) -> SandboxLimits:
        """The limits a :class:`~rlm.sandbox.host.Sandbox` is started with."""
        return SandboxLimits(
            memory_bytes=self.memory_mb << 20,
            max_processes=self.max_processes,
            cpu_s_total=self.cpu_s_total,
            file_bytes=self.file_mb << 20,
            scratch_bytes=self.scratch_mb << 20,
            output_chars=self.output_chars,
        )

"""CPU time of the processes a benchmark drives, read from ``/proc`` (Linux).

The CPU-per-call scripts (``api_cpu``, ``engine_cpu``, ``quota_cpu``, ``storage_sum_cpu``)
say whose time a figure is: the core actor's, an agent's, the Serve proxy's, the driver's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

__all__ = ["cpu_ms_per_call", "cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far.

    Raises:
        OSError: The process is gone.
    """
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces and parentheses: split after its ")".
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_ms_per_call(fn: Callable[[], object], pids: Mapping[str, int], n: int) -> dict[str, float]:
    """Milliseconds of CPU per call of ``fn`` (called ``n`` times), per named process, and
    the calling process's own as ``"driver"``."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    driver = time.process_time()
    for _ in range(n):
        fn()
    out = {name: (cpu_seconds(pid) - before[name]) * 1000 / n for name, pid in pids.items()}
    out["driver"] = (time.process_time() - driver) * 1000 / n
    return {k: round(v, 3) for k, v in out.items()}

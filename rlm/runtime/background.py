"""A process's threads as background work: nicer, and in Linux's ``SCHED_IDLE`` class.

A Ray actor's process has many threads (Ray's own, the asyncio loop's, a thread pool's), and
on Linux ``nice`` and the scheduling class belong to each thread, not to the process:
``os.nice`` in an actor's ``__init__`` lowers that one thread only. :func:`run_in_background`
changes every thread there is (threads started later inherit their creator's), and
:class:`StarvationWatch` gives the process its normal class back while it is starved, so
background work waits for an idle moment but never for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

__all__ = ["StarvationWatch", "run_in_background"]

log = logging.getLogger(__name__)

_TASKS = "/proc/self/task"


def _threads() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(_TASKS)]
    except OSError:  # not Linux: the calling thread is what there is to change
        return [0]


def run_in_background(nice: int, idle: bool) -> int:
    """Make every thread of this process ``nice`` at least, and ``SCHED_IDLE`` when ``idle``.

    Args:
        nice: The niceness each thread gets (0 leaves it).
        idle: Put each thread in the idle scheduling class (it runs when a CPU has nothing
            else to run; a waking task of the normal class takes its CPU at once).

    Returns:
        The threads changed (a thread that ended meanwhile, or a refusal, is skipped).
    """
    changed = 0
    for tid in _threads():
        with contextlib.suppress(OSError, AttributeError):
            if nice:
                current = os.getpriority(os.PRIO_PROCESS, tid)
                os.setpriority(os.PRIO_PROCESS, tid, max(current, nice))
            policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
            os.sched_setscheduler(tid, policy, os.sched_param(0))
            changed += 1
    return changed


class StarvationWatch:
    """Back to the normal class while the process is starved of CPU, idle again once not.

    A timer that should fire every ``tick_s`` fires late when the process gets no CPU (the
    machine is saturated and its class is idle); after ``late_s`` of lateness the process's
    threads go back to the normal class (still nice), and after ``calm_s`` without lateness
    they go idle again.
    """

    def __init__(
        self, nice: int, *, tick_s: float = 0.25, late_s: float = 0.25, calm_s: float = 30.0
    ) -> None:
        self._nice = nice
        self._tick_s = tick_s
        self._late_s = late_s
        self._calm_s = calm_s
        self.promotions = 0
        self.idle = True

    async def run(self) -> None:
        """Watch for ever (a task of the process's event loop)."""
        calm_since = time.monotonic()
        while True:
            began = time.monotonic()
            await asyncio.sleep(self._tick_s)
            now = time.monotonic()
            if now - began - self._tick_s > self._late_s:
                calm_since = now
                if self.idle:
                    self.idle = False
                    self.promotions += 1
                    run_in_background(self._nice, idle=False)
                    log.info("background process starved of CPU: normal scheduling class")
            elif not self.idle and now - calm_since > self._calm_s:
                self.idle = True
                run_in_background(self._nice, idle=True)

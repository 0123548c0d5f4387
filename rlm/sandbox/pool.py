"""Fresh sandboxes kept started, so no RLM session waits for a process to start.

A sandbox still serves exactly one RLM and is closed after; the pool only starts the next ones
ahead of time (``prestart`` of them) and hands them out, each given its session's callback.

Every sandbox process is started from one of the pool's own long-lived threads: the REPL is
armed with ``PR_SET_PDEATHSIG``, which fires when the *thread* that started it ends, so a
sandbox started from a short-lived thread (a session's) would be killed with that thread.

Example:
    >>> pool = SandboxPool(lambda: Sandbox(refuse_calls), prestart=2)   # doctest: +SKIP
    >>> pool.warm()                                                      # doctest: +SKIP
    >>> box = pool.take(my_on_call)                                      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from rlm.sandbox.errors import SandboxError
from rlm.sandbox.host import HostCall, Sandbox

__all__ = ["SandboxPool", "refuse_calls"]


def refuse_calls(kind: str, prompts: list[str], model: str | None) -> list[str]:
    """The callback of a sandbox not yet given to a session (no cell runs there)."""
    raise SandboxError("this sandbox belongs to no session yet")


class SandboxPool:
    """Started sandboxes waiting for their session.

    Args:
        factory: Starts one sandbox (its limits, hidden paths, isolation mode).
        prestart: How many to keep started.
        spawners: Threads that start sandboxes (several sessions may need one at once).
    """

    def __init__(
        self, factory: Callable[[], Sandbox], prestart: int = 2, spawners: int = 4
    ) -> None:
        self._factory = factory
        self._prestart = prestart
        # Idle worker threads of an executor live until it shuts down: the parents the
        # PDEATHSIG of every sandbox refers to.
        self._spawner = ThreadPoolExecutor(max(1, spawners), thread_name_prefix="rlm-sandbox")
        self._lock = threading.Lock()
        self._idle: list[Sandbox] = []
        self._starting = 0
        self._closed = False
        self.started = 0

    def _spawn(self) -> Sandbox:
        box = self._spawner.submit(self._factory).result()
        with self._lock:
            self.started += 1
        return box

    def warm(self) -> None:
        """Start one sandbox now (raising what the OS refuses), then fill the pool behind it.

        Raises:
            SandboxUnavailable: The OS cannot isolate a sandbox (and unsafe local mode is off).
        """
        box = self._spawn()
        with self._lock:
            self._idle.append(box)
        self._refill()

    def _refill(self) -> None:
        with self._lock:
            if self._closed:
                return
            wanted = self._prestart - len(self._idle) - self._starting
            self._starting += max(0, wanted)
        for _ in range(max(0, wanted)):
            future = self._spawner.submit(self._factory)
            future.add_done_callback(self._started)

    def _started(self, future: Future[Sandbox]) -> None:
        try:
            box = future.result()
        except Exception:  # start-up failed: the next take() starts one and says why
            with self._lock:
                self._starting -= 1
            return
        with self._lock:
            self._starting -= 1
            self.started += 1
            if not self._closed:
                self._idle.append(box)
                return
        box.close()

    def take(self, on_call: HostCall) -> Sandbox:
        """A started sandbox for one session, its host calls going to ``on_call``.

        Raises:
            SandboxError: A sandbox could not be started (``SandboxUnavailable``: no
                isolation).
        """
        box: Sandbox | None = None
        with self._lock:
            while self._idle and box is None:
                candidate = self._idle.pop()
                if candidate.alive:
                    box = candidate
                else:
                    candidate.close()
        if box is None:
            box = self._spawn()
        self._refill()
        box.on_call = on_call
        return box

    def idle_pids(self) -> list[int]:
        """The pids of the started sandboxes no session holds yet."""
        with self._lock:
            return [b.pid for b in self._idle if b.alive]

    def close(self) -> None:
        """Close the idle sandboxes; later starts are closed as they come."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for box in idle:
            with contextlib.suppress(Exception):
                box.close()
        self._spawner.shutdown(wait=False)

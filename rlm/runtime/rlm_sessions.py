"""The core's side of RLM mode: its session hosts, and the RLM runs started on them.

The core composes this as it composes the scheduler: an RLM task (an operation that
``runs_in_session``) is admitted, recorded, budgeted and timed like any task, then started as
one session on the least loaded host instead of being planned into agent calls. Its LM calls
come back to the core (``lm_batch``), so the broker accounts them as for LM operations; the
session's outcome comes back here and the core ends the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from rlm.errors import InternalError, error_from_payload
from rlm.runtime.rlm_host import HostConfig, SessionHostActor, Tenant
from rlm.runtime.run import Run
from rlm.sandbox.errors import SandboxUnavailable

__all__ = ["SessionHosts"]

#: What a session answers: ``("ok", {...})``, ``("err", payload)`` or ``("stopped", None)``.
Outcome = tuple[str, Any]
Done = Callable[[Run, Outcome], Coroutine[Any, Any, None]]


class SessionHosts:
    """The engine's RLM session hosts, warm from the engine's start.

    Args:
        config: What the hosts need of the settings.
        hosts: How many hosts.
        core: The core actor's handle (the hosts send LM calls and events to it).
    """

    def __init__(self, config: HostConfig, hosts: int, core: Any) -> None:
        self._unsafe_local = config.sandbox.unsafe_local
        self._hosts = [SessionHostActor.remote(config, core, i) for i in range(hosts)]
        self._load = [0] * hosts
        self._warm: list[Any] | None = None
        self._availability: dict[str, Any] | None = None
        self._running: dict[str, tuple[int, asyncio.Future[Any]]] = {}
        self._ending: set[asyncio.Task[None]] = set()  # referenced until done

    def warm(self) -> None:
        """Start every host's sandboxes (once; not awaited)."""
        if self._warm is None:
            self._warm = [host.warm.remote() for host in self._hosts]

    async def ready(self) -> None:
        """Start every host's sandboxes and wait until they have answered (errors included:
        :meth:`check_available` reports them to the tasks that need them)."""
        self.warm()
        assert self._warm is not None
        await asyncio.gather(*self._warm, return_exceptions=True)

    async def check_available(self) -> None:
        """Refuse RLM tasks when sandboxes cannot be isolated here (and no opt-in says so).

        Raises:
            SandboxUnavailable: the OS cannot isolate a sandbox and ``unsafeLocal`` is off.
            InternalError: the hosts did not come up.
        """
        if self._availability is None:
            self.warm()
            assert self._warm is not None
            try:
                # Every host runs on the same kind of node: the first one's answer stands.
                self._availability = await self._warm[0]
            except Exception as err:
                raise InternalError(
                    f"the RLM session hosts did not start: {type(err).__name__}"
                ) from None
        assert self._availability is not None
        if self._availability.get("available"):
            return
        cause = error_from_payload(self._availability["error"])
        raise SandboxUnavailable(
            "RLM tasks run model-written code in an isolated sandbox, which this service "
            f"cannot provide: {cause.message}. An operator may set "
            "RLM_SANDBOX__UNSAFE_LOCAL=true to run it without isolation (only on a "
            "single-user machine running its own code)",
            {"reason": cause.message},
        )

    def start(self, run: Run, done: Done) -> None:
        """Start the run's session on the least loaded host; ``done`` gets its outcome."""
        task_id = run.spec.task_id
        index = min(range(len(self._hosts)), key=self._load.__getitem__)
        self._load[index] += 1
        tenant = Tenant(user_id=run.spec.owner_id, org_id=run.spec.org_id)
        ref = self._hosts[index].run_session.remote(
            task_id, run.spec.params, run.spec.items, tenant
        )
        future: asyncio.Future[Any] = asyncio.wrap_future(ref.future())
        self._running[task_id] = (index, future)
        loop = asyncio.get_running_loop()

        def finished(f: asyncio.Future[Any]) -> None:
            self._load[index] -= 1
            self._running.pop(task_id, None)
            try:
                outcome: Outcome = f.result()
            except Exception as err:  # the host's process died (Ray restarts it)
                failure = InternalError(
                    "the RLM session host died while running the task",
                    {"cause": type(err).__name__},
                )
                outcome = ("err", failure.to_payload())
            ending = loop.create_task(done(run, outcome))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)

        future.add_done_callback(finished)

    async def stop(self, task_id: str, grace_s: float) -> None:
        """Stop the task's session (its sandboxes are killed) and wait until it has ended."""
        entry = self._running.get(task_id)
        if entry is None:
            return
        index, future = entry
        self._hosts[index].stop_task.remote(task_id)
        await asyncio.wait([future], timeout=grace_s)

    async def stats(self) -> list[dict[str, Any]]:
        """Each host's sessions and sandboxes."""
        return list(await asyncio.gather(*(h.stats.remote() for h in self._hosts)))

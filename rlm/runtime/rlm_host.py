"""RLM session hosts: the actors where RLM tasks' sessions run, each with its own sandboxes.

A few hosts start with the engine (``RLM_RLM__HOSTS``), each warm: it keeps fresh sandboxes
started (``RLM_RLM__PRESTART``), so no task waits for an actor or a process to start. A host
runs many sessions at once, each on a thread of its own (a session blocks on its sandbox and
on its LM calls, never on the host's event loop):

* the root's turns and every sub-call go to the core as ``lm_batch`` (a batch in one actor
  call: the broker reserves the budget and the quotas of each request before it is sent,
  then sends them all at once through the provider's gateways);
* events go to the core as ``record_events`` batches, fire and forget, numbered so that the
  core puts back the order its async calls may lose (:mod:`rlm.tasks.batch_order`);
* :meth:`SessionHost.stop_task` (the core's cancel or timeout) stops the task's tree and kills
  its sandboxes, after the broker has stopped the task's LM calls in flight;
* security: every text a session sends to a model passes the task's org's input policies
  (:class:`~rlm.runtime.security.PromptGuard`, bound per task as the tree's
  :class:`~rlm.rlmmode.session.PromptCheck`), and so does a context this host reads from
  storage (the API never saw it); each cell that runs into a sandbox limit is recorded as a
  ``sandbox.violation`` for the task's org (reason, task, RLM path, turn; never code or
  output).

The session logic itself is :class:`rlm.rlmmode.session.SessionTree` (pure); this module only
binds its ports to Ray.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray
from pydantic import SecretStr

from rlm.config import Settings
from rlm.errors import RLMError, error_from_payload
from rlm.incidents import log_incident
from rlm.lm.calls import LMRequest
from rlm.rlmmode.loop import Completion
from rlm.rlmmode.request import RLMParams, read_context
from rlm.rlmmode.session import (
    LMOutcome,
    SessionStopped,
    SessionTree,
    cell_timed_out,
    root_failure,
)
from rlm.rlmmode.settings import RLMSettings
from rlm.runtime.security import PromptGuard
from rlm.sandbox.errors import SandboxDead, SandboxUnavailable
from rlm.sandbox.host import Sandbox
from rlm.sandbox.pool import SandboxPool, refuse_calls
from rlm.sandbox.settings import SandboxSettings
from rlm.sandbox.violations import SandboxViolation
from rlm.security.events import record_security_event
from rlm.storage.service import StorageService
from rlm.storage.settings import StorageSettings

__all__ = ["HostConfig", "SessionHost", "SessionHostActor", "Tenant"]

log = logging.getLogger(__name__)

#: Event batch references kept before the ones already in are dropped from the list.
_PRUNE_SENT = 64


@dataclass(frozen=True)
class HostConfig:
    """What a session host needs of the settings (no LM keys: they stay in the gateways).

    Attributes:
        sandbox: How sandboxes are confined and limited.
        rlm: RLM mode's bounds.
        storage: Connectors an RLM context may be read from (``input.source``).
        hidden_paths: Directories sandboxes must not see (the state directory...).
        state_dir: The service's state directory (which security actor holds the policies
            and the audit log).
        namespace: The Ray namespace of the service's singleton actors.
        database_url: The PostgreSQL state store, if any (where that security actor keeps
            the log and policies, should this host be the one to start it).
    """

    sandbox: SandboxSettings
    rlm: RLMSettings
    storage: StorageSettings
    hidden_paths: tuple[str, ...]
    state_dir: str = ""
    namespace: str = "rlm"
    database_url: SecretStr | None = None


@dataclass(frozen=True)
class Tenant:
    """Whose task a session runs: policies are the org's, events name the user and org."""

    user_id: str | None = None
    org_id: str | None = None


class _TaskGuard:
    """A tree's :class:`~rlm.rlmmode.session.PromptCheck`: the org's policies, recorded for
    the task."""

    def __init__(self, guard: PromptGuard, tenant: Tenant, task_id: str) -> None:
        self._guard = guard
        self._tenant = tenant
        self._task_id = task_id

    def check(self, texts: Sequence[str], field: str) -> None:
        result = self._guard.check_many(
            texts,
            org_id=self._tenant.org_id,
            user_id=self._tenant.user_id,
            field=field,
            task_id=self._task_id,
        )
        result.raise_if_refused("a prompt of the RLM")

    def check_context(self, context: Any) -> None:
        if not isinstance(context, str | list | dict):
            return
        result = self._guard.check_context(
            context, org_id=self._tenant.org_id, user_id=self._tenant.user_id, task_id=self._task_id
        )
        result.raise_if_refused("the RLM's context")


def _record_violation(
    tenant: Tenant, task_id: str, violation: SandboxViolation, facts: dict[str, Any]
) -> None:
    record_security_event(
        "sandbox.violation",
        message=f"an RLM cell ran into its sandbox's limit: {violation.reason}",
        severity=violation.severity,
        org_id=tenant.org_id,
        user_id=tenant.user_id,
        details={"taskId": task_id, "reason": violation.reason, **facts},
    )


def _ray_temp_dir() -> str | None:
    """Ray's temporary directory (sockets, logs) on this node, hidden from sandboxes."""
    try:
        from ray._private import worker

        return str(worker.global_worker.node.get_temp_dir_path())
    except Exception:  # pragma: no cover - Ray's internals moved
        return None


class _CoreLM:
    """The LM port of a tree: the core's broker, one actor call per batch."""

    def __init__(self, core: Any, task_id: str, cell_timeout_s: float) -> None:
        self._core = core
        self._task_id = task_id
        self._cell_timeout_s = cell_timeout_s

    def complete(
        self, requests: Sequence[LMRequest], *, extra: bool, timeout_s: float | None = None
    ) -> list[LMOutcome]:
        # A concurrent future, not ray.get: this runs on a session thread of an async actor.
        ref = self._core.lm_batch.remote(self._task_id, list(requests), extra)
        try:
            answers = ref.future().result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            # The cell's wall time ran out: cancelling the core's coroutine cancels the
            # broker's batch, which stops every call of it still queued or in flight (never
            # charged); the code is answered "Error: ..." and its cell is interrupted.
            ray.cancel(ref)
            error = cell_timed_out(self._cell_timeout_s)
            return [LMOutcome(error=error)] * len(requests)
        outcomes = []
        for kind, value in answers:
            if kind == "ok":
                outcomes.append(
                    LMOutcome(
                        Completion(
                            text=value["text"],
                            input_tokens=value["inputTokens"],
                            output_tokens=value["outputTokens"],
                            latency_ms=value["latencyMs"],
                            cached=value["cached"],
                        )
                    )
                )
            elif kind == "err":
                outcomes.append(LMOutcome(error=error_from_payload(value)))
            else:
                outcomes.append(LMOutcome(stopped=True))
        return outcomes


class SessionHost:
    """Runs RLM tasks' session trees; wrapped as :data:`SessionHostActor`.

    Args:
        config: Sandbox limits, RLM bounds, storage, hidden paths.
        core: The core actor's handle (LM calls and events go to it).
        index: The host's place among the engine's hosts.
    """

    def __init__(self, config: HostConfig, core: Any, index: int = 0) -> None:
        self._config = config
        self._core = core
        self._index = index
        hidden = [*config.hidden_paths, *config.sandbox.hidden_paths]
        temp = _ray_temp_dir()
        if temp is not None:
            hidden.append(temp)
        limits = config.sandbox.limits()

        def start() -> Sandbox:
            return Sandbox(
                refuse_calls,
                limits=limits,
                hidden_paths=hidden,
                unsafe_local=config.sandbox.unsafe_local,
                python=config.sandbox.python,
            )

        self._pool = SandboxPool(start, prestart=config.rlm.prestart)
        self._trees: dict[str, SessionTree] = {}
        # Tasks stopped before their session arrived here (a cancel racing the start).
        self._stopped: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._storage: StorageService | None = None
        self._available: dict[str, Any] | None = None
        self._guard: PromptGuard | None = None
        self._guard_lock = threading.Lock()

    def _prompt_guard(self) -> PromptGuard:
        """The org policies' cache and the audit log's sink of this process (made once)."""
        with self._guard_lock:
            if self._guard is None:
                config = self._config
                self._guard = PromptGuard(
                    Settings(
                        state_dir=config.state_dir,
                        namespace=config.namespace,
                        database_url=config.database_url,
                    )
                )
            return self._guard

    async def warm(self) -> dict[str, Any]:
        """Start the first sandboxes; whether this host can isolate them, and why not.

        Only the OS refusing isolation is an answer that stands; a start that failed for
        another reason (a slow machine) is reported, and sessions start sandboxes on demand.
        """
        if self._available is not None:
            return self._available
        try:
            await asyncio.to_thread(self._pool.warm)
        except SandboxUnavailable as err:
            self._available = {"available": False, "error": err.to_payload()}
            return self._available
        except Exception as err:
            log.warning("session host %d could not pre-start a sandbox: %s", self._index, err)
            return {"available": True, "warning": f"{type(err).__name__}: {err}"}
        self._available = {"available": True}
        return self._available

    async def run_session(
        self,
        task_id: str,
        params: RLMParams,
        items: tuple[Any, ...],
        tenant: Tenant | None = None,
    ) -> tuple[str, Any]:
        """Run an RLM task's tree until it answers, fails or is stopped.

        Args:
            task_id: The task.
            params: The task's validated parameters.
            items: Where the context is: ``("inline", value)``, ``("ref", (ref,))`` or
                ``("source", spec)``.
            tenant: Whose task it is (its org's input policies apply; ``None``: no user or
                org, the default policies).

        Returns:
            ``("ok", {"answer", "turns", "depth", "forced"})``, ``("err", error payload)``
            or ``("stopped", None)``.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[str, Any]] = loop.create_future()
        tenant = tenant or Tenant()
        guard = await asyncio.to_thread(self._task_guard, tenant, task_id)
        sent: list[Any] = []  # the event batches' references not known to be in yet
        numbers = itertools.count(1)

        def send_events(events: list[tuple[str, dict[str, Any]]]) -> None:
            # Called in the order the batches were made (under the tree's event lock): the
            # numbers let the core put back the order its async calls may lose.
            sent.append(self._core.record_events.remote(task_id, events, next(numbers)))
            if len(sent) >= _PRUNE_SENT:
                _, pending = ray.wait(sent, num_returns=len(sent), timeout=0)
                sent[:] = pending

        tree = SessionTree(
            params,
            _CoreLM(self._core, task_id, self._config.sandbox.cell_timeout_s),
            self._pool,
            send_events,
            cell_timeout_s=self._config.sandbox.cell_timeout_s,
            cell_cpu_s=self._config.sandbox.cell_cpu_s,
            max_children_in_flight=self._config.rlm.max_children_in_flight,
            guard=guard,
            on_violation=functools.partial(_record_violation, tenant, task_id),
        )
        with self._lock:
            self._trees[task_id] = tree
            if task_id in self._stopped:
                tree.stop()

        def run() -> None:
            outcome: tuple[str, Any]
            try:
                context = self._context(items)
                if items[0] == "source" and guard is not None:
                    guard.check_context(context)  # read here: the API never saw it
                result = tree.run(context)
                outcome = (
                    "ok",
                    {
                        "answer": result.answer,
                        "turns": result.turns,
                        "depth": result.depth,
                        "forced": result.forced,
                    },
                )
            except SessionStopped:
                outcome = ("stopped", None)
            except Exception as exc:
                incident = ""
                if not isinstance(exc, RLMError):
                    incident = log_incident(log, "the RLM session failed", exc, task_id=task_id)
                outcome = ("err", root_failure(exc, incident).to_payload())
            finally:
                with self._lock:
                    self._trees.pop(task_id, None)
            # The task's events reach the core before its outcome does: every batch is waited
            # for (the core puts them in order), so a watcher sees every turn and cell before
            # task.completed.
            with contextlib.suppress(Exception):
                ray.get(sent, timeout=10.0)
            with contextlib.suppress(RuntimeError):  # the actor is shutting down
                loop.call_soon_threadsafe(_settle, done, outcome)

        threading.Thread(target=run, name=f"rlm-session-{task_id}", daemon=True).start()
        return await done

    def _task_guard(self, tenant: Tenant, task_id: str) -> _TaskGuard | None:
        """The task's prompt check (``None`` when this host knows no state directory)."""
        if not self._config.state_dir:
            return None
        return _TaskGuard(self._prompt_guard(), tenant, task_id)

    def _context(self, items: tuple[Any, ...]) -> Any:
        kind = items[0]
        if kind == "inline":
            return items[1]
        if kind == "ref":
            return items[1][0].future().result()
        if self._storage is None:
            self._storage = StorageService(self._config.storage)
        return read_context(self._storage, items[1], self._config.rlm.max_context_bytes)

    async def stop_task(self, task_id: str) -> bool:
        """Stop the task's tree: no new call, every sandbox killed. ``False``: none here."""
        with self._lock:
            tree = self._trees.get(task_id)
            if tree is None:
                self._stopped[task_id] = None
                while len(self._stopped) > 10_000:
                    self._stopped.popitem(last=False)
        if tree is None:
            return False
        tree.stop()
        return True

    async def stats(self) -> dict[str, Any]:
        """This host: its pid, the sandboxes of each running task, the idle ones."""
        with self._lock:
            trees = dict(self._trees)
        tasks: dict[str, list[dict[str, Any]]] = {}
        for task_id, tree in trees.items():
            tasks[task_id] = []
            for box in tree.sandboxes():
                with contextlib.suppress(SandboxDead):  # it ended while we looked
                    tasks[task_id].append({"pid": box.pid, "uid": box.uid})
        return {
            "index": self._index,
            "pid": os.getpid(),
            "tasks": tasks,
            "idlePids": self._pool.idle_pids(),
            "sandboxesStarted": self._pool.started,
        }


def _settle(done: asyncio.Future[tuple[str, Any]], outcome: tuple[str, Any]) -> None:
    if not done.done():
        done.set_result(outcome)


#: A session host as a Ray actor: async (sessions run on threads of their own), restarted
#: if its process dies (its running tasks fail: the core sees the actor die).
SessionHostActor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000)(SessionHost)

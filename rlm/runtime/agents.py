"""Agents: the Ray actors that run a plan's leaves, combines and folds.

An agent is an async actor with one worker thread: calls queue on the thread, so an agent runs
one call at a time while the next waits beside it (the engine keeps a few in flight per agent so
none idles between calls). Each call runs under its task's cancellation token; a cancel sets the
token (operations poll it with ``check_cancelled``) and Ray cancels the awaiting coroutine.

An agent never raises out of a call: it returns ``(partial, meta)`` where ``meta`` says whether
the call worked, how long it kept the agent busy, or which error the user should see. Only a
crash of the agent's process surfaces as a Ray error, which the engine reports as
INTERNAL_ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import ray
from ray import cloudpickle

from rlm.errors import RLMError, error_from_payload
from rlm.execution import call_steps, run_call
from rlm.incidents import log_incident
from rlm.lm.calls import LMRequest
from rlm.lm.handle import lm_scope
from rlm.lm.steps import run_steps_async
from rlm.operations.base import Operation, is_builtin
from rlm.operations.context import CallCancelled, cancellation_scope
from rlm.operations.lm import LLMOperation
from rlm.planning import NodeKind
from rlm.storage.items import SourceItems
from rlm.storage.service import StorageService

__all__ = ["Agent", "AgentActor", "AskLM", "CallSpec", "ItemsSource", "LMCall", "is_small"]

#: One call of a batch: ``(taskId, operation, kind, items, start, end, params, children)``.
CallSpec = tuple[str, "bytes | Operation", str, "ItemsSource | None", int, int, Any, Any]

#: How a call gets the task input: ``("inline", items)`` for inputs small enough to ship with
#: each call; ``("ref", [ref], key)`` — one object in the object store, which the agent reads
#: and keeps under ``key``; ``("cached", key)`` — what the agent already keeps (an agent that
#: does not, e.g. after a restart, answers ``needInput`` and the engine sends the reference);
#: ``("source", spec, ranges, storage settings, as_list)`` — a file each leaf reads a range of.
ItemsSource = tuple[Any, ...]


_nothing = contextlib.nullcontext


class _NeedInput(Exception):
    """The agent does not hold the input a ``cached`` call names."""


#: Partials up to about this many bytes travel inline with a call's answer.
_SMALL_BYTES = 64 * 1024


def _vectorised(items: Any) -> bool:
    """Whether a call's items are none or an int64/float64 array (numpy's own loops)."""
    return items is None or (
        isinstance(items, np.ndarray) and items.dtype in (np.int64, np.float64)
    )


def is_small(value: Any, depth: int = 0) -> bool:
    """A cheap, conservative guess whether ``value`` pickles to under ``_SMALL_BYTES``."""
    if value is None or isinstance(value, bool | int | float | complex):
        return True
    if isinstance(value, str | bytes):
        return len(value) < _SMALL_BYTES
    if isinstance(value, np.generic):
        return True
    if isinstance(value, np.ndarray):
        return bool(value.nbytes < _SMALL_BYTES and value.dtype != object)
    if depth > 2:
        return False
    if isinstance(value, list | tuple | set | frozenset):
        return len(value) <= 256 and all(is_small(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 256 and all(
            is_small(k, depth + 1) and is_small(v, depth + 1) for k, v in value.items()
        )
    return False


log = logging.getLogger(__name__)

#: Exceptions from an operation that mean the input or parameters were wrong for it.
_USER_ERRORS = (TypeError, ValueError, ArithmeticError, KeyError, IndexError, AttributeError)


#: Asks the core's LM broker for one request of a task (``extra``: not the call's first),
#: blocking: ``("ok", text)``, ``("err", payload)`` or ``("stopped", None)``.
AskLM = Callable[[str, LMRequest, bool], tuple[str, Any]]

#: The core's ``lm_call`` coroutine, for the core's in-process agent.
LMCall = Callable[[str, LMRequest, bool], Coroutine[Any, Any, tuple[str, Any]]]


class _Asking:
    """What both ``lm`` handles of an agent call share: the cancel check before each request,
    the ``extra`` flag (a request beyond the one the plan counted), and reading the answer."""

    def __init__(self, task_id: str, token: threading.Event) -> None:
        self._task_id = task_id
        self._token = token
        self._asked = 0
        self.calls = 0

    def _asking(self) -> bool:
        if self._token.is_set():
            raise CallCancelled("the task was cancelled")
        # The plan counted one agent call for this call; each further request is held on
        # the quotas as one more before it is sent.
        extra = self._asked > 0
        self._asked += 1
        return extra

    def _answer(self, kind: str, value: Any) -> str:
        if kind == "stopped":
            raise CallCancelled("the task was stopped")
        self.calls += 1
        if kind == "err":
            raise error_from_payload(value)
        text: str = value
        return text


class _BrokerLM(_Asking):
    """The ``lm`` handle of one agent call: each request goes through the core's LM broker.

    The broker admits (budget, quota, memo), sends through the provider's gateway and
    accounts; this handle only waits for its answer on the call's thread (over Ray from an
    agent actor, on the core's own loop from its in-process agent). When the task ends, the
    broker answers ``stopped`` (and cancels what is in flight), which stops the call.
    """

    def __init__(self, ask: AskLM, task_id: str, token: threading.Event) -> None:
        super().__init__(task_id, token)
        self._ask = ask

    def complete(self, request: LMRequest) -> str:
        extra = self._asking()
        return self._answer(*self._ask(self._task_id, request, extra))


class _LoopLM(_Asking):
    """The ``lm`` of one call of the core's in-process agent, run on the core's loop: each
    request awaits the broker there, with no thread waiting on it."""

    def __init__(self, lm_call: LMCall, task_id: str, token: threading.Event) -> None:
        super().__init__(task_id, token)
        self._lm_call = lm_call

    async def complete(self, request: LMRequest) -> str:
        extra = self._asking()
        return self._answer(*await self._lm_call(self._task_id, request, extra))


def _failed(op: Operation, err: Exception, t0: float, task_id: str = "") -> dict[str, Any]:
    """The meta of a call that raised ``err`` (cancelled, refused, the user's or a crash).

    The text of an exception from a user's operation never reaches the caller: it may carry
    anything (paths, data, credentials). The caller gets a generic sentence with an incident
    id, and the log keeps the exception under that id. A built-in operation's own
    ``ValueError``-like text describes the caller's input and is shown; a crash of one shows
    only its type.
    """
    busy = time.perf_counter() - t0
    if isinstance(err, CallCancelled):
        return {"ok": False, "cancelled": True, "busyS": busy}
    if isinstance(err, RLMError):
        return {"ok": False, "error": err.to_payload(), "busyS": busy}
    bad_input = isinstance(err, _USER_ERRORS)
    code = "INVALID_INPUT" if bad_input else "INTERNAL_ERROR"
    if bad_input and is_builtin(op):
        message = f"operation {op.name!r} failed on this input: {err}"
        details: dict[str, Any] = {"operation": op.name, "error": type(err).__name__}
    else:
        incident = log_incident(log, f"operation {op.name!r} failed", err, task_id=task_id)
        what = "failed on this input" if bad_input else "crashed"
        message = f"operation {op.name!r} {what} (incident {incident})"
        details = {"operation": op.name, "incident": incident}
    payload = {"code": code, "message": message, "details": details}
    return {"ok": False, "error": payload, "busyS": busy}


class Agent:
    """Runs agent calls; wrapped as :data:`AgentActor` at the edge.

    Calls of operations that call a language model (``uses_lm``) wait on the network, not on
    the CPU: they run on a pool of ``lm_threads`` threads beside the compute thread, each with
    an ``lm`` handle bound to it, so a few agents keep hundreds of LM calls in flight while
    the providers' gateways decide how many are sent at once. On the core's in-process agent
    the built-in LM operations' calls (written as steps, :mod:`rlm.lm.steps`) run on the
    event loop itself: a request reaches the broker with no thread handing it over.

    Args:
        index: The agent's place in the pool (for logs and tests).
        cache_inputs: How many task inputs to keep deserialised.
        in_process: Whether this is the core's own agent (in the core's process).
        core: The core actor's handle (an agent actor's LM calls go through it).
        lm_call: The core's ``lm_call`` (the in-process agent's LM calls go through it).
        lm_threads: Threads for LM operations' calls.
    """

    def __init__(
        self,
        index: int,
        cache_inputs: int = 4,
        *,
        in_process: bool = False,
        core: Any = None,
        lm_call: LMCall | None = None,
        lm_threads: int = 256,
    ) -> None:
        self._index = index
        self._in_process = in_process
        self._lm_call = lm_call
        self._ask: AskLM | None = None
        if core is not None:
            self._ask = lambda task_id, request, extra: ray.get(
                core.lm_call.remote(task_id, request, extra)
            )
        self._ops: OrderedDict[bytes, Operation] = OrderedDict()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rlm-agent-{index}")
        self._lm_threads = ThreadPoolExecutor(
            max_workers=lm_threads, thread_name_prefix=f"rlm-agent-{index}-lm"
        )
        self._tokens: dict[str, threading.Event] = {}
        self._active: dict[str, int] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._inputs: OrderedDict[str, Any] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self._storage: dict[str, StorageService] = {}
        self._cache_inputs = cache_inputs
        self._running: str | None = None

    def ping(self) -> dict[str, int]:
        """The agent's index and process id."""
        return {"index": self._index, "pid": os.getpid()}

    def busy(self) -> dict[str, Any]:
        """What the agent is doing: the task whose call runs on its thread, and calls held."""
        return {"running": self._running, "active": dict(self._active)}

    def cancel(self, task_id: str) -> None:
        """Stop the task's running call at its next check, and refuse its later calls."""
        self._cancelled[task_id] = None
        while len(self._cancelled) > 10_000:
            self._cancelled.popitem(last=False)
        token = self._tokens.get(task_id)
        if token is not None:
            token.set()

    def forget(self, task_id: str) -> None:
        """Drop the task's cached input (its task has ended)."""
        self._inputs.pop(task_id, None)

    def _source_items(self, source: ItemsSource) -> Any:
        _, spec, ranges, storage, as_list = source
        key = storage.model_dump_json()
        service = self._storage.get(key)
        if service is None:
            service = self._storage[key] = StorageService(storage)
        return SourceItems(service, spec, ranges, as_list=as_list)

    async def _items(self, source: ItemsSource) -> Any:
        kind = source[0]
        if kind == "inline":
            return source[1]
        if kind == "source":
            # Each leaf reads its own byte range of the file, nothing more.
            return self._source_items(source)
        # The input travels once through the object store, and its reference once to each
        # agent (passing a reference costs the owner a round of bookkeeping): later calls of
        # the task name it by key. Numpy inputs are zero-copy views of shared memory.
        key = source[-1]
        if key in self._inputs:
            self._inputs.move_to_end(key)
            return self._inputs[key]
        loading = self._loading.get(key)
        if loading is not None:
            return await asyncio.shield(loading)
        if kind == "cached":
            raise _NeedInput(key)
        loading = asyncio.get_running_loop().create_future()
        self._loading[key] = loading
        try:
            value = await source[1][0]
        except BaseException as err:
            loading.set_exception(err)
            loading.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._loading.pop(key, None)
        loading.set_result(value)
        self._inputs[key] = value
        while len(self._inputs) > self._cache_inputs:
            self._inputs.popitem(last=False)
        return value

    def _operation(self, op: bytes | Operation) -> Operation:
        if not isinstance(op, bytes):
            return op
        # The core pickles a task's operation once; each agent unpickles it once.
        cached = self._ops.get(op)
        if cached is None:
            cached = cloudpickle.loads(op)
            self._ops[op] = cached
            while len(self._ops) > 64:
                self._ops.popitem(last=False)
        return cached

    async def run(
        self,
        task_id: str,
        op: bytes | Operation,
        kind: NodeKind,
        items: ItemsSource | None,
        start: int,
        end: int,
        params: Any,
        *child_partials: Any,
    ) -> dict[str, Any]:
        """Run one agent call (Ray has resolved the children's partials).

        Returns:
            ``meta``: ``{"ok": True, "busyS": s, "partial": value}`` (or ``"partialRef"``, an
            object reference, for a large partial) or ``{"ok": False, "error": {...}}``.
        """
        call = (task_id, op, kind, items, start, end, params, child_partials)
        return (await self.run_batch([call]))[0]

    async def run_batch(
        self, calls: list[CallSpec], *, on_loop: bool = False
    ) -> list[dict[str, Any]]:
        """Run several calls of one task in order, in one message; a meta for each.

        The engine sends a batch when a task has many calls ready at once, so the cost of a
        Ray message is shared by several agent calls. Children's partials that are object
        references are resolved here.

        Args:
            calls: The calls.
            on_loop: Run them on this event loop rather than the compute thread: the core's
                agent, for a built-in task whose items cost less than a thread hand-over's
                wait on a loaded machine (the scheduler's cut-off). Only over int64 or
                float64 arrays (or a combine's partials): anything else the operation would
                convert item by item, and goes to the thread.
        """
        task_ids = {c[0] for c in calls}
        tokens = {t: self._tokens.setdefault(t, threading.Event()) for t in task_ids}
        for t in task_ids:
            self._active[t] = self._active.get(t, 0) + 1
        try:
            prepared: list[tuple[Any, ...] | None] = []
            for task_id, op, kind, items, start, end, params, children in calls:
                try:
                    values = await self._items(items) if items is not None else None
                except _NeedInput:
                    prepared.append(None)
                    continue
                kids = [await c if isinstance(c, ray.ObjectRef) else c for c in children]
                prepared.append(
                    (
                        task_id,
                        tokens[task_id],
                        self._operation(op),
                        kind,
                        values,
                        start,
                        end,
                        tuple(kids),
                        params,
                    )
                )
            runnable = [p for p in prepared if p is not None]
            lm_call = self._lm_call
            if lm_call is not None and all(isinstance(p[2], LLMOperation) for p in runnable):
                # The core's own agent: the calls run as steps on this loop (see the class).
                done = iter([await self._call_on_loop(lm_call, *p) for p in runnable])
            elif on_loop and all(_vectorised(p[4]) for p in runnable):
                done = iter(self._call_many(runnable))
            else:
                done = iter(await self._in_threads(runnable, tokens))
            outcomes = [
                (None, {"ok": False, "needInput": True, "busyS": 0.0}) if p is None else next(done)
                for p in prepared
            ]
        except asyncio.CancelledError:
            for token in tokens.values():
                token.set()
            raise
        finally:
            for t in task_ids:
                self._active[t] -= 1
                if not self._active[t]:
                    del self._active[t]
                    self._tokens.pop(t, None)
        return self._metas(outcomes)

    def run_inline(self, calls: list[CallSpec]) -> list[dict[str, Any]]:
        """Run combines over values here and now, on the caller's thread; a meta for each.

        For the core's agent only: the scheduler sends here the combines of built-in
        operations whose children answered values (no object reference to resolve, no user
        code), each a few microseconds of work (see :mod:`rlm.runtime.scheduler`).
        """
        outcomes = []
        for task_id, op, kind, _, start, end, params, children in calls:
            token = self._tokens.get(task_id) or threading.Event()
            outcomes.append(
                self._call(
                    task_id,
                    token,
                    self._operation(op),
                    cast("NodeKind", kind),
                    None,
                    start,
                    end,
                    children,
                    params,
                )
            )
        return self._metas(outcomes)

    async def _in_threads(
        self, runnable: list[tuple[Any, ...]], tokens: dict[str, threading.Event]
    ) -> list[tuple[Any, dict[str, Any]]]:
        """Run the calls, in order, on the compute thread (or the LM threads)."""
        loop = asyncio.get_running_loop()
        uses_lm = any(p[2].uses_lm for p in runnable)
        if uses_lm and self._ask is None and self._lm_call is not None:
            # In the core's process: the broker runs on this very loop, so a call's thread
            # hands its request to the loop rather than to Ray.
            lm_call = self._lm_call
            self._ask = lambda task_id, request, extra: asyncio.run_coroutine_threadsafe(
                lm_call(task_id, request, extra), loop
            ).result()
        pool = self._lm_threads if uses_lm else self._thread
        work = loop.run_in_executor(pool, self._call_many, runnable)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            for token in tokens.values():
                token.set()
            # Report the cancel only once the calls have stopped (each polls its token):
            # "cancelled" then means nothing of the task still runs on this agent. A call
            # that never polls is bounded by the engine's cancel grace, not waited out.
            await asyncio.wait({work})
            raise

    def _metas(self, outcomes: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
        metas = []
        for partial, meta in outcomes:
            if meta["ok"]:
                # Small partials ride back inline with the answer; large ones go into the
                # object store, and only their reference travels (to the parent call).
                if self._in_process or is_small(partial):
                    meta["partial"] = partial
                else:
                    meta["partialRef"] = ray.put(partial)
            metas.append(meta)
        return metas

    def _call_many(self, prepared: list[tuple[Any, ...]]) -> list[tuple[Any, dict[str, Any]]]:
        return [self._call(*args) for args in prepared]

    def _call(
        self,
        task_id: str,
        token: threading.Event,
        op: Operation,
        kind: NodeKind,
        items: Any,
        start: int,
        end: int,
        child_partials: tuple[Any, ...],
        params: Any,
    ) -> tuple[Any, dict[str, Any]]:
        t0 = time.perf_counter()
        lm = None
        if op.uses_lm:
            if self._ask is None:
                raise RuntimeError("an LM operation reached an agent with no way to the core")
            lm = _BrokerLM(self._ask, task_id, token)
        if lm is None:
            self._running = task_id
        try:
            if token.is_set() or task_id in self._cancelled:
                raise CallCancelled("the task was cancelled")
            with cancellation_scope(token), lm_scope(lm) if lm is not None else _nothing():
                partial = run_call(op, kind, items, start, end, child_partials, params)
        except Exception as err:
            return None, _failed(op, err, t0, task_id)
        finally:
            if lm is None:
                self._running = None
        meta: dict[str, Any] = {"ok": True, "busyS": time.perf_counter() - t0}
        if lm is not None:
            meta["lmCalls"] = lm.calls
        return partial, meta

    async def _call_on_loop(
        self,
        lm_call: LMCall,
        task_id: str,
        token: threading.Event,
        op: Operation,
        kind: NodeKind,
        items: Any,
        start: int,
        end: int,
        child_partials: tuple[Any, ...],
        params: Any,
    ) -> tuple[Any, dict[str, Any]]:
        """:meth:`_call` for an LM operation's call on the core's loop: its steps are driven
        here, each request awaiting the broker; the same outcome and meta."""
        t0 = time.perf_counter()
        lm = _LoopLM(lm_call, task_id, token)
        try:
            if token.is_set() or task_id in self._cancelled:
                raise CallCancelled("the task was cancelled")
            steps = call_steps(op, kind, items, start, end, child_partials, params)
            if steps is None:  # pragma: no cover - run_batch sends only LM operations here
                raise TypeError(f"operation {op.name!r} has no LM steps")
            partial = await run_steps_async(steps, lm.complete)
        except Exception as err:
            return None, _failed(op, err, t0, task_id)
        return partial, {"ok": True, "busyS": time.perf_counter() - t0, "lmCalls": lm.calls}


#: The agent as a Ray actor. ``num_cpus=0``: the pool is sized to the cluster's CPUs by the
#: engine, and holding no Ray CPU leaves room for Serve replicas and the user's own tasks.
AgentActor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=256)(Agent)

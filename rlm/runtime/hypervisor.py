"""The Python API: ``rlm.connect()`` and the :class:`Hypervisor` it returns.

Example:
    >>> import rlm
    >>> hv = rlm.connect()                                          # doctest: +SKIP
    >>> hv.execute({"type": "recursive", "description": "Sum",
    ...             "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"}}).output
    15
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import ray

from rlm.admission import Viewer
from rlm.config import Settings, get_settings
from rlm.errors import EngineUnavailable, InvalidInput, error_from_payload
from rlm.inputs import PreparedInput, prepare_input
from rlm.lm.settings import ProviderSettings, resolve_provider
from rlm.models.base import parse_model
from rlm.models.events import TaskEventMessage, Trajectory
from rlm.models.tasks import (
    CancelResponse,
    ExecuteRequest,
    ExecuteResponse,
    TaskPage,
    TaskStatus,
    TaskType,
)
from rlm.operations.base import Chunk, FunctionOperation, InputKind, Operation
from rlm.operations.registry import OperationRegistry, default_registry
from rlm.planning import Plan, plan_task
from rlm.quotas.ids import random_hex
from rlm.quotas.service import BatchCall
from rlm.quotas.wire import unpack_slot
from rlm.rlmmode.operation import RLMOperation
from rlm.rlmmode.request import check_not_rlm_options, is_rlm_input, parse_rlm_input
from rlm.runtime.agents import ItemsSource
from rlm.runtime.core import CoreActor, TaskSpec
from rlm.runtime.discovery import resolve_address, store_in_use
from rlm.runtime.placement import ON_HEAD
from rlm.runtime.scheduler import fits_in_core
from rlm.runtime.security import RaySecurity
from rlm.storage.access import StorageReader
from rlm.storage.inputs import split_source
from rlm.storage.service import StorageService
from rlm.tasks.listing import TaskQuery

__all__ = ["Hypervisor", "connect"]

log = logging.getLogger(__name__)

#: Inputs up to this size travel with each call instead of through the object store.
_INLINE_BYTES = 32 * 1024
# A task id a caller may choose (see ``Hypervisor.prepare``): the shape of the ids made here.
_TASK_ID = re.compile(r"task-[0-9a-f]{32}")


def _new_id() -> str:
    # 128 bits from a buffer of OS randomness: ``uuid4`` is a system call per task, a few
    # per cent of the API replica's time on a small execute.
    return f"task-{random_hex()}"


#: Items beyond this many are summarised, not copied, in the stored request.
_MAX_STORED_ITEMS = 10_000

#: An RLM context larger than this (bytes of JSON) is summarised in the stored request.
_MAX_STORED_CONTEXT_BYTES = 1_000_000


def _unwrap(answer: tuple[str, Any, dict[str, str]]) -> Any:
    kind, value, _ = answer
    if kind == "err":
        raise error_from_payload(value)
    return value


def _unwrap_pair(answer: tuple[str, Any]) -> Any:
    kind, value = answer
    if kind == "err":
        raise error_from_payload(value)
    return value


def _summarise_input(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return raw
    out = dict(raw)
    items = out.get("items")
    if isinstance(items, np.ndarray | pa.Array | pa.ChunkedArray):
        out["items"] = {"summary": f"{type(items).__name__} of {len(items)} items"}
    elif isinstance(items, Sequence) and len(items) > _MAX_STORED_ITEMS:
        out["items"] = {"summary": f"list of {len(items)} items"}
    text = out.get("text")
    if isinstance(text, str) and len(text) > 1_000_000:
        out["text"] = {"summary": f"text of {len(text)} characters"}
    try:
        return orjson.loads(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))
    except TypeError:
        return {"summary": "input that is not JSON"}


def _lm_leaf_size(op: Operation, items: Any) -> int:
    """Items per LM call when the request names no ``leafSize``.

    ``llm_map`` sends one item per call; operations that read many lines per call take about
    ``lm_chunk_chars`` characters of them (by the items' mean length), so a call's prompt
    stays well inside a context window and each call is worth its latency.
    """
    if op.lm_chunk_chars <= 0 or len(items) == 0:
        return 1
    sample = items[: min(len(items), 1000)]
    mean = sum(len(x) if isinstance(x, str) else len(str(x)) for x in sample) / len(sample)
    return max(1, int(op.lm_chunk_chars / max(mean + 1.0, 1.0)))


def _as_option(err: InvalidInput, field: str) -> InvalidInput:
    """A model refusal naming the request's option rather than an operation parameter."""
    if err.details.get("field") == "input.params.model":
        err.details["field"] = field
    return err


def _cost_factor(op: Operation, vector_factor: float) -> float:
    # Built-in numeric operations are numpy calls: an item costs them a nanosecond, not the
    # microsecond of a Python-level operation, so their leaves hold more items.
    builtin = type(op).__module__.startswith("rlm.operations.")
    return vector_factor if builtin and op.input_kind == "numbers" else 1.0


class Hypervisor:
    """Runs tasks on the engine of one Ray cluster and state directory.

    Build it with :func:`connect`. Methods that take a request accept the API document's dict
    shape or an :class:`~rlm.models.tasks.ExecuteRequest`.

    Args:
        settings: The settings the engine was started with.
        core: The engine's core actor.
        registry: Operations tasks may name (the built-ins when omitted).
        owns_ray: Whether :meth:`close` should shut Ray down.
    """

    def __init__(
        self,
        settings: Settings,
        core: Any,
        registry: OperationRegistry | None = None,
        *,
        owns_ray: bool = False,
    ) -> None:
        self.settings = settings
        self._core = core
        self.registry = registry if registry is not None else default_registry(settings.operations)
        self._owns_ray = owns_ray
        self._storage: StorageService | None = None
        self._storage_lock = threading.Lock()  # prepare runs in API replicas' worker threads
        self._providers: dict[str, ProviderSettings] | None = None
        self._security: RaySecurity | None = None
        self._webhook_worker: Any = None
        self._input_holder: Any = None
        self._holder_lock = threading.Lock()

    # -- operations ---------------------------------------------------------------------------

    def register_operation(
        self,
        op: Operation | str,
        *,
        leaf: Callable[[Chunk, Any], Any] | None = None,
        combine: Callable[[Sequence[Any], Any], Any] | None = None,
        finish: Callable[[Any, Any], Any] | None = None,
        input_kind: InputKind = "any",
        replace: bool = False,
    ) -> Operation:
        """Register an operation tasks may then name in ``input.operation``.

        Pass an :class:`~rlm.operations.base.Operation`, or a name with ``leaf`` and
        ``combine`` functions (``finish`` optional).

        Raises:
            InvalidInput: the name is malformed or taken.
        """
        if isinstance(op, str):
            if leaf is None or combine is None:
                raise TypeError("register_operation(name, ...) needs leaf= and combine=")
            op = FunctionOperation(
                op, leaf=leaf, combine=combine, finish=finish, input_kind=input_kind
            )
        return self.registry.register(op, replace=replace)

    def operation(
        self,
        name: str,
        *,
        combine: Callable[[Sequence[Any], Any], Any],
        finish: Callable[[Any, Any], Any] | None = None,
        input_kind: InputKind = "any",
        replace: bool = False,
    ) -> Callable[[Callable[[Chunk, Any], Any]], Callable[[Chunk, Any], Any]]:
        """Decorator: register the decorated ``leaf(chunk, params)`` as operation ``name``."""
        return self.registry.operation(
            name, combine=combine, finish=finish, input_kind=input_kind, replace=replace
        )

    # -- tasks --------------------------------------------------------------------------------

    def prepare(
        self,
        request: ExecuteRequest | Mapping[str, Any],
        *,
        owner_id: str = "local",
        org_id: str | None = None,
        team_id: str | None = None,
        task_id: str | None = None,
        reader: StorageReader | None = None,
        waits: bool = False,
    ) -> TaskSpec:
        """Validate and plan a request, and put its input into the object store once.

        Args:
            request: The request (a model, or its dict).
            owner_id: Who owns the task.
            org_id: The owner's org.
            team_id: The team the owner's token names.
            task_id: The id the task gets, when the caller chose it (``task-`` and 32 hex
                digits: the API's proxy guard names each execute's task before it reaches a
                replica, so it can look the task up if the replica dies); else a new one.
            reader: Who the task reads storage as (``input.source``), checked against the
                connector's access policy before anything is read; given by the HTTP API,
                whose requests are also held to the API document's bounds (numbers within
                ±2**53). ``None``: a trusted caller of this Python API.
            waits: The caller waits for the result in the call that sends the spec
                (``execute``). A task the core runs whole (see
                :func:`rlm.runtime.scheduler.fits_in_core`) then takes its input with that call:
                the caller, alive until the answer, owns it, and the input holder's round trip
                and second copy are saved. Else a large input goes to the holder.

        Raises:
            InvalidInput: naming the first bad field.
            Forbidden: ``reader`` may not read the source's key.
        """
        req = parse_model(ExecuteRequest, request)
        if reader is not None:
            self._check_source_access(req.input, reader)
        if is_rlm_input(req.input):
            spec = self._prepare_rlm(req, owner_id=owner_id, org_id=org_id, team_id=team_id)
            if task_id is not None and _TASK_ID.fullmatch(task_id):
                spec.task_id = task_id
            return spec
        check_not_rlm_options(req.options)
        prepared = prepare_input(req.input, self.registry, wire=reader is not None)
        engine = self.settings.engine
        opts = req.options
        plan_args: dict[str, Any] = {
            "complexity": req.complexity,
            "fanout": opts.fanout or engine.default_fanout,
            "max_depth": engine.default_max_depth if opts.max_depth is None else opts.max_depth,
            "leaf_cost": engine.leaf_cost
            * _cost_factor(prepared.operation, engine.vector_leaf_factor),
            "max_leaves": engine.max_leaves,
        }
        leaf_size = opts.leaf_size
        if prepared.operation.uses_lm:
            self._check_lm(prepared)
            if leaf_size is None and prepared.source is None:
                leaf_size = _lm_leaf_size(prepared.operation, prepared.items)
        source: ItemsSource
        if prepared.source is not None:
            plan, source = self._plan_source(req.type, prepared, leaf_size, plan_args)
        else:
            plan = plan_task(req.type, prepared.n_items, leaf_size=leaf_size, **plan_args)
            items = prepared.items
            nbytes = items.nbytes if isinstance(items, np.ndarray) else 16 * len(items)
            # Large inputs go into the object store once, owned by the engine's input holder:
            # they outlive this process (a driver may submit and exit) until the task ends.
            inline = nbytes <= _INLINE_BYTES or (waits and fits_in_core(prepared.operation, plan))
            source = ("inline", items) if inline else ("ref", self._put(items))
        fields_set = req.model_fields_set
        stored = req.model_dump(mode="json", by_alias=True, exclude={"input"}, exclude_none=True)
        stored["input"] = _summarise_input(req.input)
        return TaskSpec(
            task_id=task_id if task_id is not None and _TASK_ID.fullmatch(task_id) else _new_id(),
            type=req.type,
            description=req.description,
            priority=opts.priority,
            owner_id=owner_id,
            org_id=org_id,
            team_id=team_id,
            request=stored,
            operation=prepared.operation,
            params=prepared.params,
            items=source,
            plan=plan,
            timeout_ms=opts.timeout_ms,
            expected_output=req.expected_output,
            has_expected_output="expected_output" in fields_set,
            budget=opts.budget,
            memo=opts.memo is not False,
        )

    def _prepare_rlm(
        self,
        req: ExecuteRequest,
        *,
        owner_id: str,
        org_id: str | None,
        team_id: str | None,
    ) -> TaskSpec:
        """Validate an RLM task; its context goes into the object store once if large.

        The root's model and the sub-calls' model are resolved here (``options.model``, else
        the provider's ``model``; ``options.subModel``, else its ``subModel``), so a model
        the provider does not offer is refused before anything runs.
        """
        rlm_input = parse_rlm_input(req.input, req.options, self.settings.rlm)
        if self._providers is None:
            self._providers = self.settings.lm.providers()
        params = rlm_input.params
        try:
            provider, model = resolve_provider(self._providers, None, params.model)
        except InvalidInput as err:
            raise _as_option(err, "options.model") from None
        try:
            _, sub_model = resolve_provider(
                self._providers, None, params.sub_model or provider.sub_model or model
            )
        except InvalidInput as err:
            raise _as_option(err, "options.subModel") from None
        params = dataclasses.replace(params, model=model, sub_model=sub_model)
        items: ItemsSource
        if rlm_input.source is not None:
            spec = rlm_input.source
            size = self.storage.size(spec.connector, spec.key)
            span = min(spec.end or size, size) - min(spec.start or 0, size)
            if span > self.settings.rlm.max_context_bytes:
                raise InvalidInput(
                    f"the context file is {span:,} bytes; at most "
                    f"{self.settings.rlm.max_context_bytes:,} are allowed "
                    "(RLM_RLM__MAX_CONTEXT_BYTES)",
                    {"maxContextBytes": self.settings.rlm.max_context_bytes},
                    field="input.source",
                )
            items = ("source", spec)
        elif rlm_input.context_bytes <= _INLINE_BYTES:
            items = ("inline", rlm_input.context)
        else:
            # The session host reads it from the object store: it never passes the core.
            items = ("ref", self._put(rlm_input.context))
        stored = req.model_dump(mode="json", by_alias=True, exclude={"input"}, exclude_none=True)
        stored["input"] = dict(req.input)
        if rlm_input.context_bytes > _MAX_STORED_CONTEXT_BYTES:
            # The record keeps what the context was, not a copy of it.
            context = rlm_input.context
            counted = f" of {len(context):,} items" if not isinstance(context, str) else ""
            stored["input"]["context"] = {
                "summary": f"{type(context).__name__}{counted}, "
                f"{rlm_input.context_bytes:,} bytes of JSON"
            }
        return TaskSpec(
            task_id=_new_id(),
            type=req.type,
            description=req.description,
            priority=req.options.priority,
            owner_id=owner_id,
            org_id=org_id,
            team_id=team_id,
            request=stored,
            operation=RLMOperation(),
            params=params,
            items=items,
            # One call held at admission (the root's first turn); every later call is held
            # as it is sent.
            plan=plan_task(req.type, 1, leaf_size=1),
            timeout_ms=req.options.timeout_ms,
            expected_output=req.expected_output,
            has_expected_output="expected_output" in req.model_fields_set,
            budget=req.options.budget,
            memo=req.options.memo is not False,
        )

    def _holder(self) -> Any:
        with self._holder_lock:  # prepare runs in API replicas' worker threads
            if self._input_holder is None:
                self._input_holder = ray.get(self._core.input_holder.remote())
            return self._input_holder

    def _put(self, value: Any) -> list[ray.ObjectRef[Any]]:
        """``value`` in the object store, owned by the engine's input holder (not by this
        process): the reference, in a list (see :mod:`rlm.runtime.input_holder`)."""
        try:
            refs: list[ray.ObjectRef[Any]] = ray.get(self._holder().put.remote(value))
        except ray.exceptions.ActorDiedError:
            # The engine restarted since this handle was found, and its holder with it.
            with self._holder_lock:
                self._input_holder = None
            refs = ray.get(self._holder().put.remote(value))
        return refs

    def _check_source_access(self, raw: Any, reader: StorageReader) -> None:
        """Refuse a source ``reader`` may not read, before anything else about it is looked at
        (its range, its format): another tenant's key is refused the same whatever else the
        request says."""
        source = raw.get("source") if isinstance(raw, Mapping) else None
        if isinstance(source, Mapping):
            connector, key = source.get("connector"), source.get("key")
            if isinstance(connector, str) and isinstance(key, str):
                self.storage.check_access(connector, key, reader)

    def _check_lm(self, prepared: PreparedInput) -> None:
        """Refuse an LM task whose provider or model is not configured, before it runs."""
        if self._providers is None:
            self._providers = self.settings.lm.providers()
        call = getattr(prepared.params, "call", None)
        resolve_provider(
            self._providers,
            getattr(call, "provider", None),
            getattr(call, "model", None),
        )

    @property
    def storage(self) -> StorageService:
        """The storage service of this process (connectors from the settings)."""
        with self._storage_lock:
            if self._storage is None:
                self._storage = StorageService(self.settings.storage_settings)
            return self._storage

    def _plan_source(
        self,
        type_: TaskType,
        prepared: PreparedInput,
        leaf_size: int | None,
        plan_args: dict[str, Any],
    ) -> tuple[Plan, ItemsSource]:
        """Plan over a storage source: cut it into leaf ranges without reading it whole."""
        spec = prepared.source
        assert spec is not None
        if spec.format == "arrow":
            units = max(1, len(split_source(self.storage, spec, 1 << 30)))
        else:
            size = self.storage.size(spec.connector, spec.key)
            span = min(spec.end or size, size) - min(spec.start or 0, size)
            # Numbers plan by element; text and bytes by ~64-byte units (a short line).
            units = span // 8 if spec.format in ("int64", "float64") else span // 64
        sizing = plan_task(type_, max(units, 0), leaf_size=leaf_size, **plan_args)
        ranges = split_source(self.storage, spec, max(1, len(sizing.leaves)))
        plan = plan_task(type_, len(ranges), leaf_size=1, **plan_args)
        as_list = prepared.operation.input_kind == "any" and spec.format in ("int64", "float64")
        return plan, ("source", spec, ranges, self.storage.settings, as_list)

    def submit(self, request: ExecuteRequest | Mapping[str, Any], **owner: Any) -> str:
        """Start a task and return its taskId at once."""
        return str(_unwrap(ray.get(self._core.submit.remote(self.prepare(request, **owner)))))

    def execute(self, request: ExecuteRequest | Mapping[str, Any], **owner: Any) -> ExecuteResponse:
        """Run a task and wait for its result.

        A task that fails while running (timeout, an operation error, a crashed agent) returns
        a response with ``status`` ``failed`` and its ``error``; a request that is not valid
        raises :class:`~rlm.errors.InvalidInput` before anything runs.
        """
        result: ExecuteResponse = _unwrap(
            ray.get(self._core.execute.remote(self.prepare(request, waits=True, **owner)))
        )
        return result

    def status(self, task_id: str, *, viewer: Viewer | None = None) -> TaskStatus:
        """The task's status and progress.

        Raises:
            TaskNotFound: no such task (that ``viewer`` may see, when given).
        """
        status: TaskStatus = _unwrap(ray.get(self._core.status.remote(task_id, viewer)))
        return status

    def result(
        self, task_id: str, *, timeout: float | None = None, viewer: Viewer | None = None
    ) -> ExecuteResponse:
        """Wait for the task to end and return its result.

        Raises:
            TaskNotFound: no such task.
            TimeoutError: ``timeout`` seconds passed first (the task keeps running).
        """
        result: ExecuteResponse | None = _unwrap(
            ray.get(self._core.wait.remote(task_id, viewer, timeout))
        )
        if result is None:
            raise TimeoutError(f"task {task_id} is still running after {timeout} s")
        return result

    def cancel(self, task_id: str, *, viewer: Viewer | None = None) -> CancelResponse:
        """Cancel the task; answers once none of its agent calls runs any more."""
        response: CancelResponse = _unwrap(ray.get(self._core.cancel.remote(task_id, viewer)))
        return response

    def events(
        self,
        task_id: str,
        *,
        after: int = 0,
        viewer: Viewer | None = None,
        poll_s: float = 15.0,
    ) -> Iterator[TaskEventMessage]:
        """The task's events as they happen, from the one after ``after`` to ``task.completed``.

        Each answer of the engine waits up to ``poll_s`` for a new event; the iterator ends
        after ``task.completed`` (at once for a task that has ended: its events come from the
        state file).

        Raises:
            TaskNotFound: no such task (that ``viewer`` may see, when given).

        Example:
            >>> for event in hv.events(task_id):  # doctest: +SKIP
            ...     print(event.id, event.event, event.data)
        """
        while True:
            page = _unwrap(ray.get(self._core.events.remote(task_id, viewer, after, poll_s)))
            for wire in page["events"]:
                event = TaskEventMessage.model_validate(wire, strict=False)
                after = event.id
                yield event
            if page["ended"]:
                return

    def trajectory(self, task_id: str, *, viewer: Viewer | None = None) -> Trajectory:
        """The task's trajectory: its ``rlm.*`` events, then ``task.completed`` once ended.

        Raises:
            TaskNotFound: no such task.
        """
        wire = _unwrap(ray.get(self._core.trajectory.remote(task_id, viewer)))
        return Trajectory.model_validate(wire, strict=False)

    def record_events(self, task_id: str, events: Sequence[tuple[str, dict[str, Any]]]) -> bool:
        """Append events to a running task's log (what an RLM session does as it runs).

        Returns:
            ``False`` when the task is not running (any more).
        """
        recorded: bool = ray.get(self._core.record_events.remote(task_id, list(events)))
        return recorded

    def tasks(
        self, *, viewer: Viewer | None = None, limit: int = 50, query: TaskQuery | None = None
    ) -> list[TaskStatus]:
        """The newest tasks, newest first (``query``: filtered; see :meth:`task_page`)."""
        return self.task_page(query or TaskQuery(limit=limit), viewer=viewer).tasks

    def task_page(self, query: TaskQuery, *, viewer: Viewer | None = None) -> TaskPage:
        """One page of the tasks ``query`` selects, newest first, and its ``next_cursor``.

        Example:
            >>> hv.task_page(TaskQuery(statuses=frozenset({"running"}))).tasks  # doctest: +SKIP
            []
        """
        page: TaskPage = _unwrap(ray.get(self._core.list_tasks.remote(viewer, query)))
        return page

    def quotas(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a method of the engine's quota ledger (:class:`rlm.quotas.QuotaLedgerService`).

        Example:
            >>> hv.quotas("user_status", "alice").daily.agents_remaining  # doctest: +SKIP
        """
        return _unwrap(ray.get(self._core.quota.remote(method, args, kwargs, None)))

    def quota_batch(self, calls: Sequence[BatchCall]) -> list[Any]:
        """Apply many admission calls (reserve, reconcile, ...) in one round trip and one commit.

        Returns:
            One entry per call, in order: its value, or the :class:`~rlm.errors.RLMError` it
            raised (returned, not raised: the other calls still took effect).

        Example:
            >>> held = hv.quota_batch([("reserve", ("ada", 5), {"tier": "user", "task_id": "t1"})])
            ... # doctest: +SKIP
        """
        slots = _unwrap(ray.get(self._core.quota_batch.remote(list(calls))))
        return [unpack_slot(slot) for slot in slots]

    # -- webhooks -------------------------------------------------------------------------------

    def webhooks(self, method: str, viewer: Viewer, *args: Any) -> Any:
        """Call the webhook service as ``viewer`` (the caller: its own webhooks; an admin's
        org's too). ``method``: ``create``, ``list_webhooks``, ``get``, ``update``, ``delete``,
        ``rotate``, ``deliveries``, ``delivery``, ``retry`` (see
        :class:`rlm.webhooks.service.WebhookService`) or ``test``.

        Example:
            >>> from rlm.admission import Viewer
            >>> from rlm.models import WebhookCreate
            >>> created = hv.webhooks("create", Viewer("alice"), WebhookCreate(
            ...     url="https://example.com/hook", events=["task.completed"]))  # doctest: +SKIP
        """
        for attempt in (1, 2):
            worker = self._worker()
            try:
                if method == "test":
                    return _unwrap_pair(ray.get(worker.test.remote(viewer, *args)))
                return _unwrap_pair(ray.get(worker.call.remote(method, viewer, *args)))
            except ray.exceptions.RayActorError:
                # The engine restarted with a new worker: ask it for the new handle, once.
                self._webhook_worker = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def ask_webhooks(self, method: str, viewer: Viewer, *args: Any) -> Any:
        """:meth:`webhooks` from an event loop (the HTTP routes)."""
        for attempt in (1, 2):
            if self._webhook_worker is None:
                self._webhook_worker = await self._core.webhook_worker.remote()
            worker = self._webhook_worker
            try:
                if method == "test":
                    return _unwrap_pair(await worker.test.remote(viewer, *args))
                return _unwrap_pair(await worker.call.remote(method, viewer, *args))
            except ray.exceptions.RayActorError:
                self._webhook_worker = None  # see webhooks()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def webhook_stats(self) -> dict[str, Any]:
        """The delivery worker's counters: attempts, successes, failures, in flight."""
        try:
            stats: dict[str, Any] = ray.get(self._worker().stats.remote())
        except ray.exceptions.RayActorError:
            self._webhook_worker = None  # the engine restarted: ask again next time
            raise
        return stats

    def _worker(self) -> Any:
        if self._webhook_worker is None:
            self._webhook_worker = ray.get(self._core.webhook_worker.remote())
        return self._webhook_worker

    # -- for servers: async, admitted, with the rate-limit headers ----------------------------

    async def ask(self, method: str, *args: Any) -> tuple[Any, dict[str, str]]:
        """Call a core method from an event loop; its value and rate-limit headers.

        Raises:
            RLMError: the core's error, with its HTTP headers attached.
        """
        kind, value, headers = await getattr(self._core, method).remote(*args)
        if kind == "err":
            raise error_from_payload(value).with_headers(headers)
        return value, headers

    def security(self) -> RaySecurity:
        """The security actor of this state directory: policies and the audit log (started
        on first use; events are batched, see :mod:`rlm.runtime.security`)."""
        if self._security is None:
            self._security = RaySecurity(self.settings)
        return self._security

    async def running_async(self) -> dict[str, int]:
        """The engine's load: tasks running, calls in flight, calls queued."""
        running: dict[str, int] = await self._core.running.remote()
        return running

    # -- lifecycle ----------------------------------------------------------------------------

    def agent_pids(self) -> list[int]:
        """The process id of each agent in the pool."""
        pids: list[int] = ray.get(self._core.agent_pids.remote())
        return pids

    def agents_busy(self) -> list[dict[str, Any]]:
        """What each agent is doing now: ``{"running": taskId | None, "active": {...}}``."""
        busy: list[dict[str, Any]] = ray.get(self._core.agents_busy.remote())
        return busy

    def rlm_sessions(self) -> list[dict[str, Any]]:
        """Each RLM session host: its pid, the sandboxes (pid, uid) of each task it runs,
        the pids of its idle pre-started sandboxes and how many it has started."""
        stats: list[dict[str, Any]] = ray.get(self._core.rlm_sessions.remote())
        return stats

    def lm_gateways(self) -> list[dict[str, Any]]:
        """Each started LM gateway shard's counters: provider, requests sent, answered,
        retried and failed, in flight now and at most (overall and by tenant)."""
        stats: list[dict[str, Any]] = ray.get(self._core.lm_stats.remote())
        return stats

    def live_inputs(self) -> list[str]:
        """The object ids of the large inputs the engine holds now (those of tasks not ended,
        whoever submitted them): an input is freed once its task ends."""
        live: list[str] = ray.get(self._holder().live.remote())
        return live

    def engine_info(self) -> dict[str, Any]:
        """The pool's size and the process ids of the core and the agents."""
        info: dict[str, Any] = ray.get(self._core.ready.remote())
        return info

    def shutdown_engine(self) -> None:
        """Stop the engine's actors (the state file keeps every record)."""
        ray.kill(self._core, no_restart=True)

    @property
    def owns_ray(self) -> bool:
        """Whether this handle started the Ray it runs on (and :meth:`close` stops it)."""
        return self._owns_ray

    def close(self) -> None:
        """Disconnect; shuts the local Ray down when :func:`connect` started it."""
        if self._owns_ray and ray.is_initialized():
            self.shutdown_engine()
            ray.shutdown()

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def core_actor_name(settings: Settings) -> str:
    """The singleton core's name: one engine per state directory."""
    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
    return f"rlm-core-{digest}"


def connect(
    address: str | None = None,
    *,
    settings: Settings | None = None,
    agents: int | None = None,
    registry: OperationRegistry | None = None,
) -> Hypervisor:
    """Connect to (or start) the engine and return a :class:`Hypervisor`.

    Args:
        address: A Ray cluster to join (``auto``, ``ray://host:10001``...); by default the
            settings' ``ray_address`` (``RLM_RAY_ADDRESS``), then ``RAY_ADDRESS``, then the
            Ray of the engine already running on the state directory (``rlm serve``, another
            ``connect()``), and only then a new local Ray.
        settings: Settings to use instead of the environment's.
        agents: Agent pool size (default: the cluster's CPUs).
        registry: The operations tasks may name (default: the built-ins).

    Raises:
        EngineUnavailable: the state directory is held by a process this one cannot join, or
            the engine did not come up.
    """
    settings = settings or get_settings()
    dsn = settings.database_dsn
    if dsn is not None:
        # Before anything starts: bring the schema up to this release (under the migrations'
        # advisory lock, so instances starting together apply each step once), or refuse a
        # database a newer release has migrated.
        from rlm.db.connect import ensure_schema

        ensure_schema(dsn)
    owns_ray = False
    if not ray.is_initialized():
        chosen, engine = resolve_address(address, settings)
        if engine is not None:
            _auth_as_found_cluster()
        try:
            ray.init(
                address=chosen,
                namespace=settings.namespace,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except ConnectionError as err:
            if engine is None:
                raise
            raise EngineUnavailable(
                f"the engine on {settings.state_dir} (pid {engine.pid} on {engine.host}) runs "
                f"in Ray at {engine.ray_address}, which cannot be joined from here ({err}): "
                "stop it, or use another state directory (RLM_STATE_DIR)",
                {"pid": engine.pid, "host": engine.host},
            ) from None
        # Only a Ray this call started is this process's to shut down (with its engine).
        owns_ray = chosen is None
    core = CoreActor.options(
        name=core_actor_name(settings),
        namespace=settings.namespace,
        lifetime="detached",
        get_if_exists=True,
        **ON_HEAD,  # it opens the state files, on the head's disk (see rlm.runtime.placement)
    ).remote(settings, agents, settings.lm.providers())
    try:
        ray.get(core.ready.remote(), timeout=120)
    except Exception as err:  # pragma: no cover - depends on the cluster
        if owns_ray:
            ray.shutdown()
        raise _not_started(settings, err) from None
    return Hypervisor(settings, core, registry, owns_ray=owns_ray)


def _auth_as_found_cluster() -> None:
    """Use Ray's token (when there is one) to join the engine's cluster, as ``auto`` would.

    Ray enables token authentication for a cluster it finds itself (``address="auto"``) but
    not for an explicit address; an engine found through the state file is such a cluster.
    ``RAY_AUTH_MODE``, when set, decides instead.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # pragma: no cover - a Ray without token authentication
        return
    # Ray announces that it enabled token authentication; joining the engine's own cluster,
    # there is nothing for the user to act on, so the notice is kept off their terminal.
    notices = logging.getLogger(maybe_enable_token_auth_if_token_available.__module__)
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        notices.setLevel(level)


def _not_started(settings: Settings, err: Exception) -> EngineUnavailable:
    """One sentence for an engine that did not come up (Ray's text is a whole traceback)."""
    text = str(err)
    if "cannot be opened" in text:
        refusal = store_in_use(settings)
        if refusal is not None:
            return refusal
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = lines[-1] if lines else type(err).__name__
    return EngineUnavailable(f"the engine did not start: {cause}", {"cause": cause})

"""The engine core: one singleton actor that admits tasks, runs their trees and records them.

The core composes its parts, each its own module: the admission gate (:mod:`rlm.gate`: rate
limits, concurrency leases, quota holds), the scheduler (:mod:`rlm.runtime.scheduler`: the
agent pool and the priority ready queue), the RLM session hosts
(:mod:`rlm.runtime.rlm_sessions`: RLM tasks run there as one session each, instead of as
agent calls), the LM broker and the task table (:mod:`rlm.runtime.table`: the runs in flight
and the task store). The core holds the public methods and the life of a run: start,
timeout, finish, stop, end.

Webhooks: the task store writes a ``task.completed`` event for a task's subscribed webhooks in
the transaction of its final record (:class:`~rlm.webhooks.outbox.WebhookOutbox`); the core then
hands the quota ledger's threshold events to the same outbox and wakes the delivery worker
(:mod:`rlm.runtime.webhook_worker`, an actor of its own), which does all the sending.

Why one actor for records and scheduling: an ``execute`` then costs two hops (caller → core →
agent) instead of three, the live progress of a running task sits next to its record, a
status read needs no second actor, and a task's lease and quota hold are given back by the
code that ends it, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlm.admission import Admission, Viewer
from rlm.config import Settings
from rlm.errors import (
    InternalError,
    QuotaExceeded,
    RLMError,
    TaskNotFound,
    TaskTimeout,
    error_from_payload,
)
from rlm.execution import finish_output
from rlm.gate import AdmissionGate
from rlm.lm.calls import LMReply, LMRequest
from rlm.lm.memo import MemoStore
from rlm.lm.settings import ProviderSettings
from rlm.models.quotas import TeamQuotaStatus
from rlm.models.tasks import CancelResponse, ExecuteResponse, TaskPage
from rlm.quotas.service import BatchCall, QuotaLedgerService
from rlm.ratelimit import RateJournal, RateLimiter, SharedLeases, SharedWindows
from rlm.runtime.agents import is_small
from rlm.runtime.input_holder import InputHolderActor
from rlm.runtime.lm_broker import CallStopped, LMBroker
from rlm.runtime.rlm_host import HostConfig
from rlm.runtime.rlm_sessions import SessionHosts
from rlm.runtime.run import Run, TaskSpec
from rlm.runtime.scheduler import Scheduler, builtin
from rlm.runtime.source_prompts import SourcePrompts, reads_storage
from rlm.runtime.table import TaskTable
from rlm.runtime.webhook_worker import WebhookWorkerActor, worker_name
from rlm.scoring import score
from rlm.tasks.events import in_trajectory
from rlm.tasks.idempotency import REPLAYED_HEADER, IdempotencyKey
from rlm.tasks.listing import TaskQuery
from rlm.tasks.record import TaskRecord
from rlm.tasks.store import TaskStore
from rlm.webhooks.outbox import WebhookOutbox
from rlm.webhooks.wake import WakeSender, wake_address

__all__ = ["EVENTS_PAGE", "Answer", "CoreActor", "HypervisorCore", "TaskSpec"]

#: The most events one answer of :meth:`HypervisorCore.events` carries.
EVENTS_PAGE = 1000

log = logging.getLogger(__name__)

#: How often an instance on a shared store looks for cancels forwarded to it (seconds).
_CANCEL_POLL_S = 0.5

#: What every public method of the core answers: ``("ok", value, headers)`` or
#: ``("err", error payload, headers)``; ``headers`` are the rate-limit headers for HTTP.
Answer = tuple[str, Any, dict[str, str]]


def _answers(
    method: Callable[..., Awaitable[tuple[Any, dict[str, str]]]],
) -> Callable[..., Awaitable[Answer]]:
    """Turn ``(value, headers)`` or a raised :class:`RLMError` into an :data:`Answer`.

    Errors cross the actor boundary as payloads (Ray would wrap the exception), with the
    headers they carry (``with_headers``) for the HTTP answer.
    """

    @functools.wraps(method)
    async def answer(*args: Any, **kwargs: Any) -> Answer:
        try:
            value, headers = await method(*args, **kwargs)
        except RLMError as err:
            return "err", err.to_payload(), err.headers
        return "ok", value, headers

    return answer


class HypervisorCore:
    """Admission gate + scheduler + task table; wrapped as :data:`CoreActor`.

    Args:
        settings: The service settings (state directory, engine sizing).
        agents: Pool size; default the cluster's CPU count.
    """

    def __init__(
        self,
        settings: Settings,
        agents: int | None = None,
        providers: dict[str, ProviderSettings] | None = None,
    ) -> None:
        self._settings = settings
        # The quota store is locked for the engine's life: open it before registering this
        # instance, so an engine refused the lock is never listed as one to join.
        dsn = settings.database_dsn
        if dsn is not None:
            from rlm.db.pool import configure_pools  # PostgreSQL only: psycopg imported lazily

            configure_pools(settings.database_pool_size)
        quotas = QuotaLedgerService(settings.state_dir / "quotas.db", database_url=dsn)
        # The outbox writes task.completed events in the transaction of each final record.
        self._outbox = WebhookOutbox(settings.database_path, settings.webhooks, database_url=dsn)
        self._table = TaskTable(
            TaskStore(settings.database_path, hook=self._outbox, database_url=dsn),
            ray.get_runtime_context().gcs_address,
            max_events=settings.engine.max_task_events,
            max_progress_events=settings.engine.max_task_progress_events,
        )
        self._scheduler = Scheduler(
            settings.engine,
            agents,
            finish=self._finish,
            stop=self._stop,
            core=ray.get_runtime_context().current_actor,
            lm_call=self.lm_call,
            lm_capacity=settings.lm.max_inflight_calls,
        )
        self._sessions = SessionHosts(
            HostConfig(
                sandbox=settings.sandbox,
                rlm=settings.rlm,
                storage=settings.storage_settings,
                hidden_paths=(str(settings.state_dir.resolve()),),
                state_dir=str(settings.state_dir),
                namespace=settings.namespace,
                database_url=settings.database_url,
            ),
            settings.rlm.hosts,
            ray.get_runtime_context().current_actor,
        )
        # Providers are resolved on the driver (keys come from its environment) and handed in.
        self._source_prompts = SourcePrompts(settings)
        self._broker = LMBroker(
            providers or {},
            MemoStore(settings.database_path, database_url=dsn) if settings.lm.memo else None,
        )
        # Rate-limit windows continue across a restart of this actor: every counted request
        # is journaled in the state file, and a new limiter replays the last hour. On
        # PostgreSQL the windows and the concurrent-agent leases are the database's, shared by
        # every instance on it (a client spreading requests or tasks over instances gets its
        # tier in total, not once per instance).
        self._limiter = (
            RateLimiter(shared=SharedWindows(dsn), leases=SharedLeases(dsn))
            if dsn is not None
            else RateLimiter(journal=RateJournal(settings.database_path))
        )
        self._gate = AdmissionGate(
            quotas, hold_ttl_s=settings.engine.quota_hold_ttl_s, limiter=self._limiter
        )
        # Shared store (PostgreSQL): other instances' tasks may be running; give back only
        # what the tasks just marked interrupted held. Own store: no task of a previous engine
        # is still running, so everything held is given back.
        self._shared = dsn is not None
        if self._shared:
            self._gate.release_task_holds(self._table.interrupted_at_start)
        else:
            self._gate.release_open_holds()
        self._cancel_poll: asyncio.Task[None] | None = None
        # The delivery worker: named per state directory, owned by (and dying with) the core,
        # on the core's node (it opens the same SQLite file).
        self._webhooks = WebhookWorkerActor.options(
            name=worker_name(settings),
            namespace=settings.namespace,
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False
            ),
        ).remote(settings)
        # The owner of the large inputs callers put (see rlm.runtime.input_holder): a child of
        # the core, so an input outlives the process that submitted it, not the engine.
        # Unnamed: callers get it from the core, and a restarted core makes a new one instead
        # of finding its dead predecessor's (which died with the core) under the same name.
        self._input_holder = InputHolderActor.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False
            ),
        ).remote()
        self._wake = WakeSender(wake_address(settings.state_dir))
        self._outbox.on_queued(self._wake_worker)
        # Threshold events a previous engine queued but did not hand over, and the events of
        # tasks just marked interrupted.
        self._hand_over_quota_events()
        self._outbox.flush()

    # -- public methods: those marked @_answers return an Answer (see above) ------------------

    async def ready(self) -> dict[str, Any]:
        """Wait until every agent answers; the pool's size and pids."""
        self._ensure_heartbeat()
        # Start the LM gateways now (not awaited), so a first LM call does not wait for their
        # processes to start; the RLM session hosts and their first sandboxes start beside the
        # agents (awaited with them), so no RLM task waits for an actor or a process to start.
        self._broker.warm()
        pings, _ = await asyncio.gather(self._scheduler.ping(), self._sessions.ready())
        return {"agents": len(pings), "pids": [p["pid"] for p in pings], "corePid": os.getpid()}

    async def agents_busy(self) -> list[dict[str, Any]]:
        """What each agent is doing right now (the core's own agent last)."""
        return await self._scheduler.busy()

    async def agent_pids(self) -> list[int]:
        """Each agent's process id (tests use it to kill one)."""
        pids: list[int] = (await self.ready())["pids"]
        return pids

    @ray.method(enable_task_events=False)  # type: ignore[untyped-decorator]
    @_answers
    async def admit(self, admission: Admission | None) -> tuple[Any, dict[str, str]]:
        """Count one request against its caller's rate limits."""
        return None, self._gate.admit(admission)

    @ray.method(enable_task_events=False)  # type: ignore[untyped-decorator]
    @_answers
    async def submit(
        self, spec: TaskSpec, admission: Admission | None = None, key: IdempotencyKey | None = None
    ) -> tuple[Any, dict[str, str]]:
        """Admit, record and queue a task; answers at once with the taskId.

        With ``key`` (an ``Idempotency-Key``) that already names a task, answers that task's
        id instead, with ``Idempotent-Replayed: true``: nothing is admitted, held or run.
        """
        replay = await self._replay(spec, key)
        if replay is not None:
            headers = {**self._gate.admit(admission), REPLAYED_HEADER: "true"}
            return _task_id(replay), headers
        headers = self._admit_task(admission, spec)
        await self._start(spec, admission, key)
        return spec.task_id, headers

    @ray.method(enable_task_events=False)  # type: ignore[untyped-decorator]
    @_answers
    async def execute(
        self, spec: TaskSpec, admission: Admission | None = None, key: IdempotencyKey | None = None
    ) -> tuple[Any, dict[str, str]]:
        """Admit and run a task, and wait for its result, in one call.

        With ``key`` that already names a task, waits for that task instead (a duplicate in
        flight waits on the first) and answers its result, with ``Idempotent-Replayed: true``.
        """
        replay = await self._replay(spec, key)
        if replay is not None:
            headers = {**self._gate.admit(admission), REPLAYED_HEADER: "true"}
            if isinstance(replay, Run):
                await replay.done.wait()
                replay = replay.record
            return _current_result(replay), headers
        headers = self._admit_task(admission, spec)
        run = await self._start(spec, admission, key, awaited=True)
        await run.done.wait()
        assert run.record.result is not None
        return run.record.result, headers

    @_answers
    async def wait(
        self,
        task_id: str,
        viewer: Viewer | None,
        timeout_s: float | None,
        admission: Admission | None = None,
    ) -> tuple[Any, dict[str, str]]:
        """Wait until the task ends (or ``timeout_s`` passes); its result, or ``None``."""
        headers = self._gate.admit(admission)
        run = self._table.run(task_id, viewer)
        if run is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.done.wait(), timeout_s)
            return run.record.result, headers
        record = self._table.stored(task_id, viewer)
        if record is None:
            raise TaskNotFound(task_id).with_headers(headers)
        return record.result, headers

    @_answers
    async def status(
        self, task_id: str, viewer: Viewer | None, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """The task's status with live progress."""
        headers = self._gate.admit(admission)
        record = self._table.record(task_id, viewer)
        if record is None:
            raise TaskNotFound(task_id).with_headers(headers)
        return record.to_status(), headers

    @_answers
    async def lookup(
        self, task_id: str, viewer: Viewer | None, key: IdempotencyKey | None = None
    ) -> tuple[Any, dict[str, str]]:
        """The status of the task ``key`` names, else of ``task_id``; not counted.

        For a front end whose call into this actor was lost when the actor died: after the
        restart, it learns whether the request's task was created (it is then failed,
        "interrupted") and answers the client with its ``taskId``.
        """
        named = self._table.idempotent(key) if key is not None else None
        wanted = _task_id(named) if named is not None else task_id
        record = self._table.record(wanted, viewer)
        if record is None:
            raise TaskNotFound(wanted)
        return record.to_status(), {}

    @_answers
    async def list_tasks(
        self, viewer: Viewer | None, query: TaskQuery, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """A page of the tasks the viewer may see that ``query`` selects, newest first."""
        headers = self._gate.admit(admission)
        records, after = self._table.list(viewer, query)
        page = TaskPage(
            tasks=[r.to_status() for r in records],
            next_cursor=None if after is None else after.encode(),
        )
        return page, headers

    @_answers
    async def cancel(
        self, task_id: str, viewer: Viewer | None, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """Stop the task's tree; answers once no call of it is running."""
        headers = self._gate.admit(admission)
        run = self._table.run(task_id, viewer)
        if run is not None and not run.finished:
            await self._stop(run, "cancelled", None)
            cancelled = "the task was cancelled"
            return CancelResponse(task_id=task_id, status="cancelled", message=cancelled), headers
        if run is not None:
            await run.done.wait()  # it is ending: answer once it has ended
        record = run.record if run is not None else self._table.stored(task_id, viewer)
        if record is not None and not record.terminal and self._shared:
            # Another instance on the shared store runs it: ask it, and answer once it ended.
            record = await self._forward_cancel(record, viewer)
            if record.status == "cancelled":
                message = "the task was cancelled (by the instance running it)"
                return CancelResponse(task_id=task_id, status="cancelled", message=message), headers
        if record is None:
            response = CancelResponse(task_id=task_id, status="not_found", message="no such task")
        else:
            response = CancelResponse(
                task_id=task_id,
                status="already_completed",
                message=f"the task had already ended ({record.status})",
            )
        return response, headers

    async def _forward_cancel(self, record: TaskRecord, viewer: Viewer | None) -> TaskRecord:
        """Ask the running instance to cancel ``record``'s task; its record once it ended
        (or as it stands when the cancel timeout passes)."""
        self._table.forward_cancel(record)
        # The running instance polls every _CANCEL_POLL_S, then stops the tree within its grace.
        deadline = time.monotonic() + self._settings.engine.cancel_grace_s + 4 * _CANCEL_POLL_S
        while time.monotonic() < deadline:
            await asyncio.sleep(_CANCEL_POLL_S / 2)
            now = self._table.stored(record.task_id, viewer)
            if now is not None and now.terminal:
                return now
        return self._table.stored(record.task_id, viewer) or record

    @_answers
    async def quota(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        admission: Admission | None = None,
    ) -> tuple[Any, dict[str, str]]:
        """Call a method of the quota ledger (status, check, configure...), admitted first."""
        headers = self._gate.admit(admission)
        value = self._gate.quota(method, args, kwargs, headers)
        if isinstance(value, TeamQuotaStatus):
            # Storage is what this service keeps for the team's tasks; the ledger cannot see
            # the task store, so the figure is filled in here.
            value.usage.storage_used = self._table.stored_bytes(value.team_id) / 1e9
        return value, headers

    @_answers
    async def quota_batch(self, calls: list[BatchCall]) -> tuple[list[Any], dict[str, str]]:
        """Apply many admission calls in one actor call and one commit (see ``batch``).

        Each slot answers ``("ok", value)`` or ``("err", payload)``, like a single call; a
        reservation or settlement travels as a compact tuple (:mod:`rlm.quotas.wire`).
        """
        return self._gate.quota_batch(calls), {}

    async def record_events(
        self,
        task_id: str,
        events: list[tuple[str, dict[str, Any]]],
        batch: int | None = None,
    ) -> bool:
        """Append events of a running task (an RLM session's turns, cells, sub-calls...).

        ``task.completed`` is the task table's to append (when the task ends): one sent here
        is ignored. Over the task's cap, events are dropped (see ``EventLog``).

        Args:
            task_id: The task.
            events: ``(type, data)`` pairs, in order.
            batch: The batch's number, from 1, when the sender numbers its batches (an RLM
                session host, whose fire-and-forget calls this async actor may run out of
                order): the batch is held until the ones before it are in, and one that
                comes twice is dropped (see :class:`~rlm.tasks.batch_order.BatchOrder`).
                ``None``: appended as it comes.

        Returns:
            ``False`` when the task is no longer running (its log is closed): the caller stops.
        """
        run = self._table.run(task_id, None)
        if run is None or run.events.closed:
            return False
        run.append_steps([events] if batch is None else run.event_batches.accept(batch, events))
        return True

    @_answers
    async def events(
        self,
        task_id: str,
        viewer: Viewer | None,
        after: int = 0,
        timeout_s: float | None = 15.0,
        admission: Admission | None = None,
        limit: int = EVENTS_PAGE,
    ) -> tuple[Any, dict[str, str]]:
        """The task's events numbered above ``after``, waiting up to ``timeout_s`` for one.

        A running task's come from its log in memory; an ended task's from the store, so a
        watcher resuming after the task ended gets the rest, then the end.

        Args:
            task_id: The task.
            viewer: Whose tasks the caller may see (``None``: all).
            after: The last event the caller has (``Last-Event-ID``); 0 for all.
            timeout_s: How long to wait for a new event of a running task.
            admission: Counted against the caller's rate limit (a stream counts its first
                call only, and passes ``None`` after).
            limit: At most this many events per answer.

        Returns:
            ``{"events": [...], "ended": bool}``; ``ended`` once the answer reaches the
            terminal event (nothing follows).

        Raises:
            TaskNotFound: no such task that ``viewer`` may see.
        """
        headers = self._gate.admit(admission)
        run = self._table.run(task_id, viewer)
        if run is not None:
            log = run.events
            page = (await log.wait(after, timeout_s))[:limit]
            ended = log.closed and (page[-1].seq if page else after) >= log.last_seq
            return {"events": [e.to_wire() for e in page], "ended": ended}, headers
        record = self._table.stored(task_id, viewer)
        if record is None:
            raise TaskNotFound(task_id).with_headers(headers)
        stored, ended = self._table.stored_events(record, after, limit)
        if not ended and not stored and timeout_s:
            # Running in another engine on this state file: do not answer a poll at once.
            await asyncio.sleep(min(timeout_s, 1.0))
        return {"events": [e.to_wire() for e in stored], "ended": ended}, headers

    @_answers
    async def trajectory(
        self, task_id: str, viewer: Viewer | None, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """The task's trajectory: its ``rlm.*`` events (turns, cells, sub-calls, child RLMs,
        the answer), the truncation marker if any, and ``task.completed`` once it has ended.

        Returns:
            ``{"taskId", "status", "events": [...]}``, the events in their wire form.

        Raises:
            TaskNotFound: no such task that ``viewer`` may see.
        """
        headers = self._gate.admit(admission)
        run = self._table.run(task_id, viewer)
        if run is not None:
            status = run.record.status
            events = [e for e in run.events.after(0) if in_trajectory(e.type)]
        else:
            record = self._table.stored(task_id, viewer)
            if record is None:
                raise TaskNotFound(task_id).with_headers(headers)
            status = record.status
            events, _ = self._table.stored_events(record, 0, None, trajectory=True)
        wire = [e.to_wire() for e in events]
        return {"taskId": task_id, "status": status, "events": wire}, headers

    async def webhook_worker(self) -> Any:
        """The handle of the webhook delivery worker (registration routes go to it)."""
        return self._webhooks

    async def running(self) -> dict[str, int]:
        """Counts for health checks: tasks running, calls in flight and queued."""
        return {"tasks": len(self._table), **self._scheduler.counts()}

    async def lm_call(
        self, task_id: str, request: LMRequest, extra: bool = False
    ) -> tuple[str, Any]:
        """One LM request of a running task's agent call (see :class:`LMBroker`).

        Returns:
            ``("ok", text)``, ``("err", error payload)``, or ``("stopped", None)`` when the
            task has ended (the agent's call then stops).
        """
        refused = await self._source_refusal(task_id, [request])
        if refused is not None:
            return "err", refused
        try:
            reply = await self._broker.call(task_id, request, extra=extra)
        except CallStopped:
            return "stopped", None
        except RLMError as err:
            return "err", err.to_payload()
        return "ok", reply.text

    async def _source_refusal(
        self, task_id: str, requests: list[LMRequest]
    ) -> dict[str, Any] | None:
        """The refusal of LM requests carrying a storage source's text that the task's org's
        input policies refuse (:mod:`rlm.runtime.source_prompts`), else ``None``."""
        run = self._table.run(task_id, None)
        if run is None or not reads_storage(run.spec):
            return None
        try:
            return await self._source_prompts.refusal(run.spec, requests)
        except RLMError as err:
            return err.to_payload()

    async def lm_batch(
        self, task_id: str, requests: list[LMRequest], extra: bool = False
    ) -> list[tuple[str, Any]]:
        """LM requests of a running RLM session, sent at once (a sub-call batch, a turn).

        With ``extra``, the requests are calls the task's admission did not hold: they are
        held on the user's quotas first, all or none. Each request is then reserved on the
        budget and the token quota before it is sent (see :class:`LMBroker`).

        Returns:
            One ``("ok", {text, inputTokens, outputTokens, latencyMs, cached})``,
            ``("err", error payload)`` or ``("stopped", None)`` per request, in order.
        """
        if extra:
            try:
                self._broker.extra_calls(task_id, len(requests))
            except CallStopped:
                return [("stopped", None)] * len(requests)
            except RLMError as err:
                return [("err", err.to_payload())] * len(requests)
        try:
            outcomes = await self._broker.call_batch(task_id, requests)
        except CallStopped:
            return [("stopped", None)] * len(requests)
        answers: list[tuple[str, Any]] = []
        for outcome in outcomes:
            if isinstance(outcome, CallStopped):
                answers.append(("stopped", None))
            elif isinstance(outcome, RLMError):
                answers.append(("err", outcome.to_payload()))
            else:
                answers.append(
                    (
                        "ok",
                        {
                            "text": outcome.text,
                            "inputTokens": outcome.input_tokens,
                            "outputTokens": outcome.output_tokens,
                            "latencyMs": outcome.latency_s * 1000.0,
                            "cached": outcome.cached,
                        },
                    )
                )
        return answers

    async def rlm_sessions(self) -> list[dict[str, Any]]:
        """Each RLM session host's running tasks (their sandboxes' pids and uids) and idle
        sandboxes."""
        return await self._sessions.stats()

    async def input_holder(self) -> Any:
        """The actor that puts callers' large inputs into the object store as their owner
        (:mod:`rlm.runtime.input_holder`)."""
        return self._input_holder

    async def lm_stats(self) -> list[dict[str, Any]]:
        """Each started LM gateway's counters."""
        return await self._broker.gateway_stats()

    # -- the life of a run --------------------------------------------------------------------

    async def _replay(self, spec: TaskSpec, key: IdempotencyKey | None) -> Run | TaskRecord | None:
        """The task ``key`` already names; else check that ``spec`` can run (awaited).

        The key is looked up again after that ``await``: a request with the same key may
        have started its task meanwhile. From that second look to the task's run entering
        the table as *starting* there is no ``await`` (the caller admits and starts at once),
        and a starting run is found by its key while its record is written (awaited), so two
        requests with one key never both start a task.
        """
        replay = self._table.idempotent(key) if key is not None else None
        if replay is None:
            await self._check_runnable(spec)
            replay = self._table.idempotent(key) if key is not None else None
        return replay

    async def _check_runnable(self, spec: TaskSpec) -> None:
        """Refuse, before admission, a task this engine cannot run (an RLM task without an
        isolated sandbox)."""
        if spec.operation.runs_in_session:
            await self._sessions.check_available()

    def _admit_task(self, admission: Admission | None, spec: TaskSpec) -> dict[str, str]:
        """Admit a request that starts ``spec``: its agents leased, its calls held."""
        return self._gate.admit(admission, spec, agents=self._scheduler.agents_wanted(spec))

    def _ensure_heartbeat(self) -> None:
        self._table.keep_alive(also=self._housekeeping)
        if self._shared and self._cancel_poll is None:
            self._cancel_poll = asyncio.get_running_loop().create_task(self._poll_cancels())

    async def _poll_cancels(self) -> None:
        """Cancel the tasks another instance on the shared store was asked to cancel, and
        store "running" for the tasks that started here (so the others answer it)."""
        while True:
            await asyncio.sleep(_CANCEL_POLL_S)
            try:
                self._table.publish_running()
                for task_id in self._table.cancels_asked():
                    run = self._table.run(task_id, None)
                    if run is not None and not run.finished:
                        await self._stop(run, "cancelled", None)
            except Exception:  # pragma: no cover - the database away: try again next round
                log.exception("could not read forwarded cancels")

    def _housekeeping(self) -> None:
        """On every heartbeat: reap holds no running task owns, bound the quota history,
        forget expired idempotency keys and rate-limit journal rows. On a shared store, also
        mark the tasks of instances that died interrupted and give back their holds."""
        if self._shared:
            self._gate.release_task_holds(self._table.recover_gone())
            self._gate.reap_holds(running_elsewhere=self._table.unfinished())
        else:
            self._gate.reap_holds()
        self._gate.prune()
        self._table.purge()
        self._limiter.purge_journal()

    async def _start(
        self,
        spec: TaskSpec,
        admission: Admission | None = None,
        key: IdempotencyKey | None = None,
        *,
        awaited: bool = False,
    ) -> Run:
        self._ensure_heartbeat()
        try:
            run = await self._table.start(spec, admission, key, awaited=awaited)
        except BaseException:
            # The record could not be written (the database away): nothing runs, so the
            # lease and the hold the admission took go back at once.
            self._gate.release(spec.task_id, admission)
            self._gate.settle(spec.task_id, 0, 0.0)
            raise
        if run is None:
            self._gate.release(spec.task_id, admission)
            self._gate.settle(spec.task_id, 0, 0.0)
            raise InternalError(f"task id {spec.task_id!r} is already taken")
        session = spec.operation.runs_in_session
        if spec.operation.uses_lm:
            self._broker.open(
                spec.task_id,
                tenant=(admission.user_id if admission is not None else None) or spec.owner_id,
                budget=spec.budget,
                memo=spec.memo,
                quota=self._gate.token_quota(spec.task_id, admission),
                # An RLM task's agent calls are its LM calls, counted as they are answered.
                on_reply=functools.partial(_count_call, run) if session else None,
            )
        if spec.timeout_ms is not None:
            run.timer = asyncio.get_running_loop().call_later(
                spec.timeout_ms / 1000.0, self._on_timeout, run
            )
        if session:
            run.record = run.record.evolve(status="running", started_at=datetime.now(UTC))
            self._sessions.start(run, self._session_done)
        else:
            self._scheduler.add(run)
        return run

    async def _session_done(self, run: Run, outcome: tuple[str, Any]) -> None:
        """An RLM session ended: its answer is the output, or its error the task's."""
        if run.finished:
            return
        kind, value = outcome
        if kind == "ok":
            run.depth_reached = int(value["depth"])
            await self._finish(run, value["answer"])
        elif kind == "err":
            await self._stop(run, "failed", error_from_payload(value))
        else:  # stopped, though the core did not stop it
            await self._stop(run, "failed", InternalError("the RLM session was stopped"))

    def _on_timeout(self, run: Run) -> None:
        if not run.finished:
            timeout_ms = run.spec.timeout_ms
            err = TaskTimeout(
                f"the task ran past its timeout of {timeout_ms} ms and was stopped",
                {"timeoutMs": timeout_ms},
            )
            asyncio.get_running_loop().create_task(self._stop(run, "failed", err))

    async def _finish(self, run: Run, partial: Any) -> None:
        spec = run.spec
        try:
            if isinstance(partial, ray.ObjectRef):
                partial = await partial
            if builtin(spec.operation) and is_small(partial):
                # A built-in finish of a small partial takes microseconds: less than the
                # hand-over to a thread and back, which a loaded machine makes far longer.
                output = finish_output(spec.operation, partial, spec.params, task_id=spec.task_id)
            else:
                # A user's finish is arbitrary code (and a large output's conversion is
                # long): off the loop every task and caller shares.
                output = await asyncio.to_thread(
                    finish_output, spec.operation, partial, spec.params, task_id=spec.task_id
                )
        except RLMError as err:
            await self._stop(run, "failed", err)
            return
        except Exception as err:  # the partial could not be fetched (an agent died)
            failure = InternalError(f"the task's result could not be read: {type(err).__name__}")
            await self._stop(run, "failed", failure)
            return
        if run.finished:
            return
        task_score = score(output, spec.expected_output) if spec.has_expected_output else None
        await self._end(run, "completed", output=output, task_score=task_score)

    async def _stop(self, run: Run, status: str, error: RLMError | None) -> None:
        if run.finished:
            await run.done.wait()
            return
        run.finished = True
        if run.timer is not None:
            run.timer.cancel()
        # LM calls in flight first: their agents' calls then end at once ("stopped").
        spent = isinstance(error, QuotaExceeded) and error.details.get("resource") == "budget"
        grace = self._settings.engine.cancel_grace_s
        await self._broker.stop(run.spec.task_id, grace, drain=spent)
        if run.spec.operation.runs_in_session:
            # Its LM calls in flight have answered "stopped"; now its sandboxes are killed.
            await self._sessions.stop(run.spec.task_id, grace)
        await self._scheduler.cancel(run)
        run.partials.clear()
        await self._end(run, status, error=error)

    async def _end(
        self,
        run: Run,
        status: str,
        *,
        output: Any = None,
        error: RLMError | None = None,
        task_score: float | None = None,
    ) -> None:
        usage = self._broker.close(run.spec.task_id)
        await self._table.end(
            run, status, output=output, error=error, task_score=task_score, usage=usage
        )
        # The input's last references: the agents' cached copies (the core's goes with the run).
        self._scheduler.forget_input(run)
        # Answers from the memo cache cost nothing: they are not charged as agent calls.
        cached = usage.cached_calls if usage is not None else 0
        charged = max(0, run.completed - cached)
        running = self._scheduler.calls_running(run)
        if running:
            # A call that never polls its cancellation token still holds its agent after the
            # cancel grace: the task has ended for its caller, but its concurrency lease and
            # quota hold stay until the agent is really free (or dies and is restarted), so
            # the caller cannot start more work on agents still busy with this task.
            log.warning(
                "task %s ended (%s) with %d call(s) still running on its agents; its lease "
                "and quota hold are kept until they stop",
                run.spec.task_id,
                status,
                len(running),
            )
            asyncio.get_running_loop().create_task(self._release_when_free(run, running, charged))
        else:
            self._release(run, charged)
        run.done.set()
        # Settling may have crossed a quota threshold; then wake the delivery worker if any
        # event (this task's included) was queued.
        self._hand_over_quota_events()
        self._outbox.flush()

    def _wake_worker(self) -> None:
        # A datagram costs microseconds; an actor call (the fallback) much more.
        if not self._wake.send():
            self._webhooks.kick.remote()

    def _hand_over_quota_events(self) -> None:
        """Move the ledger's threshold events into the webhook outbox (at least once: see
        :mod:`rlm.webhooks.outbox`)."""
        try:
            events = self._gate.quota_events()
            if events:
                self._outbox.quota_events(events)
                self._gate.ack_quota_events([key for key, _, _ in events])
        except Exception:  # never fail a task's ending over it: they stay queued, moved later
            log.exception("could not move quota threshold events to the webhook outbox")

    async def _release_when_free(
        self, run: Run, running: list[asyncio.Future[Any]], charged: int
    ) -> None:
        await asyncio.wait(running)  # each is done once its agent stopped the call, or died
        self._release(run, charged)

    def _release(self, run: Run, charged: int) -> None:
        """Give back what the gate took for the run: its lease, and its hold (settled)."""
        self._gate.release(run.spec.task_id, run.admission)
        self._gate.settle(run.spec.task_id, charged, run.busy_s)


def _count_call(run: Run, reply: LMReply, request: LMRequest) -> None:
    """Count an RLM task's answered LM call as an agent call (live progress too)."""
    run.completed += 1
    run.record = run.record.evolve(completed_calls=run.completed)


def _task_id(task: Run | TaskRecord) -> str:
    return task.spec.task_id if isinstance(task, Run) else task.task_id


def _current_result(record: TaskRecord) -> ExecuteResponse:
    """The task's result once it has ended; before that, where it stands (a task of another
    engine instance on the same state, which this one cannot wait on)."""
    if record.result is not None:
        return record.result
    return ExecuteResponse(
        task_id=record.task_id,
        status=record.status,
        execution_time_ms=0.0,
        agent_calls=record.completed_calls,
        decomposition_depth=0,
        success=False,
    )


#: The core as a Ray actor: async, so thousands of calls and waiters share one event loop.
CoreActor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000)(HypervisorCore)

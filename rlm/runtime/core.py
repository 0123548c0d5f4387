"""The engine core: one singleton actor that owns the task table and runs execution trees.

The core keeps every agent call of every task in one ready queue ordered by priority, and
keeps at most ``agents * calls_per_agent`` calls in flight. A call's inputs are object
references: the task input (one ``ray.put`` by the caller) and its children's partials, which
Ray hands from agent to agent without passing through the core. The core only sees each call's
small ``meta`` answer, and the root's partial, which it finishes into the output.

Why one actor for records and scheduling: an ``execute`` then costs two hops (caller → core →
agent) instead of three, the live progress of a running task sits next to its record, and a
status read needs no second actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import ray
from ray import cloudpickle

from rlm.admission import Admission, Viewer
from rlm.config import Settings
from rlm.errors import InternalError, RLMError, TaskNotFound, TaskTimeout, error_from_payload
from rlm.jsonable import to_jsonable
from rlm.models.quotas import TeamQuotaStatus
from rlm.models.tasks import CancelResponse, ErrorInfo, ExecuteResponse, Priority
from rlm.operations.base import Operation
from rlm.planning import Plan, PlanNode
from rlm.quotas.service import BatchCall, QuotaLedgerService
from rlm.ratelimit import RateLimiter
from rlm.runtime.agents import Agent, AgentActor, CallSpec, ItemsSource
from rlm.scheduling import ReadyQueue
from rlm.scoring import score
from rlm.tasks.record import TaskRecord
from rlm.tasks.store import TaskStore

__all__ = ["Answer", "CoreActor", "HypervisorCore", "TaskSpec"]

log = logging.getLogger(__name__)

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


#: The agent index of the core's in-process agent.
_LOCAL = -1


@dataclass
class TaskSpec:
    """Everything the core needs to run a task, prepared and validated by the caller."""

    task_id: str
    type: str
    description: str
    priority: Priority
    owner_id: str
    org_id: str | None
    team_id: str | None
    request: dict[str, Any]
    operation: Operation
    params: Any
    items: ItemsSource
    plan: Plan
    timeout_ms: int | None
    expected_output: Any = None
    has_expected_output: bool = False


@dataclass
class _Run:
    spec: TaskSpec
    seq: int
    record: TaskRecord
    op_bytes: bytes
    admission: Admission | None = None
    has_input: set[int] = field(default_factory=set)
    sent: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    t0: float = 0.0
    remaining: dict[int, int] = field(default_factory=dict)
    partials: dict[int, Any] = field(default_factory=dict)
    inflight: dict[int, tuple[int, Any, asyncio.Future[Any]]] = field(default_factory=dict)
    completed: int = 0
    busy_s: float = 0.0
    finished: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    timer: asyncio.TimerHandle | None = None


class HypervisorCore:
    """Task table + scheduler; wrapped as :data:`CoreActor`.

    Args:
        settings: The service settings (state directory, engine sizing).
        agents: Pool size; default the cluster's CPU count.
    """

    def __init__(self, settings: Settings, agents: int | None = None) -> None:
        self._settings = settings
        self._instance_id = uuid.uuid4().hex
        self._store = TaskStore(settings.database_path)
        self._store.register_instance(self._instance_id)
        interrupted = self._store.recover_interrupted(self._instance_id)
        if interrupted:
            log.warning("marked %d interrupted task(s) failed", len(interrupted))
        n = agents or settings.engine.agents or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._agents = [AgentActor.remote(i) for i in range(n)]
        self._local = Agent(_LOCAL, in_process=True)
        self._load = [0] * n
        self._down: set[int] = set()
        self._limiter = RateLimiter()
        self._reservations: dict[str, str] = {}
        self._quotas = QuotaLedgerService(settings.state_dir / "quotas.db")
        # No task of a previous engine is still running: give back what they held.
        for held in self._quotas.open_reservations():
            self._quotas.release(held.reservation_id)
        for tokens in self._quotas.open_token_holds():  # their requests died with the engine
            self._quotas.release_tokens(tokens.hold_id)
        self._inflight = 0
        self._ready: ReadyQueue[tuple[_Run, PlanNode]] = ReadyQueue()
        self._runs: dict[str, _Run] = {}
        self._seq = 0
        self._heartbeat_task: asyncio.Task[None] | None = None

    # -- public methods: those marked @_answers return an Answer (see above) ------------------

    async def ready(self) -> dict[str, Any]:
        """Wait until every agent answers; the pool's size and pids."""
        self._ensure_heartbeat()
        pings = await asyncio.gather(*(a.ping.remote() for a in self._agents))
        return {
            "agents": len(self._agents),
            "pids": [p["pid"] for p in pings],
            "corePid": os.getpid(),
        }

    async def agents_busy(self) -> list[dict[str, Any]]:
        """What each agent is doing right now (the core's own agent last)."""
        busy = list(await asyncio.gather(*(a.busy.remote() for a in self._agents)))
        return [*busy, self._local.busy()]

    async def agent_pids(self) -> list[int]:
        """Each agent's process id (tests use it to kill one)."""
        pids: list[int] = (await self.ready())["pids"]
        return pids

    @_answers
    async def admit(self, admission: Admission | None) -> tuple[Any, dict[str, str]]:
        """Count one request against its caller's rate limits."""
        headers = self._admit(admission)
        return None, headers

    @_answers
    async def submit(
        self, spec: TaskSpec, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """Admit, record and queue a task; answers at once with the taskId."""
        headers = self._admit(admission, spec)
        self._start(spec, admission)
        return spec.task_id, headers

    @_answers
    async def execute(
        self, spec: TaskSpec, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """Admit and run a task, and wait for its result, in one call."""
        headers = self._admit(admission, spec)
        run = self._start(spec, admission)
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
        headers = self._admit(admission)
        run = self._runs.get(task_id)
        if run is not None and self._visible(run.record, viewer):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.done.wait(), timeout_s)
            return run.record.result, headers
        record = self._store.get(task_id)
        if record is None or not self._visible(record, viewer):
            raise TaskNotFound(task_id).with_headers(headers)
        return record.result, headers

    @_answers
    async def status(
        self, task_id: str, viewer: Viewer | None, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """The task's status with live progress."""
        headers = self._admit(admission)
        record = self._record(task_id)
        if record is None or not self._visible(record, viewer):
            raise TaskNotFound(task_id).with_headers(headers)
        return record.to_status(), headers

    @_answers
    async def list_tasks(
        self, viewer: Viewer | None, limit: int = 50, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """The newest tasks the viewer may see."""
        headers = self._admit(admission)
        if viewer is None:
            records = self._store.list(limit=limit)
        elif viewer.admin and viewer.org_id is not None:
            records = self._store.list(org_id=viewer.org_id, limit=limit)
            records += [
                r
                for r in self._store.list(owner_id=viewer.user_id, limit=limit)
                if r.org_id != viewer.org_id
            ]
            records = sorted(records, key=lambda r: r.created_at, reverse=True)[:limit]
        else:
            records = self._store.list(owner_id=viewer.user_id, limit=limit)
        return [(self._record(r.task_id) or r).to_status() for r in records], headers

    @_answers
    async def cancel(
        self, task_id: str, viewer: Viewer | None, admission: Admission | None = None
    ) -> tuple[Any, dict[str, str]]:
        """Stop the task's tree; answers once no call of it is running."""
        headers = self._admit(admission)
        run = self._runs.get(task_id)
        if run is None or not self._visible(run.record, viewer):
            record = self._store.get(task_id)
            if record is None or not self._visible(record, viewer):
                response = CancelResponse(
                    task_id=task_id, status="not_found", message="no such task"
                )
            else:
                response = CancelResponse(
                    task_id=task_id,
                    status="already_completed",
                    message=f"the task had already ended ({record.status})",
                )
            return response, headers
        if run.finished:
            await run.done.wait()
            response = CancelResponse(
                task_id=task_id,
                status="already_completed",
                message=f"the task had already ended ({run.record.status})",
            )
            return response, headers
        await self._stop(run, "cancelled", None)
        response = CancelResponse(
            task_id=task_id, status="cancelled", message="the task was cancelled"
        )
        return response, headers

    @_answers
    async def quota(
        self,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        admission: Admission | None = None,
    ) -> tuple[Any, dict[str, str]]:
        """Call a method of the quota ledger (status, check, configure...), admitted first."""
        headers = self._admit(admission)
        try:
            value = getattr(self._quotas, method)(*args, **kwargs)
        except RLMError as err:
            raise err.with_headers(headers) from None
        if isinstance(value, TeamQuotaStatus):
            # Storage is what this service keeps for the team's tasks; the ledger cannot see
            # the task store, so the figure is filled in here.
            value.usage.storage_used = self._store.stored_bytes(team_id=value.team_id) / 1e9
        return value, headers

    @_answers
    async def quota_batch(self, calls: list[BatchCall]) -> tuple[list[Any], dict[str, str]]:
        """Apply many admission calls in one actor call and one commit (see ``batch``).

        Each slot answers ``("ok", value)`` or ``("err", payload)``, like a single call.
        """
        outcomes = self._quotas.batch(calls)
        return [
            ("err", o.to_payload()) if isinstance(o, RLMError) else ("ok", o) for o in outcomes
        ], {}

    async def running(self) -> dict[str, int]:
        """Counts for health checks: tasks running, calls in flight and queued."""
        return {"tasks": len(self._runs), "inflight": self._inflight, "queued": len(self._ready)}

    # -- admission ----------------------------------------------------------------------------

    def _admit(self, admission: Admission | None, spec: TaskSpec | None = None) -> dict[str, str]:
        """Check the request rate (and a task's concurrent agents) and count them, or raise.

        A refused request counts for nothing: the rate is only peeked until every check has
        passed, and the agents are only leased then.
        """
        if admission is None:
            return {}
        rate = self._limiter.peek(admission.key, admission.limits)
        headers = rate.headers()
        if not rate.allowed:
            try:
                rate.raise_if_rejected()
            except RLMError as err:
                raise err.with_headers(headers) from None
        if spec is not None:
            wanted = self._agents_wanted(spec)
            lease = self._limiter.acquire(
                admission.key, wanted, admission.limits.concurrent_agents, lease_id=spec.task_id
            )
            if not lease.allowed:
                try:
                    lease.raise_if_rejected()
                except RLMError as err:
                    raise err.with_headers({"Retry-After": "1"}) from None
            try:
                self._reserve(admission, spec, wanted)
            except RLMError as err:
                self._limiter.release(spec.task_id)
                raise err.with_headers(headers) from None
        counted = self._limiter.check_and_consume(admission.key, admission.limits)
        if not counted.allowed:  # cannot happen in one actor; never run uncounted regardless
            if spec is not None:
                self._limiter.release(spec.task_id)
                self._settle(spec.task_id, 0, 0.0)
            counted.raise_if_rejected()
        return counted.headers()

    def _reserve(self, admission: Admission, spec: TaskSpec, concurrent: int) -> None:
        """Hold the planned agent calls on the user, team and org quotas, all or nothing."""
        if admission.user_id is None:
            return
        team_id = admission.team_id if self._known("team", admission.team_id) else None
        org_id = admission.org_id if self._known("org", admission.org_id) else None
        held = self._quotas.reserve(
            admission.user_id,
            spec.plan.agent_calls,
            tier=admission.tier,
            task_id=spec.task_id,
            team_id=team_id,
            org_id=org_id,
            concurrent_agents=concurrent,
        )
        self._reservations[spec.task_id] = held.reservation_id
        spec.team_id = held.team_id  # the team charged: the ledger's membership, not the claim

    def _known(self, kind: str, name: str | None) -> bool:
        # Tokens may name teams and orgs the operator never loaded. Such a claim counts as no
        # claim: the ledger then charges the team and org it records for the user, so a token
        # cannot take a member out of its team's pool or its org's tree.
        if name is None:
            return False
        try:
            self._quotas.governing_orgs(kind, name)
        except RLMError:
            return False
        return True

    def _settle(self, task_id: str, agent_calls: int, busy_s: float) -> None:
        """Charge what a task actually used and free its hold (once)."""
        reservation = self._reservations.pop(task_id, None)
        if reservation is not None:
            try:
                self._quotas.reconcile(reservation, agent_calls, busy_s / 3600.0)
            except Exception:  # pragma: no cover - never fail a task's ending over it
                log.exception("could not reconcile the quota of task %s", task_id)

    def _agents_wanted(self, spec: TaskSpec) -> int:
        """Agents a task holds at once: one per leaf, at most the pool."""
        if self._runs_locally_spec(spec):
            return 1
        return max(1, min(len(spec.plan.leaves), len(self._agents)))

    # -- scheduling ---------------------------------------------------------------------------

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat_task is None:
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                self._store.heartbeat(self._instance_id)
                self._reap_holds()
            except Exception:  # pragma: no cover - a locked file must not kill the loop
                log.exception("heartbeat failed")

    def _reap_holds(self) -> int:
        """Release quota holds (reservations and token holds) that no running task owns once
        they are ``quota_hold_ttl_s`` old: a front end that reserved (``quota_batch``) and died
        before reconciling must not keep a user's agents leased (or tokens held) forever. A
        running task's hold is never reaped."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self._settings.engine.quota_hold_ttl_s)
        reaped = 0
        for held in self._quotas.open_reservations():
            if held.task_id not in self._reservations and held.created_at <= cutoff:
                self._quotas.release(held.reservation_id)
                reaped += 1
        for tokens in self._quotas.open_token_holds():
            if tokens.task_id not in self._reservations and tokens.created_at <= cutoff:
                self._quotas.release_tokens(tokens.hold_id)
                reaped += 1
        if reaped:
            log.warning("released %d quota hold(s) no running task owned", reaped)
        return reaped

    def _start(self, spec: TaskSpec, admission: Admission | None = None) -> _Run:
        self._ensure_heartbeat()
        if spec.task_id in self._runs or self._store.get(spec.task_id) is not None:
            self._release(spec.task_id, admission)
            self._settle(spec.task_id, 0, 0.0)
            raise InternalError(f"task id {spec.task_id!r} is already taken")
        record = TaskRecord(
            task_id=spec.task_id,
            status="pending",
            created_at=datetime.now(UTC),
            type=spec.type,
            description=spec.description,
            priority=spec.priority,
            owner_id=spec.owner_id,
            org_id=spec.org_id,
            team_id=spec.team_id,
            request=spec.request,
            planned_calls=spec.plan.agent_calls,
            instance_id=self._instance_id,
        )
        self._store.put(record)
        self._seq += 1
        run = _Run(
            spec=spec,
            seq=self._seq,
            record=record,
            op_bytes=cloudpickle.dumps(spec.operation),
            admission=admission,
        )
        run.t0 = time.perf_counter()
        self._runs[spec.task_id] = run
        for node in spec.plan.nodes:
            if node.children:
                run.remaining[node.index] = len(node.children)
            else:
                self._ready.push(
                    (run, node), priority=spec.priority, task_seq=run.seq, order=node.index
                )
        if spec.timeout_ms is not None:
            run.timer = asyncio.get_running_loop().call_later(
                spec.timeout_ms / 1000.0, self._on_timeout, run
            )
        self._pump()
        return run

    def _pump(self) -> None:
        capacity = (len(self._agents) - len(self._down)) * self._settings.engine.calls_per_agent
        while self._inflight < capacity and self._ready:
            run, node = self._ready.pop()
            if run.finished:
                continue
            nodes = [node]
            if not self._runs_locally(run):
                # Share the queue among the free slots: when a task has many short calls ready,
                # several travel in one message to an agent. Only short ones: a batch of long
                # calls would hold an agent past the moment a more urgent task arrives.
                free = capacity - self._inflight
                size = min(
                    self._settings.engine.max_batch,
                    len(self._ready) // free + 1,
                    self._batch_budget(run),
                )
                while len(nodes) < size and self._ready and self._ready.peek()[0] is run:
                    nodes.append(self._ready.pop()[1])
            self._dispatch(run, nodes)

    @staticmethod
    def _items_for(run: _Run, agent: int) -> ItemsSource:
        """The input as this agent should get it: by reference once, then by key."""
        source = run.spec.items
        if source[0] in ("inline", "source"):
            return source
        if agent in run.has_input:
            return ("cached", run.spec.task_id)
        run.has_input.add(agent)
        return ("ref", source[1], run.spec.task_id)

    @staticmethod
    def _batch_budget(run: _Run) -> int:
        """How many of this task's calls fit in one message: about 5 ms of agent time."""
        if run.completed == 0:
            return 1
        mean = run.busy_s / run.completed
        return max(1, int(0.005 / max(mean, 1e-6)))

    def _dispatch(self, run: _Run, nodes: list[PlanNode]) -> None:
        if run.record.status == "pending":
            run.record = run.record.evolve(status="running", started_at=datetime.now(UTC))
        calls: list[CallSpec] = []
        up = [i for i in range(len(self._agents)) if i not in self._down]
        agent = _LOCAL if self._runs_locally(run) else min(up, key=self._load.__getitem__)
        for node in nodes:
            children = tuple(run.partials.pop(c) for c in node.children)
            run.sent[node.index] = children
            items = None if node.kind == "combine" else self._items_for(run, agent)
            calls.append(
                (
                    run.spec.task_id,
                    run.op_bytes,
                    node.kind,
                    items,
                    node.start,
                    node.end,
                    run.spec.params,
                    children,
                )
            )
        single = len(calls) == 1
        if self._runs_locally(run):
            # A one-call task over a small inline input with a built-in operation runs on the
            # core's own agent: the same Agent code, two network hops fewer.
            call = asyncio.get_running_loop().create_task(self._local.run_batch(calls))
            handle: Any = call
            fut: asyncio.Future[Any] = call
            single = False
        else:
            if single:
                # Children's partials as top-level arguments: Ray resolves references itself.
                *head, params, children = calls[0]
                handle = self._agents[agent].run.remote(*head, params, *children)
            else:
                handle = self._agents[agent].run_batch.remote(calls)
            self._load[agent] += 1
            fut = asyncio.wrap_future(handle.future())
        self._inflight += 1
        for node in nodes:
            run.inflight[node.index] = (agent, handle, fut)
        fut.add_done_callback(lambda f: self._on_calls_done(run, nodes, agent, f, single))

    def _runs_locally(self, run: _Run) -> bool:
        return self._runs_locally_spec(run.spec)

    @staticmethod
    def _runs_locally_spec(spec: TaskSpec) -> bool:
        return (
            len(spec.plan.nodes) == 1
            and spec.items[0] == "inline"
            and type(spec.operation).__module__.startswith("rlm.operations.")
        )

    def _on_calls_done(
        self,
        run: _Run,
        nodes: list[PlanNode],
        agent: int,
        fut: asyncio.Future[Any],
        single: bool,
    ) -> None:
        if agent != _LOCAL:
            self._load[agent] -= 1
        self._inflight -= 1
        for node in nodes:
            run.inflight.pop(node.index, None)
        try:
            if run.finished:
                return
            try:
                answer = fut.result()
            except (Exception, asyncio.CancelledError) as err:
                if isinstance(err, ray.exceptions.RayActorError):
                    msg = "an agent worker died while running the task"
                    self._mark_down(agent)
                else:
                    msg = f"an agent call failed: {type(err).__name__}"
                asyncio.get_running_loop().create_task(
                    self._stop(run, "failed", InternalError(msg, {"agent": agent}))
                )
                return
            metas = [answer] if single else answer
            for node, meta in zip(nodes, metas, strict=True):
                if not self._on_call_meta(run, node, meta):
                    return
        finally:
            self._pump()

    def _on_call_meta(self, run: _Run, node: PlanNode, meta: dict[str, Any]) -> bool:
        """Account one finished call; false when the task stops here."""
        run.busy_s += float(meta.get("busyS", 0.0))
        sent = run.sent.pop(node.index, ())
        if meta.get("needInput"):
            # The agent lost the input (it restarted): send the reference again.
            run.has_input.clear()
            run.partials.update(zip(node.children, sent, strict=True))
            self._ready.push(
                (run, node), priority=run.spec.priority, task_seq=run.seq, order=node.index
            )
            return True
        if not meta.get("ok"):
            if not meta.get("cancelled"):
                failure = error_from_payload(meta["error"])
                asyncio.get_running_loop().create_task(self._stop(run, "failed", failure))
            return False
        run.completed += 1
        run.record = run.record.evolve(completed_calls=run.completed)
        partial = meta["partialRef"] if "partialRef" in meta else meta.get("partial")
        if node.parent is None:
            asyncio.get_running_loop().create_task(self._finish(run, partial))
            return True
        run.partials[node.index] = partial
        run.remaining[node.parent] -= 1
        if run.remaining[node.parent] == 0:
            parent = run.spec.plan.nodes[node.parent]
            self._ready.push(
                (run, parent), priority=run.spec.priority, task_seq=run.seq, order=parent.index
            )
        return True

    def _mark_down(self, agent: int) -> None:
        # Ray restarts a dead agent; until it answers again, no call is sent to it (a call
        # sent to the dead process would fail too).
        if agent == _LOCAL or agent in self._down:
            return
        self._down.add(agent)
        asyncio.get_running_loop().create_task(self._revive(agent))

    async def _revive(self, agent: int) -> None:
        while True:
            try:
                await self._agents[agent].ping.remote()
                break
            except Exception:
                await asyncio.sleep(0.2)
        self._down.discard(agent)
        self._pump()

    def _on_timeout(self, run: _Run) -> None:
        if not run.finished:
            timeout_ms = run.spec.timeout_ms
            err = TaskTimeout(
                f"the task ran past its timeout of {timeout_ms} ms and was stopped",
                {"timeoutMs": timeout_ms},
            )
            asyncio.get_running_loop().create_task(self._stop(run, "failed", err))

    async def _finish(self, run: _Run, partial: Any) -> None:
        spec = run.spec
        try:
            if isinstance(partial, ray.ObjectRef):
                partial = await partial
            output = to_jsonable(spec.operation.finish(partial, spec.params))
        except RLMError as err:
            await self._stop(run, "failed", err)
            return
        except Exception as err:
            await self._stop(
                run,
                "failed",
                InternalError(f"finishing the output failed: {type(err).__name__}: {err}"),
            )
            return
        if run.finished:
            return
        task_score = score(output, spec.expected_output) if spec.has_expected_output else None
        self._end(run, "completed", output=output, task_score=task_score)

    async def _stop(self, run: _Run, status: str, error: RLMError | None) -> None:
        if run.finished:
            await run.done.wait()
            return
        run.finished = True
        if run.timer is not None:
            run.timer.cancel()
        # Tell every agent holding a call of this task, cancel the calls, and wait until
        # none of them runs any more, so a cancel leaves nothing of the tree behind.
        pending = list({id(h): (a, h, f) for a, h, f in run.inflight.values()}.values())
        for agent in {a for a, _, _ in pending}:
            if agent == _LOCAL:
                self._local.cancel(run.spec.task_id)
            else:
                self._agents[agent].cancel.remote(run.spec.task_id)
        for _, ref, _ in pending:
            with contextlib.suppress(Exception):
                if isinstance(ref, asyncio.Task):
                    ref.cancel()
                else:
                    ray.cancel(ref, recursive=True)
        if pending:
            await asyncio.wait(
                [f for _, _, f in pending], timeout=self._settings.engine.cancel_grace_s
            )
        run.partials.clear()
        self._end(run, status, error=error)

    def _end(
        self,
        run: _Run,
        status: str,
        *,
        output: Any = None,
        error: RLMError | None = None,
        task_score: float | None = None,
    ) -> None:
        run.finished = True
        if run.timer is not None:
            run.timer.cancel()
        now = datetime.now(UTC)
        result = ExecuteResponse(
            task_id=run.spec.task_id,
            status=status,  # type: ignore[arg-type]
            output=output,
            execution_time_ms=round((time.perf_counter() - run.t0) * 1000.0, 3),
            agent_calls=run.completed,
            decomposition_depth=run.spec.plan.depth if status == "completed" else 0,
            success=status == "completed" and (task_score is None or task_score >= 1.0),
            score=task_score,
            error=None
            if error is None
            else ErrorInfo(code=error.code, message=error.message, details=error.details or None),
        )
        run.record = run.record.evolve(
            status=status,
            completed_at=now,
            started_at=run.record.started_at or now,
            completed_calls=run.completed,
            result=result,
        )
        try:
            self._store.put(run.record)
        except Exception:  # pragma: no cover - the waiter still gets the result
            log.exception("could not persist the record of task %s", run.spec.task_id)
        self._runs.pop(run.spec.task_id, None)
        self._release(run.spec.task_id, run.admission)
        self._settle(run.spec.task_id, run.completed, run.busy_s)
        run.done.set()

    def _release(self, task_id: str, admission: Admission | None) -> None:
        if admission is not None:
            self._limiter.release(task_id)

    # -- helpers ------------------------------------------------------------------------------

    def _record(self, task_id: str) -> TaskRecord | None:
        run = self._runs.get(task_id)
        return run.record if run is not None else self._store.get(task_id)

    @staticmethod
    def _visible(record: TaskRecord, viewer: Viewer | None) -> bool:
        return viewer is None or viewer.may_see(record.owner_id, record.org_id)


#: The core as a Ray actor: async, so thousands of calls and waiters share one event loop.
CoreActor = ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=10_000)(HypervisorCore)

"""The scheduler: the agent pool, the ready queue, and the dispatch of agent calls.

Every agent call of every task waits in a ready queue ordered by priority, and at most
``agents * calls_per_agent`` calls are in flight (:meth:`Scheduler._capacity`). Calls of
operations that call a language model wait on the network, not on a CPU: they have their own
queue and capacity (``lm.max_inflight_calls``), run on the agents' LM threads, and the
providers' gateways decide how many are sent at once. A call's inputs
are object references: the task input (one ``ray.put`` by the caller) and its children's
partials, which Ray hands from agent to agent without passing through the core. The scheduler
only sees each call's small ``meta`` answer; the root's partial goes back to the core
(``finish``), which finishes it into the output, and so does a call's failure (``stop``).

Two shortcuts keep a tree of short calls from paying a Ray round trip per call. A built-in
operation's combine over small partials (values, not object references) runs on the core's
in-process agent, outside the pool's capacity: it adds a few numbers or merges a few short
lists, far less than the message to an agent would cost, and the tree's last levels no longer
wait on a round trip each. And a vectorised built-in operation's first leaves already travel
in batches, sized from the items they hold (:func:`_first_batch`), instead of one a message
until the task's first answer tells the scheduler how long a call takes.

A task smaller still runs entirely in the core (:meth:`Scheduler.runs_in_core`): a built-in
operation that declares its cost per item (:attr:`~rlm.operations.base.Operation.leaf_item_s`)
over an input whose whole cost is under one message's budget (:data:`_BATCH_S`). Its leaves
run in one batch on the core's loop, reading the input zero-copy from the object store: a
message to an agent and back would cost more than the work. Past the cut-off the pool's
parallelism is worth its messages, and the leaves go to the agents.

Every call sent and every call finished is marked on its run's progress tracker; one
``nodes.started`` and one ``task.progress`` event go out per throttle interval for all the calls
sent and finished in it (:mod:`rlm.tasks.progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import ray

from rlm.config import EngineSettings
from rlm.errors import InternalError, RLMError, error_from_payload
from rlm.operations.base import Operation, is_builtin
from rlm.planning import Plan, PlanNode
from rlm.runtime.agents import Agent, AgentActor, CallSpec, ItemsSource, LMCall
from rlm.runtime.placement import agent_options
from rlm.runtime.run import Run, TaskSpec
from rlm.scheduling import ReadyQueue

__all__ = ["Scheduler", "builtin", "fits_in_core"]

#: The agent index of the core's in-process agent.
_LOCAL = -1

#: Seconds a vectorised built-in call is taken to cost per item before one has answered
#: (numpy sums a float64 in under a nanosecond; this errs long), and at least per call.
_ITEM_S = 2e-9
_CALL_S = 50e-6

#: Agent time one message of a task's calls carries at most (seconds).
_BATCH_S = 0.005

#: What one call costs the core's loop beyond its items when a task runs in the core (its
#: tuple, its meta, its progress mark): a task of many tiny calls stays on the pool.
_CORE_CALL_S = 20e-6

#: How long a probe of the pool waits for an agent's answer before taking it as alive.
_PROBE_S = 2.0

#: How long a ping waits for an agent Ray is restarting (on a node that is gone, Ray first
#: has to declare the node dead: tens of seconds).
_RESTART_WAIT_S = 120.0

#: What the scheduler hands a run back with: its root partial, or why it stops.
Finish = Callable[[Run, Any], Coroutine[Any, Any, None]]
Stop = Callable[[Run, str, RLMError | None], Coroutine[Any, Any, None]]


class Scheduler:
    """The agent pool and the calls queued for it.

    Args:
        settings: Engine sizing (calls per agent, batch size, cancel grace).
        agents: Pool size; default the cluster's CPU count.
        finish: Called (as a task) with a run and its root's partial.
        stop: Called (as a task) with a run that must stop, its status and error.
    """

    def __init__(
        self,
        settings: EngineSettings,
        agents: int | None,
        *,
        finish: Finish,
        stop: Stop,
        core: Any = None,
        lm_call: LMCall | None = None,
        lm_capacity: int = 256,
    ) -> None:
        self._settings = settings
        self._finish = finish
        self._stop = stop
        n = agents or settings.agents or max(1, int(ray.cluster_resources().get("CPU", 1)))
        lm_threads = max(1, -(-lm_capacity // n))
        # Spread over the nodes: a task's calls use the whole cluster, and losing a node loses
        # only its share of the pool (Ray restarts those agents on the nodes left).
        self._agents = [
            AgentActor.options(**options).remote(i, core=core, lm_threads=lm_threads)
            for i, options in enumerate(agent_options(n))
        ]
        self._local = Agent(_LOCAL, in_process=True, lm_call=lm_call, lm_threads=lm_capacity)
        self._load = [0] * n
        self._lm_load = [0] * n
        self._down: set[int] = set()
        self._probe: asyncio.Task[None] | None = None
        self._inflight = 0
        self._inflight_lm = 0
        self._lm_capacity = lm_capacity
        self._ready: ReadyQueue[tuple[Run, PlanNode]] = ReadyQueue()
        self._ready_lm: ReadyQueue[tuple[Run, PlanNode]] = ReadyQueue()

    # -- the pool -----------------------------------------------------------------------------

    async def ping(self) -> list[dict[str, Any]]:
        """Wait until every agent answers (one Ray is restarting answers once it is back)."""
        return list(await asyncio.gather(*(self._ping(a) for a in self._agents)))

    @staticmethod
    async def _ping(agent: Any) -> dict[str, Any]:
        deadline = time.monotonic() + _RESTART_WAIT_S
        while True:
            try:
                answer: dict[str, Any] = await agent.ping.remote()
                return answer
            except ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def busy(self) -> list[dict[str, Any]]:
        """What each agent is doing right now (the core's own agent last)."""
        busy = list(await asyncio.gather(*(a.busy.remote() for a in self._agents)))
        return [*busy, self._local.busy()]

    def counts(self) -> dict[str, int]:
        """Calls in flight and queued."""
        return {
            "inflight": self._inflight + self._inflight_lm,
            "queued": len(self._ready) + len(self._ready_lm),
        }

    def agents_wanted(self, spec: TaskSpec) -> int:
        """Agents a task holds at once: one per leaf, at most the pool."""
        if self.runs_locally(spec):
            return 1
        return max(1, min(len(spec.plan.leaves), len(self._agents)))

    @staticmethod
    def runs_locally(spec: TaskSpec) -> bool:
        """Whether the task runs on the core's in-process agent.

        Only built-in operations do (no user code runs in the core): a one-call task over a
        small inline input, and every call of a built-in LM operation — those build a prompt
        and read a reply, and on the core's agent a request reaches the broker without two
        Ray hops each way. User-registered LM operations run on the agent actors.
        """
        if not builtin(spec.operation):
            return False
        if spec.operation.uses_lm:
            return True
        if Scheduler.runs_in_core(spec):
            return True
        return len(spec.plan.nodes) == 1 and spec.items[0] == "inline"

    @staticmethod
    def runs_in_core(spec: TaskSpec) -> bool:
        """Whether the whole task runs on the core's loop, leaves and combines.

        A built-in operation with a known cost per item, over an input in the call or in the
        object store whose items cost at most one message's budget (:data:`_BATCH_S`) in all.
        """
        return spec.items[0] in ("inline", "ref") and fits_in_core(spec.operation, spec.plan)

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

    async def _find_down(self) -> None:
        """Ask every agent that is up whether it still answers, at most one probe at a time.

        A lost node takes all its agents at once, but the scheduler hears of each death only
        when a call to it fails: before a lost call is sent again, the others are asked, so
        the call goes to an agent that is alive.
        """
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._probe_pool())
        await asyncio.shield(self._probe)

    async def _probe_pool(self) -> None:
        try:
            up = self._up()
            answers = await asyncio.gather(*(self._answers(i) for i in up))
            for agent, alive in zip(up, answers, strict=True):
                if not alive:
                    self._mark_down(agent)
        finally:
            self._probe = None

    async def _answers(self, agent: int) -> bool:
        try:
            await asyncio.wait_for(self._agents[agent].ping.remote(), _PROBE_S)
        except ray.exceptions.RayActorError:
            return False
        except Exception:
            # A slow answer is not a death: a busy node is still a node.
            return True
        return True

    def _may_resend(self, run: Run, nodes: list[PlanNode]) -> bool:
        """Whether the calls lost with an agent's worker go to another agent.

        Built-in and Python operations are functions of their inputs, so sending a call again
        gives the same answer (Ray retries its tasks on a lost worker the same way). A model
        call is never sent twice: the first may have been answered, and paid for.
        """
        if run.finished or run.spec.operation.uses_lm:
            return False
        retries = self._settings.call_retries
        return all(run.lost.get(node.index, 0) < retries for node in nodes)

    async def _resend(self, run: Run, nodes: list[PlanNode], agent: int) -> None:
        await self._find_down()
        if run.finished:
            return
        # The dead worker's cache of the task input went with it.
        run.has_input.discard(agent)
        for node in nodes:
            self._requeue(run, node, run.sent.pop(node.index, ()))
        self._pump()

    def _requeue(self, run: Run, node: PlanNode, sent: tuple[Any, ...]) -> None:
        """Queue ``node`` again, with the children's partials its lost call was sent."""
        run.partials.update(zip(node.children, sent, strict=True))
        self._push(run, node)

    # -- queue and dispatch -------------------------------------------------------------------

    def add(self, run: Run) -> None:
        """Queue a new run's leaves and send what the pool has room for."""
        for node in run.spec.plan.nodes:
            if node.children:
                run.remaining[node.index] = len(node.children)
            else:
                self._push(run, node)
        self._pump()

    def _push(self, run: Run, node: PlanNode) -> None:
        if self._combines_locally(run, node):
            self._dispatch(run, [node], local=True)
            return
        queue = self._ready_lm if run.spec.operation.uses_lm else self._ready
        queue.push((run, node), priority=run.spec.priority, task_seq=run.seq, order=node.index)

    def _capacity(self) -> int:
        """Agent calls the pool takes at once: a few per agent that is up."""
        return (len(self._agents) - len(self._down)) * self._settings.calls_per_agent

    def _pump(self) -> None:
        self._pump_lm()
        capacity = self._capacity()
        while self._inflight < capacity and self._ready:
            run, node = self._ready.pop()
            if run.finished:
                continue
            nodes = [node]
            if self.runs_in_core(run.spec):
                # Its leaves cost one message's budget in all: one batch on the core's loop.
                while self._ready and self._ready.peek()[0] is run:
                    nodes.append(self._ready.pop()[1])
            elif not self.runs_locally(run.spec):
                # Share the queue among the free slots: when a task has many short calls ready,
                # several travel in one message to an agent. Only short ones: a batch of long
                # calls would hold an agent past the moment a more urgent task arrives.
                free = capacity - self._inflight
                size = min(
                    self._settings.max_batch,
                    len(self._ready) // free + 1,
                    self._batch_budget(run, node),
                )
                while len(nodes) < size and self._ready and self._ready.peek()[0] is run:
                    nodes.append(self._ready.pop()[1])
            self._dispatch(run, nodes)

    def _pump_lm(self) -> None:
        # One call a message: each waits on a model for far longer than a message costs.
        while self._inflight_lm < self._lm_capacity and self._ready_lm:
            run, node = self._ready_lm.peek()
            if not self.runs_locally(run.spec) and not self._up():
                return
            self._ready_lm.pop()
            if not run.finished:
                self._dispatch(run, [node])

    def _up(self) -> list[int]:
        return [i for i in range(len(self._agents)) if i not in self._down]

    @staticmethod
    def _items_for(run: Run, agent: int) -> ItemsSource:
        """The input as this agent should get it: by reference once, then by key."""
        source = run.spec.items
        if source[0] in ("inline", "source"):
            return source
        if agent in run.has_input:
            return ("cached", run.spec.task_id)
        run.has_input.add(agent)
        return ("ref", source[1], run.spec.task_id)

    @staticmethod
    def _batch_budget(run: Run, node: PlanNode) -> int:
        """How many of this task's calls fit in one message: about 5 ms of agent time."""
        if run.completed == 0:
            return _first_batch(run.spec, node)
        mean = run.busy_s / run.completed
        return max(1, int(_BATCH_S / max(mean, 1e-6)))

    @staticmethod
    def _combines_locally(run: Run, node: PlanNode) -> bool:
        """Whether ``node`` is a combine the core's in-process agent runs (see the module):
        a built-in operation's, not an LM operation's (those have their own queue), every
        child's partial a value rather than an object reference (a large partial stays out of
        the core)."""
        if node.kind != "combine" or run.spec.operation.uses_lm:
            return False
        if not builtin(run.spec.operation):
            return False
        partials = run.partials
        return all(not isinstance(partials.get(c), ray.ObjectRef) for c in node.children)

    def _dispatch(self, run: Run, nodes: list[PlanNode], *, local: bool = False) -> None:
        """Send ``nodes`` (calls of one run) to an agent in one message.

        Args:
            run: The run.
            nodes: Its calls, ready.
            local: A combine for the core's agent outside the pool's capacity (see
                :meth:`_combines_locally`); the run's own calls go there too when the whole
                run does (:meth:`runs_locally`), and then count against the capacity.
        """
        if run.record.status == "pending":
            run.record = run.record.evolve(status="running", started_at=datetime.now(UTC))
        calls: list[CallSpec] = []
        # Whose slot the calls take: the LM calls', the pool's, or none (a local combine).
        counted = not local
        local = local or self.runs_locally(run.spec)
        lm = run.spec.operation.uses_lm
        load = self._lm_load if lm else self._load
        agent = _LOCAL if local else min(self._up(), key=load.__getitem__)
        for node in nodes:
            children = tuple(run.partials.pop(c) for c in node.children)
            run.sent[node.index] = children
            items = None if node.kind == "combine" else self._items_for(run, agent)
            calls.append(
                (
                    run.spec.task_id,
                    run.spec.operation if local else run.pickled_operation(),
                    node.kind,
                    items,
                    node.start,
                    node.end,
                    run.spec.params,
                    children,
                )
            )
        single = len(calls) == 1
        if not counted:
            # A built-in combine over values takes microseconds: run here, now, rather than
            # hand it to the agent's thread and back (on a loaded machine, each hand-over
            # waits for the thread to get a core). Answered through a done future, as a call.
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(self._local.run_inline(calls))
            handle: Any = fut
            single = False
        elif local:
            # A one-call task over a small inline input with a built-in operation runs on the
            # core's own agent: the same Agent code, two network hops fewer.
            # A task within one message's budget runs on the loop itself (no thread hand-over).
            on_loop = self.runs_in_core(run.spec)
            call = asyncio.get_running_loop().create_task(
                self._local.run_batch(calls, on_loop=on_loop)
            )
            handle = call
            fut = call
            single = False
        else:
            if single:
                # Children's partials as top-level arguments: Ray resolves references itself.
                *head, params, children = calls[0]
                handle = self._agents[agent].run.remote(*head, params, *children)
            else:
                handle = self._agents[agent].run_batch.remote(calls)
            load[agent] += 1
            fut = asyncio.wrap_future(handle.future())
        if counted and lm:
            self._inflight_lm += 1
        elif counted:
            self._inflight += 1
        for node in nodes:
            run.inflight[node.index] = (agent, handle, fut)
            run.progress.start(node.index, node.depth)
        fut.add_done_callback(lambda f: self._on_calls_done(run, nodes, agent, f, single, counted))
        # Not at once: every call this pump sends goes in the same nodes.started event.
        self._progress(run, soon=True)

    # -- answers ------------------------------------------------------------------------------

    def _on_calls_done(
        self,
        run: Run,
        nodes: list[PlanNode],
        agent: int,
        fut: asyncio.Future[Any],
        single: bool,
        counted: bool = True,
    ) -> None:
        lm = run.spec.operation.uses_lm
        if agent != _LOCAL:
            (self._lm_load if lm else self._load)[agent] -= 1
        if counted and lm:
            self._inflight_lm -= 1
        elif counted:
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
                    self._mark_down(agent)
                    if self._may_resend(run, nodes):
                        for node in nodes:
                            run.lost[node.index] = run.lost.get(node.index, 0) + 1
                        asyncio.get_running_loop().create_task(self._resend(run, nodes, agent))
                        return
                    msg = "an agent worker died while running the task"
                elif isinstance(err, ray.exceptions.ObjectLostError):
                    # A large partial lives in the object store of the worker that made it.
                    msg = "a partial result was lost with the worker that held it"
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
            self._progress(run)
        finally:
            self._pump()

    def _progress(self, run: Run, *, soon: bool = False) -> None:
        """Send the run's progress now, or arm one timer for when the throttle allows it
        (``soon``: a timer even when it allows it now, so the calls sent by the rest of this
        turn of the loop go in the same events)."""
        if run.finished or run.progress_timer is not None or not run.progress.pending:
            return
        wait = run.progress.wait_s(time.monotonic())
        if wait <= 0.0 and not soon:
            run.report_progress()
        else:
            loop = asyncio.get_running_loop()
            run.progress_timer = loop.call_later(wait, self._progress_due, run)

    @staticmethod
    def _progress_due(run: Run) -> None:
        run.progress_timer = None
        if not run.finished:
            run.report_progress()

    def _on_call_meta(self, run: Run, node: PlanNode, meta: dict[str, Any]) -> bool:
        """Account one finished call; false when the task stops here."""
        run.busy_s += float(meta.get("busyS", 0.0))
        sent = run.sent.pop(node.index, ())
        if meta.get("needInput"):
            # The agent lost the input (it restarted): send the reference again.
            run.has_input.clear()
            self._requeue(run, node, sent)
            return True
        if not meta.get("ok"):
            if not meta.get("cancelled"):
                failure = error_from_payload(meta["error"])
                asyncio.get_running_loop().create_task(self._stop(run, "failed", failure))
            return False
        # An LM operation's agent call is its LM request: a call that sent k requests (a
        # retry of an unparsable answer, say) counts k; one that sent none still counts one.
        run.completed += max(1, int(meta.get("lmCalls", 1)))
        run.record = run.record.evolve(completed_calls=run.completed)
        run.progress.mark(node.index, node.depth)
        partial = meta["partialRef"] if "partialRef" in meta else meta.get("partial")
        if node.parent is None:
            asyncio.get_running_loop().create_task(self._finish(run, partial))
            return True
        run.partials[node.index] = partial
        run.remaining[node.parent] -= 1
        if run.remaining[node.parent] == 0:
            self._push(run, run.spec.plan.nodes[node.parent])
        return True

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, run: Run) -> None:
        """Stop the run's calls in flight and wait (``cancel_grace_s`` at most) until none runs.

        The caller marks the run finished first, so nothing of it is sent any more.
        """
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
            await asyncio.wait([f for _, _, f in pending], timeout=self._settings.cancel_grace_s)

    def forget_input(self, run: Run) -> None:
        """Tell the agents that cached the run's input to drop it (the task has ended).

        An agent keeps a few inputs deserialised for a task's later calls; a numpy input is a
        view of the object store's memory, which stays in use while the view lives.
        """
        for agent in run.has_input:
            if agent == _LOCAL:
                self._local.forget(run.spec.task_id)
            elif agent not in self._down:
                self._agents[agent].forget.remote(run.spec.task_id)
        run.has_input.clear()

    @staticmethod
    def calls_running(run: Run) -> list[asyncio.Future[Any]]:
        """The run's calls an agent still runs (after a cancel: those that never polled).

        Each future is done once its agent has really stopped the call, or died.
        """
        return list({id(f): f for _, _, f in run.inflight.values() if not f.done()}.values())


def builtin(op: Operation) -> bool:
    """Whether ``op`` is one of the engine's own operations (see :func:`is_builtin`)."""
    return is_builtin(op)


def fits_in_core(op: Operation, plan: Plan) -> bool:
    """Whether ``op`` over ``plan`` costs at most one message's budget in all: its items at
    the declared cost, and each call's own cost in the core (:data:`_CORE_CALL_S`).

    Only a built-in operation that declares its cost per item
    (:attr:`~rlm.operations.base.Operation.leaf_item_s`), not an LM one.
    """
    item_s = op.leaf_item_s
    if item_s is None or op.uses_lm or not builtin(op):
        return False
    return plan.n_items * item_s + len(plan.nodes) * _CORE_CALL_S <= _BATCH_S


def _first_batch(spec: TaskSpec, node: PlanNode) -> int:
    """How many of a task's calls one message carries before any has answered.

    A vectorised built-in operation (numbers, numpy) costs about its items' count in
    nanoseconds: its first leaves go in batches worth :data:`_BATCH_S` of that. Any other
    operation's cost is unknown until a call answers: one a message.
    """
    op = spec.operation
    if node.kind != "leaf" or op.input_kind != "numbers" or not builtin(op):
        return 1
    guess = max(_CALL_S, (node.end - node.start) * _ITEM_S)
    return max(1, int(_BATCH_S / guess))

"""One RLM task as a tree of sessions: the root, its sub-calls and its child RLMs.

Pure (threads and sandboxes, no Ray): the session host wraps a :class:`SessionTree` with the
ports it needs — an :class:`LMPort` that sends LM requests (through the core's broker, which
reserves budgets and quotas before anything is sent), a :class:`SandboxSource` of fresh
sandboxes, and an event sink — so unit tests can run a whole tree against a scripted model and
real sandboxes.

Each RLM (the root, and each child ``rlm_query`` starts) is a :func:`~rlm.rlmmode.loop.run_loop`
over its own sandbox, never shared. Inside a cell, the REPL's functions reach
:meth:`_Session.on_call` on the host:

* ``llm_query`` / ``llm_query_batched``: one batch of LM requests at depth + 1, with the task's
  ``subModel`` (or the model the code names); all sent at once, so a batch fans out as far as
  the provider's concurrency allows. A request that fails answers ``"Error: …"`` to the code,
  as in the reference;
* ``rlm_query`` / ``rlm_query_batched``: a child RLM per prompt, one level deeper, each with
  its own sandbox (at most ``max_children_in_flight`` at once), while ``depth + 1 <
  max_depth``; at the cap they answer as ``llm_query`` does (the reference's rule). A child
  that fails answers ``"Error: Child RLM completion failed - …"``.

A cell's wall time (``cell_timeout_s``) bounds everything the cell waits for, not only its own
code: each LM batch it sends is given the time the cell has left (the port stops the batch's
calls in flight when it runs out, and the code is answered ``"Error: …"``), and a child RLM
started from the cell lives under the same deadline — its turns, cells and sub-calls get at
most what is left of its parent's cell; past it the child fails and its parent's code gets
``"Error: Child RLM completion failed - …"``. The sandbox then interrupts the cell as for any
cell past its wall time.

What ends the whole tree: :meth:`SessionTree.stop` (cancel, timeout: every sandbox is killed,
every call in flight was already stopped by the broker) and a *fatal* error — a budget or
quota refusal (``QUOTA_EXCEEDED``), a prompt the org's input policies refuse
(``INVALID_INPUT``), or any failure of a root turn — which stops the tree the same way and
becomes the task's error.

Security: every text an RLM sends to a model passes a :class:`PromptCheck` first (the host
binds it to :class:`rlm.runtime.security.PromptGuard`: the org's input policies, violations
recorded): each turn's new user message (turn 1's query and metadata, later turns' cell
feedback, the last call) and every ``llm_query``/``rlm_query`` prompt of a batch, all before
any of them is sent. A critical violation refuses the *task*, not only the call (issue #11:
"a critical violation refuses the task"): nothing of that batch or turn is sent, the tree
stops, and the task fails 400 ``INVALID_INPUT`` with the violations in its details. Each
cell that ran into a limit of its sandbox (:func:`rlm.sandbox.violations.cell_violation`) is
reported to a :data:`ViolationSink` (the host records a ``sandbox.violation``).

Depth: the root's turns are at depth 0; a sub-call of an RLM at depth ``d`` is at ``d + 1``
(a child RLM's turns count at the child's depth). :attr:`TreeResult.depth` is the deepest
depth of an answered call: the task's ``decompositionDepth``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from rlm.errors import InternalError, InvalidInput, QuotaExceeded, RLMError, TaskTimeout
from rlm.lm.calls import LMRequest
from rlm.rlmmode.loop import Completion, LoopConfig, LoopResult, Messages, clip, run_loop
from rlm.rlmmode.request import RLMParams
from rlm.sandbox.errors import SandboxDead
from rlm.sandbox.host import CellResult, HostCall, Lookup, Sandbox
from rlm.sandbox.violations import SandboxViolation, cell_violation

__all__ = [
    "EventBatchSink",
    "LMOutcome",
    "LMPort",
    "PromptCheck",
    "SandboxSource",
    "SessionStopped",
    "SessionTree",
    "TreeResult",
    "ViolationSink",
    "cell_timed_out",
]

#: Digests of at most this many prompts are listed in an ``rlm.subcalls`` event.
_MAX_DIGESTS = 64
_RESTARTED = (
    "\nThe REPL process was stopped and a fresh one started: every variable is lost; "
    "`context` is set again."
)


class SessionStopped(Exception):  # a signal, not an error: the task was stopped
    """The task was cancelled, timed out, or failed elsewhere in its tree."""


@dataclass(frozen=True, slots=True)
class LMOutcome:
    """One LM request's outcome: answered, refused or failed, or stopped with its task."""

    completion: Completion | None = None
    error: RLMError | None = None
    stopped: bool = False


class LMPort(Protocol):
    """Sends a task's LM requests (the core's broker: budgets, quotas, memo, gateways)."""

    def complete(
        self, requests: Sequence[LMRequest], *, extra: bool, timeout_s: float | None = None
    ) -> list[LMOutcome]:
        """Send ``requests`` at once; one outcome each, in order.

        ``extra``: calls beyond the one the task's admission held, held on the quotas first.
        ``timeout_s``: the time the calling cell has left (``None``: no bound but the
        task's); past it the calls still in flight are stopped (never charged) and answer
        a :class:`~rlm.errors.TaskTimeout` error.
        """
        ...


class SandboxSource(Protocol):
    """Fresh sandboxes: each serves one RLM and is closed after."""

    def take(self, on_call: HostCall) -> Sandbox:
        """A started sandbox whose host calls go to ``on_call``."""
        ...


#: Receives a batch of events ``[(type, data), ...]`` (fire and forget; it must not block:
#: it is called under the tree's event lock, in the order the batches were made).
EventBatchSink = Callable[[list[tuple[str, dict[str, Any]]]], None]


class PromptCheck(Protocol):
    """Checks the texts an RLM is about to send against the org's input policies."""

    def check(self, texts: Sequence[str], field: str) -> None:
        """Record what the policies find in ``texts``; refuse them all on a critical one.

        Args:
            texts: The prompts of one batch, or one turn's new message.
            field: Where they come from (``rlm.turn``, ``rlm.llm_query_batched``...); a
                batch's violations name ``field[i]``.

        Raises:
            InvalidInput: refused, with the violations in ``details``.
        """
        ...


#: Receives each cell that ran into a sandbox limit: ``(violation, facts)``, where the facts
#: are the RLM's ``path``, ``depth``, ``turn``, ``killedReason`` and ``durationMs`` (never the
#: code or its output).
ViolationSink = Callable[[SandboxViolation, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class TreeResult:
    """How an RLM task's tree ended well.

    Attributes:
        answer: The root's answer.
        turns: The root's turns.
        depth: The deepest depth of an answered call (``decompositionDepth``).
        forced: Whether the root's answer came from the last call at ``maxIterations``.
    """

    answer: str
    turns: int
    depth: int
    forced: bool


def cell_timed_out(cell_timeout_s: float) -> TaskTimeout:
    """The error of a call the cell's wall time stopped (or never let start)."""
    return TaskTimeout(
        f"the cell's wall time ({cell_timeout_s:g} s) ran out before this call was answered"
    )


def _left(deadline: float | None) -> float | None:
    """Seconds to ``deadline`` (never negative), or ``None`` for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _fatal(error: RLMError) -> bool:
    """Errors that end the task rather than answer ``"Error: …"`` to the code."""
    return isinstance(error, QuotaExceeded)


def _unchecked(texts: Sequence[str], field: str) -> None:
    """No policies (a tree built without a :class:`PromptCheck`)."""


class _Events:
    """The tree's events, batched: sub-call batches ride with the next cell or turn.

    The sink is called under the lock, so batches from the tree's threads (a child RLM runs
    on its own) reach it in the order they were made; a sink that numbers them (the session
    host) numbers them in that order.
    """

    def __init__(self, sink: EventBatchSink | None) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        if self._sink is None:
            return
        with self._lock:
            self._pending.append((type_, data))
            if type_ == "rlm.subcalls":
                return
            batch, self._pending = self._pending, []
            self._sink(batch)

    def flush(self) -> None:
        if self._sink is None:
            return
        with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                self._sink(batch)


class SessionTree:
    """The sessions of one RLM task, on one host.

    Args:
        params: The task's validated parameters (``model`` and ``sub_model`` resolved).
        lm: Where LM requests go.
        sandboxes: Where fresh sandboxes come from.
        events: Where event batches go (``None``: nowhere).
        cell_timeout_s: Wall time of a cell, sub-calls included.
        cell_cpu_s: CPU time of a cell.
        max_children_in_flight: Child RLMs of one batch run at once.
        first_call_held: Whether the task's admission held its first LM call (the root's
            first turn); every other call is held as it is sent.
        guard: Checks every text before it is sent (``None``: no policies, e.g. in tests).
        on_violation: Receives each cell that ran into a sandbox limit.
    """

    def __init__(
        self,
        params: RLMParams,
        lm: LMPort,
        sandboxes: SandboxSource,
        events: EventBatchSink | None = None,
        *,
        cell_timeout_s: float = 600.0,
        cell_cpu_s: int = 120,
        max_children_in_flight: int = 16,
        first_call_held: bool = True,
        guard: PromptCheck | None = None,
        on_violation: ViolationSink | None = None,
    ) -> None:
        self.params = params
        self._lm = lm
        self._sandboxes = sandboxes
        self.events = _Events(events)
        self.cell_timeout_s = cell_timeout_s
        self.cell_cpu_s = cell_cpu_s
        self.max_children_in_flight = max_children_in_flight
        self._held = 1 if first_call_held else 0
        self._lock = threading.Lock()
        self._boxes: set[Sandbox] = set()
        self._stopped = threading.Event()
        self.fatal: RLMError | None = None
        self.depth = 0
        self._check = guard.check if guard is not None else _unchecked
        self._on_violation = on_violation

    # -- the task's life ----------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """Whether the tree was stopped (cancel, timeout, a fatal error)."""
        return self._stopped.is_set()

    def run(self, context: Any) -> TreeResult:
        """Run the root RLM over ``context`` on the calling thread, until it answers.

        Raises:
            RLMError: The tree's fatal error (a spent budget or quota, a failed root turn,
                a sandbox that could not start).
            SessionStopped: The tree was stopped from outside.
        """
        root = _Session(self, "0", 0, self.params.query, context, self.params.model)
        try:
            result = root.run()
        except SessionStopped:
            if self.fatal is not None:
                raise self.fatal from None
            raise
        except RLMError as err:
            self.fail(err)
            raise
        finally:
            self.events.flush()
        return TreeResult(result.answer, result.turns, self.depth, result.forced)

    def stop(self) -> None:
        """Stop every session: no new call is made, every sandbox is killed (any thread)."""
        self._stopped.set()
        with self._lock:
            boxes = list(self._boxes)
        for box in boxes:
            box.kill()

    def fail(self, error: RLMError) -> None:
        """End the tree with ``error`` (the first one wins), stopping every session."""
        with self._lock:
            if self.fatal is None:
                self.fatal = error
        self.stop()

    def check(self) -> None:
        """Raise :class:`SessionStopped` once the tree is stopped."""
        if self._stopped.is_set():
            raise SessionStopped()

    def screen(self, texts: Sequence[str], field: str) -> None:
        """Pass texts about to be sent through the guard; a refusal ends the whole tree.

        Raises:
            SessionStopped: refused (the refusal is :attr:`fatal`, the task's error).
        """
        try:
            self._check(texts, field)
        except InvalidInput as err:
            self.fail(err)
            raise SessionStopped() from None

    def report(self, cell: CellResult, facts: dict[str, Any]) -> None:
        """Report a cell that ran into a sandbox limit (nothing for any other cell)."""
        if self._on_violation is None:
            return
        violation = cell_violation(cell)
        if violation is not None:
            self._on_violation(
                violation,
                {
                    **facts,
                    "killedReason": cell.killed_reason,
                    "durationMs": round(cell.duration_ms, 3),
                },
            )

    def sandboxes(self) -> list[Sandbox]:
        """The sandboxes in use now."""
        with self._lock:
            return list(self._boxes)

    # -- resources ----------------------------------------------------------------------------

    def take_sandbox(self, on_call: HostCall, context: Any) -> Sandbox:
        """A fresh sandbox holding ``context``, registered so :meth:`stop` can kill it."""
        box = self._take_registered(on_call)
        try:
            box.set_context(context)
        except BaseException:
            self.release(box)
            raise
        return box

    def take_sandbox_filling(self, on_call: HostCall, context: Any) -> tuple[Sandbox, Future[None]]:
        """A fresh sandbox, registered, whose ``context`` is set on a thread of its own.

        The root's first turn needs only the context's metadata, so its LM call goes out while
        the context travels into the REPL; wait for the future before the sandbox's first use
        (it raises what :meth:`Sandbox.set_context` raised).
        """
        box = self._take_registered(on_call)
        filled: Future[None] = Future()

        def fill() -> None:
            try:
                box.set_context(context)
            except BaseException as exc:  # handed to the session's thread
                filled.set_exception(exc)
            else:
                filled.set_result(None)

        threading.Thread(target=fill, name="rlm-context", daemon=True).start()
        return box, filled

    def _take_registered(self, on_call: HostCall) -> Sandbox:
        """A fresh sandbox, registered so :meth:`stop` can kill it (closed at once, and
        :class:`SessionStopped` raised, if the session stopped meanwhile)."""
        self.check()
        box = self._sandboxes.take(on_call)
        with self._lock:
            if self._stopped.is_set():
                box.close()
                raise SessionStopped()
            self._boxes.add(box)
        return box

    def release(self, box: Sandbox) -> None:
        """Close a sandbox for good (it served its RLM)."""
        with self._lock:
            self._boxes.discard(box)
        box.close()

    # -- LM calls -----------------------------------------------------------------------------

    def send(
        self, requests: Sequence[LMRequest], depth: int, deadline: float | None = None
    ) -> list[LMOutcome]:
        """Send requests made at ``depth``; notes the depth of those answered.

        ``deadline`` (``time.monotonic()``): the calling cell's; none is sent past it, and
        calls still in flight at it are stopped and answer :class:`TaskTimeout`.
        """
        self.check()
        if deadline is not None and deadline - time.monotonic() <= 0:
            return [LMOutcome(error=cell_timed_out(self.cell_timeout_s))] * len(requests)
        with self._lock:
            held = min(self._held, len(requests))
            self._held -= held
        outcomes: list[LMOutcome] = []
        if held:
            outcomes += self._lm.complete(requests[:held], extra=False, timeout_s=_left(deadline))
        if len(requests) > held:
            outcomes += self._lm.complete(requests[held:], extra=True, timeout_s=_left(deadline))
        if any(o.completion is not None for o in outcomes):
            with self._lock:
                self.depth = max(self.depth, depth)
        if any(o.stopped for o in outcomes):
            self.check()
            raise SessionStopped()
        return outcomes


class _SessionRepl:
    """The loop's REPL: a session's sandbox, replaced by a fresh one if its process dies."""

    def __init__(self, session: _Session, box: Sandbox, filled: Future[None] | None = None) -> None:
        self._session = session
        self.box = box
        self._filled = filled

    def _ready(self) -> None:
        """Wait for the context to be in the first sandbox (raises what setting it raised)."""
        if self._filled is not None:
            filled, self._filled = self._filled, None
            try:
                filled.result()
            except BaseException:
                self._after()  # a tree stopped meanwhile (its sandboxes killed) says so first
                raise

    def settle(self) -> None:
        """Wait for the context's thread to be done with the sandbox, whatever it met (the
        sandbox is closed next; a stopped tree has killed it, so this is quick)."""
        if self._filled is not None:
            concurrent.futures.wait([self._filled])

    def _replace(self) -> None:
        tree = self._session.tree
        tree.release(self.box)
        self.box = tree.take_sandbox(self._session.on_call, self._session.context)

    def _after(self) -> None:
        tree = self._session.tree
        if tree.fatal is not None:
            raise tree.fatal
        tree.check()

    def run(self, code: str) -> CellResult:
        session = self._session
        tree = session.tree
        tree.check()
        self._ready()
        timeout_s = tree.cell_timeout_s
        if session.outer_deadline is not None:
            # A child RLM's cells live within its parent's cell.
            timeout_s = min(timeout_s, session.outer_deadline - time.monotonic())
            if timeout_s <= 0:
                raise cell_timed_out(tree.cell_timeout_s)
        session.cell_deadline = time.monotonic() + timeout_s
        try:
            result = self.box.run(code, timeout_s, cpu_s=tree.cell_cpu_s)
        finally:
            session.cell_deadline = None
        self._after()
        tree.report(result, {"path": session.path, "depth": session.depth, "turn": session.turn})
        if not self.box.alive:
            self._replace()
            result = dataclasses.replace(result, error=(result.error or "") + _RESTARTED)
        return result

    def lookup(self, name: str) -> Lookup:
        self._ready()
        try:
            return self.box.lookup(name)
        except SandboxDead:
            self._after()
            self._replace()
            return Lookup(None, [], "the REPL did not answer in time and was restarted")


class _Session:
    """One RLM of the tree: its loop, its sandbox, and the host side of its REPL functions."""

    def __init__(
        self,
        tree: SessionTree,
        path: str,
        depth: int,
        query: str | None,
        context: Any,
        model: str | None,
        outer_deadline: float | None = None,
    ) -> None:
        self.tree = tree
        self.path = path
        self.depth = depth
        self.query = query
        self.context = context
        self.model = model
        #: A child's parent cell's deadline: everything of the child ends by it.
        self.outer_deadline = outer_deadline
        #: The running cell's deadline (``None`` between cells).
        self.cell_deadline: float | None = None
        self.turn = 0
        self._children = 0
        self._lock = threading.Lock()

    def deadline(self) -> float | None:
        """The earliest of the running cell's deadline and the parent cell's (if any)."""
        bounds = [d for d in (self.cell_deadline, self.outer_deadline) if d is not None]
        return min(bounds) if bounds else None

    def run(self) -> LoopResult:
        tree = self.tree
        box, filled = tree.take_sandbox_filling(self.on_call, self.context)
        repl = _SessionRepl(self, box, filled)
        config = LoopConfig(
            max_iterations=tree.params.max_iterations,
            depth=self.depth,
            max_depth=tree.params.max_depth,
            path=self.path,
        )
        try:
            return run_loop(self.query, self.context, self.complete, repl, config, tree.events.emit)
        finally:
            repl.settle()
            tree.release(repl.box)

    # -- the root's model ---------------------------------------------------------------------

    def complete(self, messages: Messages) -> Completion:
        self.turn += 1
        # The turn's new message (query and metadata, cells' feedback, the last call); the
        # system prompt is ours, earlier messages were checked when they were new.
        self.tree.screen([messages[-1]["content"]], "rlm.turn")
        request = LMRequest(
            messages=tuple(dict(m) for m in messages),
            max_tokens=self.tree.params.max_tokens,
            model=self.model,
            purpose=f"rlm.turn:{self.path}",
        )
        (outcome,) = self.tree.send([request], self.depth, self.outer_deadline)
        if outcome.error is not None:
            if _fatal(outcome.error):
                self.tree.fail(outcome.error)
                raise SessionStopped()
            # The root's turn failing ends the task; a child's answers its parent's code.
            raise outcome.error
        assert outcome.completion is not None
        return outcome.completion

    # -- the REPL's functions -----------------------------------------------------------------

    def on_call(self, kind: str, prompts: list[str], model: str | None) -> list[str]:
        """Answer a cell's ``llm_query``/``rlm_query`` call (see the module docstring)."""
        self.tree.check()
        if not prompts:
            return []
        if kind.startswith("rlm_query") and self.depth + 1 < self.tree.params.max_depth:
            return self._children_answers(prompts, model)
        return self._llm_answers(kind, prompts, model)

    def _llm_answers(self, kind: str, prompts: list[str], model: str | None) -> list[str]:
        tree = self.tree
        tree.screen(prompts, f"rlm.{kind}")
        chosen = model or tree.params.sub_model
        requests = [
            LMRequest.chat(
                p, max_tokens=tree.params.max_tokens, model=chosen, purpose=f"rlm.{kind}"
            )
            for p in prompts
        ]
        started = time.perf_counter()
        outcomes = tree.send(requests, self.depth + 1, self.deadline())
        answers: list[str] = []
        errors = 0
        for outcome in outcomes:
            if outcome.error is not None:
                if _fatal(outcome.error):
                    tree.fail(outcome.error)
                    raise SessionStopped()
                errors += 1
                answers.append(f"Error: {outcome.error.message}")
            else:
                assert outcome.completion is not None
                answers.append(outcome.completion.text)
        done = [o.completion for o in outcomes if o.completion is not None]
        tree.events.emit(
            "rlm.subcalls",
            {
                "path": self.path,
                "turn": self.turn,
                "kind": kind,
                "count": len(prompts),
                "model": chosen,
                "depth": self.depth + 1,
                "promptDigests": [
                    hashlib.sha256(p.encode()).hexdigest()[:12] for p in prompts[:_MAX_DIGESTS]
                ],
                "inputTokens": sum(c.input_tokens for c in done),
                "outputTokens": sum(c.output_tokens for c in done),
                "latencyMs": round((time.perf_counter() - started) * 1000, 3),
                "cached": sum(1 for c in done if c.cached),
                "errors": errors,
            },
        )
        return answers

    def _child_path(self) -> str:
        with self._lock:
            index = self._children
            self._children += 1
        return f"{self.path}.{index}"

    def _child_answer(self, prompt: str, model: str | None) -> str:
        tree = self.tree
        path = self._child_path()
        depth = self.depth + 1
        base = {"path": path, "parent": self.path, "depth": depth}
        tree.events.emit("rlm.child", {**base, "phase": "started"})
        child = _Session(tree, path, depth, None, prompt, model or self.model, self.deadline())
        try:
            result = child.run()
        except SessionStopped:
            raise
        except Exception as exc:  # the reference answers the parent's code, and goes on
            message = exc.message if isinstance(exc, RLMError) else f"{type(exc).__name__}: {exc}"
            if tree.fatal is not None or tree.stopped:
                raise SessionStopped() from None
            tree.events.emit("rlm.child", {**base, "phase": "ended", "error": clip(message)})
            return f"Error: Child RLM completion failed - {message}"
        tree.events.emit(
            "rlm.child",
            {**base, "phase": "ended", "answer": clip(result.answer), "turns": result.turns},
        )
        return result.answer

    def _children_answers(self, prompts: list[str], model: str | None) -> list[str]:
        tree = self.tree
        tree.screen(prompts, "rlm.rlm_query")  # each becomes a child's context
        if len(prompts) == 1:
            answers = [self._child_answer(prompts[0], model)]
        else:
            workers = min(len(prompts), tree.max_children_in_flight)
            with ThreadPoolExecutor(workers, thread_name_prefix="rlm-child") as pool:
                futures = [pool.submit(self._child_answer, p, model) for p in prompts]
                # A child raises only when the whole tree stops (its siblings stop too).
                answers = [future.result() for future in futures]
        tree.check()
        return answers


def root_failure(error: BaseException, incident: str = "") -> RLMError:
    """The task's error for an exception that escaped a tree (not a stop).

    An :class:`~rlm.errors.RLMError` is the session's deliberate answer. Anything else is a
    failure of the engine whose text may carry internals: the caller sees a generic sentence
    with the ``incident`` id under which the exception was logged
    (:func:`rlm.incidents.log_incident`).
    """
    if isinstance(error, RLMError):
        return error
    return InternalError(f"the RLM session failed (incident {incident})", {"incident": incident})

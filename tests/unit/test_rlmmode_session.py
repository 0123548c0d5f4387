"""An RLM task's session tree (no Ray): sub-calls, child RLMs, depth, fatal errors, stop.

The model is scripted through a stand-in for the core's LM port; sandboxes are real (a
:class:`SandboxPool`), so the code in the scripted replies really runs in confined REPLs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from rlm.errors import InternalError, InvalidInput, QuotaExceeded, RLMError, TaskTimeout
from rlm.lm.calls import LMRequest
from rlm.rlmmode.loop import Completion
from rlm.rlmmode.request import RLMParams
from rlm.rlmmode.session import LMOutcome, SessionStopped, SessionTree
from rlm.sandbox import Sandbox, host
from rlm.sandbox.pool import SandboxPool, refuse_calls

RootScript = Callable[[str, int], str]


class FakeLM:
    """Scripts root turns by ``(path, turn)`` and answers sub-calls ``sub:<prompt>``."""

    def __init__(
        self,
        root: RootScript,
        sub: Callable[[str], LMOutcome] | None = None,
        turn_error: Callable[[str], RLMError | None] | None = None,
    ) -> None:
        self.root = root
        self.sub = sub or (lambda p: LMOutcome(Completion(f"sub:{p}", 3, 1)))
        self.turn_error = turn_error or (lambda path: None)
        self.calls: list[tuple[str, bool, str | None]] = []
        self.lock = threading.Lock()

    def complete(
        self, requests: Sequence[LMRequest], *, extra: bool, timeout_s: float | None = None
    ) -> list[LMOutcome]:
        outcomes = []
        for request in requests:
            with self.lock:
                self.calls.append((request.purpose, extra, request.model))
            if request.purpose.startswith("rlm.turn:"):
                path = request.purpose.split(":", 1)[1]
                error = self.turn_error(path)
                if error is not None:
                    outcomes.append(LMOutcome(error=error))
                    continue
                turn = sum(1 for m in request.messages if m["role"] == "assistant") + 1
                outcomes.append(LMOutcome(Completion(self.root(path, turn), 10, 5)))
            else:
                outcomes.append(self.sub(request.messages[-1]["content"]))
        return outcomes


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    sandboxes = SandboxPool(lambda: Sandbox(refuse_calls), prestart=1)
    sandboxes.warm()
    yield sandboxes
    sandboxes.close()


def _tree(
    lm: FakeLM, pool: SandboxPool, *, max_depth: int = 1, **kwargs: Any
) -> tuple[SessionTree, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    params = RLMParams(
        query="q", max_iterations=5, max_depth=max_depth, model="root-m", sub_model="sub-m"
    )
    kwargs.setdefault("cell_timeout_s", 30)
    tree = SessionTree(params, lm, pool, events.extend, cell_cpu_s=30, **kwargs)
    return tree, events


def _answer(expr: str) -> str:
    return f"```repl\nanswer.update(content={expr}, ready=True)\n```"


def test_batched_sub_calls_answer_in_order_at_depth_one(pool: SandboxPool) -> None:
    lm = FakeLM(
        lambda path, turn: (
            "```repl\nrs = llm_query_batched([f'p{i}' for i in range(5)])\n```\n"
            + _answer("'|'.join(rs)")
        )
    )
    tree, events = _tree(lm, pool)
    result = tree.run("ctx")
    assert result.answer == "|".join(f"sub:p{i}" for i in range(5))
    assert (result.turns, result.depth) == (1, 1)
    # The root's first turn was held at admission; every later call is held as it is sent.
    assert lm.calls[0] == ("rlm.turn:0", False, "root-m")
    assert lm.calls[1:] == [("rlm.llm_query_batched", True, "sub-m")] * 5
    subcalls = [d for t, d in events if t == "rlm.subcalls"]
    assert len(subcalls) == 1 and subcalls[0]["count"] == 5 and subcalls[0]["depth"] == 1
    assert subcalls[0]["inputTokens"] == 15 and subcalls[0]["errors"] == 0


def test_a_child_rlm_runs_its_own_repl_one_level_deeper(pool: SandboxPool) -> None:
    def root(path: str, turn: int) -> str:
        if path == "0":
            return "```repl\nkids = rlm_query_batched(['alpha', 'beta'])\n```\n" + _answer(
                "' / '.join(kids)"
            )
        # A child: its context is its prompt; its llm_query is at depth 2.
        return "```repl\nx = llm_query(context + '!')\n```\n" + _answer("context + ':' + x")

    lm = FakeLM(root)
    tree, events = _tree(lm, pool, max_depth=2)
    result = tree.run("ctx")
    assert result.answer == "alpha:sub:alpha! / beta:sub:beta!"
    assert result.depth == 2
    purposes = sorted(p for p, _, _ in lm.calls)
    assert purposes.count("rlm.turn:0.0") == 1 and purposes.count("rlm.turn:0.1") == 1
    assert {m for p, _, m in lm.calls if p.startswith("rlm.turn:0.")} == {"root-m"}
    children = [d for t, d in events if t == "rlm.child"]
    assert sorted((c["path"], c["phase"]) for c in children) == [
        ("0.0", "ended"),
        ("0.0", "started"),
        ("0.1", "ended"),
        ("0.1", "started"),
    ]
    assert {c["depth"] for c in children} == {1}


def test_at_max_depth_rlm_query_answers_as_llm_query(pool: SandboxPool) -> None:
    lm = FakeLM(lambda path, turn: "```repl\nr = rlm_query('deep')\n```\n" + _answer("r"))
    tree, _ = _tree(lm, pool, max_depth=1)
    result = tree.run("ctx")
    assert (result.answer, result.depth) == ("sub:deep", 1)
    assert [p for p, _, _ in lm.calls] == ["rlm.turn:0", "rlm.rlm_query"]


def test_a_failed_sub_call_answers_error_to_the_code(pool: SandboxPool) -> None:
    def sub(prompt: str) -> LMOutcome:
        if prompt == "bad":
            return LMOutcome(error=InternalError("LM provider 'x' failed (HTTP 500)"))
        return LMOutcome(Completion("fine"))

    lm = FakeLM(
        lambda path, turn: (
            "```repl\nrs = llm_query_batched(['ok', 'bad'])\n```\n" + _answer("repr(rs)")
        ),
        sub=sub,
    )
    tree, _ = _tree(lm, pool)
    assert tree.run("ctx").answer == "['fine', \"Error: LM provider 'x' failed (HTTP 500)\"]"


def test_a_child_that_fails_answers_its_parent_and_the_run_goes_on(pool: SandboxPool) -> None:
    lm = FakeLM(
        lambda path, turn: "```repl\nr = rlm_query('sub task')\n```\n" + _answer("r"),
        turn_error=lambda path: InternalError("provider down") if path != "0" else None,
    )
    tree, _ = _tree(lm, pool, max_depth=2)
    assert tree.run("ctx").answer == "Error: Child RLM completion failed - provider down"


def test_a_spent_budget_ends_the_whole_tree_and_kills_its_sandboxes(pool: SandboxPool) -> None:
    spent = QuotaExceeded("the task's LM budget is spent", {"budget": "lmCalls"})
    seen: list[Sandbox] = []
    uids: list[int | None] = []

    def root(path: str, turn: int) -> str:
        return "```repl\nrs = llm_query_batched(['a'])\nwhile True: pass\n```"

    def sub(prompt: str) -> LMOutcome:
        seen.extend(tree.sandboxes())
        uids.extend(box.uid for box in seen)
        return LMOutcome(error=spent)

    lm = FakeLM(root, sub=sub)
    tree, _ = _tree(lm, pool)
    with pytest.raises(QuotaExceeded) as info:
        tree.run("ctx")
    assert info.value is spent and tree.fatal is spent
    assert seen and all(not box.alive for box in seen) and not tree.sandboxes()
    assert uids and all(uid not in host._uids_in_use() for uid in uids)


def test_stop_ends_a_running_cell_and_leaves_no_process(pool: SandboxPool) -> None:
    started = threading.Event()

    def root(path: str, turn: int) -> str:
        started.set()
        return "```repl\nimport time\ntime.sleep(60)\n```"

    tree, _ = _tree(FakeLM(root), pool)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            tree.run("ctx")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(10)
    box = None
    while box is None and thread.is_alive():  # the cell's sandbox, once registered
        boxes = tree.sandboxes()
        box = boxes[0] if boxes else None
    assert box is not None
    uid = box.uid
    tree.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], SessionStopped)
    assert uid not in host._uids_in_use() and not tree.sandboxes()


class StallingLM(FakeLM):
    """A FakeLM whose requests for ``stalled`` purposes never answer: each waits out the
    ``timeout_s`` it is given, as the core's port does, then answers ``TaskTimeout``."""

    def __init__(self, root: RootScript, stalled: Callable[[str], bool]) -> None:
        super().__init__(root)
        self.stalled = stalled
        self.timeouts: list[float | None] = []
        self.never = threading.Event()  # set by no one: a stalled call is never answered

    def complete(
        self, requests: Sequence[LMRequest], *, extra: bool, timeout_s: float | None = None
    ) -> list[LMOutcome]:
        if not any(self.stalled(r.purpose) for r in requests):
            return super().complete(requests, extra=extra, timeout_s=timeout_s)
        with self.lock:
            self.timeouts.append(timeout_s)
        # Unbounded (None) would hang the test: the assertion below then fails on time.
        self.never.wait(60 if timeout_s is None else timeout_s)
        return [LMOutcome(error=TaskTimeout("stopped at the cell's deadline"))] * len(requests)


def test_a_cells_wall_time_bounds_a_sub_call_in_flight(pool: SandboxPool) -> None:
    def root(path: str, turn: int) -> str:
        if turn == 1:
            return "```repl\nr = llm_query('slow')\n```"
        return _answer("'went on'")

    # A wall time the cell's code reaches its call well within, even on a loaded machine.
    wall = 4.0
    lm = StallingLM(root, lambda purpose: purpose == "rlm.llm_query")
    tree, events = _tree(lm, pool, cell_timeout_s=wall)
    started = time.monotonic()
    result = tree.run("ctx")
    assert result.answer == "went on" and result.turns == 2
    # The port was given the cell's time left, not an unbounded wait.
    assert len(lm.timeouts) == 1 and lm.timeouts[0] is not None and 0 < lm.timeouts[0] <= wall
    (cell, *_) = [d for t, d in events if t == "rlm.cell"]
    assert cell["killedReason"] in ("wall_timeout", "wall_timeout_killed")
    assert cell["durationMs"] < (wall + host.SandboxLimits().interrupt_grace_s) * 1000 + 1500
    assert time.monotonic() - started < 20


def test_a_child_rlm_lives_within_its_parents_cell(pool: SandboxPool) -> None:
    def root(path: str, turn: int) -> str:
        if path == "0":
            if turn == 1:
                return "```repl\nr = rlm_query('child work')\n```"
            return _answer("'parent went on'")
        return _answer("'never'")

    # The child's first turn stalls: only the parent's cell deadline can end it. The wall
    # time leaves the child room to start its own sandbox and reach that turn, even on a
    # loaded machine (with 1.5 s, CI once saw the deadline pass before the child's turn).
    wall = 5.0
    lm = StallingLM(root, lambda purpose: purpose == "rlm.turn:0.0")
    tree, events = _tree(lm, pool, max_depth=2, cell_timeout_s=wall)
    started = time.monotonic()
    result = tree.run("ctx")
    assert result.answer == "parent went on"
    assert len(lm.timeouts) == 1 and lm.timeouts[0] is not None and 0 < lm.timeouts[0] <= wall
    ended = [d for t, d in events if t == "rlm.child" and d["phase"] == "ended"]
    assert len(ended) == 1 and ended[0]["error"].startswith("stopped at the cell's deadline")
    assert not tree.sandboxes()  # the child's sandbox was closed too
    assert time.monotonic() - started < 20


def test_no_call_is_sent_once_the_cells_deadline_has_passed(pool: SandboxPool) -> None:
    lm = FakeLM(lambda path, turn: "FINAL(x)")
    tree, _ = _tree(lm, pool, cell_timeout_s=7)
    outcomes = tree.send([LMRequest.chat("late")], 1, deadline=time.monotonic() - 0.001)
    assert lm.calls == []
    assert len(outcomes) == 1 and isinstance(outcomes[0].error, TaskTimeout)
    assert "(7 s)" in outcomes[0].error.message


def test_a_repl_that_dies_is_replaced_with_context_set_again(pool: SandboxPool) -> None:
    def root(path: str, turn: int) -> str:
        if turn == 1:
            return "```repl\nkept = 1\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n```"
        return "```repl\nprint('kept' in globals(), context)\n```\n" + _answer("'ok'")

    lm = FakeLM(root)
    tree, events = _tree(lm, pool)
    assert tree.run("the context").answer == "ok"
    cells = [d for t, d in events if t == "rlm.cell"]
    assert cells[0]["killedReason"] == "crashed"
    assert "a fresh one started" in cells[0]["error"]
    assert cells[1]["stdout"] == "False the context\n"


class Guard:
    """A stand-in for the org's input policies: refuses any text holding ``BLOCKED``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    def check(self, texts: Sequence[str], field: str) -> None:
        with self.lock:
            self.seen.append((field, list(texts)))
        bad = [i for i, t in enumerate(texts) if "BLOCKED" in t]
        if bad:
            raise InvalidInput(
                "a prompt of the RLM was refused by security policy input-secrets: ...",
                {"field": f"{field}[{bad[0]}]", "violations": [{"policyId": "input-secrets"}]},
            )


def test_every_text_is_checked_before_it_is_sent(pool: SandboxPool) -> None:
    def root(path: str, turn: int) -> str:
        if turn == 1:
            return "```repl\nrs = llm_query_batched(['p0', 'p1'])\nprint('seen', rs)\n```"
        return _answer("'done'")

    guard = Guard()
    tree, _ = _tree(FakeLM(root), pool, guard=guard)
    assert tree.run("ctx").answer == "done"
    fields = [f for f, _ in guard.seen]
    assert fields == ["rlm.turn", "rlm.llm_query_batched", "rlm.turn"]
    assert guard.seen[0][1][0].startswith("Answer the following: q")  # turn 1: the query
    assert guard.seen[1][1] == ["p0", "p1"]
    assert "seen ['sub:p0', 'sub:p1']" in guard.seen[2][1][0]  # turn 2: the cells' feedback


def test_a_refused_sub_call_prompt_refuses_the_task_and_sends_nothing_of_its_batch(
    pool: SandboxPool,
) -> None:
    lm = FakeLM(
        lambda path, turn: (
            "```repl\nrs = llm_query_batched(['fine', 'key: BLOCKED'])\n```\n" + _answer("'no'")
        )
    )
    tree, _ = _tree(lm, pool, guard=Guard())
    with pytest.raises(InvalidInput) as info:
        tree.run("ctx")
    assert info.value.code == "INVALID_INPUT" and tree.fatal is info.value
    assert info.value.details["field"] == "rlm.llm_query_batched[1]"
    assert info.value.details["violations"] == [{"policyId": "input-secrets"}]
    assert [p for p, _, _ in lm.calls] == ["rlm.turn:0"]  # the batch never left
    assert not tree.sandboxes()


def test_a_refused_turn_message_or_child_prompt_refuses_the_task(pool: SandboxPool) -> None:
    # The cells' feedback carries the refused text into turn 2's message.
    lm = FakeLM(lambda path, turn: "```repl\nprint('BLOCK' + 'ED')\n```")
    tree, _ = _tree(lm, pool, guard=Guard())
    with pytest.raises(InvalidInput):
        tree.run("ctx")
    assert [p for p, _, _ in lm.calls] == ["rlm.turn:0"]
    # A child's prompt (its context) is checked before the child starts; the refusal is the
    # task's, not an "Error: Child RLM completion failed" answered to the parent's code.
    child = FakeLM(
        lambda path, turn: "```repl\nr = rlm_query('BLOCKED task')\n```\n" + _answer("r")
    )
    tree, _ = _tree(child, pool, max_depth=2, guard=Guard())
    with pytest.raises(InvalidInput) as info:
        tree.run("ctx")
    assert info.value.details["field"] == "rlm.rlm_query[0]"
    assert [p for p, _, _ in child.calls] == ["rlm.turn:0"]


def test_cells_that_run_into_a_sandbox_limit_are_reported(pool: SandboxPool) -> None:
    def root(path: str, turn: int) -> str:
        if turn == 1:
            return "```repl\nwhile True:\n    pass\n```\n```repl\nraise ValueError('plain')\n```"
        return _answer("'after'")

    reported: list[tuple[Any, dict[str, Any]]] = []
    params = RLMParams(query="q", max_iterations=3, model="root-m", sub_model="sub-m")
    tree = SessionTree(
        params,
        FakeLM(root),
        pool,
        cell_timeout_s=30,
        cell_cpu_s=1,
        on_violation=lambda violation, facts: reported.append((violation, facts)),
    )
    assert tree.run("ctx").answer == "after"
    assert len(reported) == 1  # the endless loop; a plain exception is no violation
    violation, facts = reported[0]
    assert (violation.reason, violation.severity) == ("cpu_limit", "medium")
    assert facts["path"] == "0" and facts["turn"] == 1 and facts["killedReason"] == "cpu_limit"
    assert "code" not in facts and "stdout" not in facts


class _SlowContextSandboxes:
    """Fresh sandboxes whose context takes ``delay_s`` longer to arrive; notes when it did."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.context_set_at: list[float] = []

    def take(self, on_call: host.HostCall) -> Sandbox:
        source = self

        class _Slow(Sandbox):
            def set_context(self, value: Any, timeout_s: float = 60.0) -> None:
                time.sleep(source.delay_s)
                super().set_context(value, timeout_s)
                source.context_set_at.append(time.monotonic())

        return _Slow(on_call)


def test_the_first_turn_leaves_while_the_context_travels_into_the_repl() -> None:
    turns_at: list[float] = []

    def root(path: str, turn: int) -> str:
        turns_at.append(time.monotonic())
        return _answer("str(len(context))")

    sandboxes = _SlowContextSandboxes(delay_s=1.0)
    params = RLMParams(query="q", max_iterations=5, max_depth=1, model="m", sub_model="s")
    tree = SessionTree(params, FakeLM(root), sandboxes, cell_timeout_s=30, cell_cpu_s=30)
    result = tree.run(["a", "b", "c"])
    assert result.answer == "3"  # the cell saw the whole context
    (context_set,) = sandboxes.context_set_at
    assert turns_at[0] < context_set - 0.5  # the turn did not wait for it
    assert not tree.sandboxes()

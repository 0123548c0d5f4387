"""An RLM task's session tree (no Ray): sub-calls, child RLMs, depth, fatal errors, stop.

The model is scripted through a stand-in for the core's LM port; sandboxes are real (a
:class:`SandboxPool`), so the code in the scripted replies really runs in confined REPLs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from rlm.errors import InternalError, QuotaExceeded, RLMError
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

    def complete(self, requests: Sequence[LMRequest], *, extra: bool) -> list[LMOutcome]:
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
    tree = SessionTree(params, lm, pool, events.extend, cell_timeout_s=30, cell_cpu_s=30, **kwargs)
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

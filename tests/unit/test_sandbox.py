"""The sandboxed REPL as a REPL: namespace, feedback, host calls, framing, refusal.

Isolation is proven in ``test_sandbox_isolation.py``. These tests start real child processes
(no Ray); they need the host to run as root, as the service does (see ``rlm.sandbox.host``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from rlm.errors import InvalidInput
from rlm.sandbox import Sandbox, SandboxDead, SandboxUnavailable, host

Call = tuple[str, list[str], str | None]


class Recorder:
    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[Call] = []
        self.fail = fail

    def __call__(self, kind: str, prompts: list[str], model: str | None) -> list[str]:
        self.calls.append((kind, prompts, model))
        if self.fail:
            raise RuntimeError(self.fail)
        return [f"{kind}:{p}" for p in prompts]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def box(recorder: Recorder) -> Iterator[Sandbox]:
    sandbox = Sandbox(recorder)
    yield sandbox
    sandbox.close()


def test_namespace_persists_and_new_vars_lists_added_names(box: Sandbox) -> None:
    first = box.run("a = 1\nb = 2\nprint('hi')")
    assert (first.stdout, first.new_vars, first.error) == ("hi\n", ["a", "b"], None)
    second = box.run("a = a + b\nprint(a)")
    assert (second.stdout, second.new_vars) == ("3\n", [])


def test_an_exception_is_feedback_with_the_cells_traceback(box: Sandbox) -> None:
    result = box.run("x = 1\n1 / 0")
    assert result.error is not None
    assert result.error.endswith("ZeroDivisionError: division by zero\n")
    assert 'File "<cell>", line 2' in result.error
    assert "_child" not in result.error  # the REPL's own frames are not shown
    assert result.new_vars == ["x"] and result.killed_reason is None
    syntax = box.run("def (")
    assert syntax.error is not None and "SyntaxError" in syntax.error


def test_stderr_and_system_exit_are_captured(box: Sandbox) -> None:
    result = box.run("import sys\nprint('warn', file=sys.stderr)\nsys.exit(3)")
    assert result.stderr == "warn\n"
    assert result.error is not None and "SystemExit: 3" in result.error
    assert box.run("print('still here')").stdout == "still here\n"


def test_context_is_a_variable_and_survives_a_restart(box: Sandbox) -> None:
    box.set_context({"lines": ["a", "b"], "n": 2})
    assert box.run("print(context['lines'][1], context['n'])").stdout == "b 2\n"
    box.restart()
    assert box.run("print(type(context).__name__, len(context))").stdout == "dict 2\n"


def test_a_context_that_is_not_json_is_refused(box: Sandbox) -> None:
    with pytest.raises(InvalidInput):
        box.set_context({"f": object()})
    assert box.alive


def test_host_functions_travel_to_on_call(box: Sandbox, recorder: Recorder) -> None:
    code = (
        "r = llm_query('a')\n"
        "rb = llm_query_batched(['b', 'c'], model='small')\n"
        "q = rlm_query('d')\n"
        "qb = rlm_query_batched(['e'])\n"
        "print(r, rb, q, qb)"
    )
    result = box.run(code)
    assert result.error is None
    assert result.stdout == (
        "llm_query:a ['llm_query_batched:b', 'llm_query_batched:c'] rlm_query:d "
        "['rlm_query_batched:e']\n"
    )
    assert recorder.calls == [
        ("llm_query", ["a"], None),
        ("llm_query_batched", ["b", "c"], "small"),
        ("rlm_query", ["d"], None),
        ("rlm_query_batched", ["e"], None),
    ]


def test_a_failing_callback_answers_error_strings() -> None:
    with Sandbox(Recorder(fail="quota exceeded")) as sandbox:
        result = sandbox.run("print(llm_query('a')); print(llm_query_batched(['b', 'c']))")
    assert result.error is None
    assert (
        result.stdout
        == "Error: quota exceeded\n['Error: quota exceeded', 'Error: quota exceeded']\n"
    )


def test_bad_arguments_fail_in_the_cell_without_reaching_the_host(
    box: Sandbox, recorder: Recorder
) -> None:
    result = box.run("llm_query(42)")
    assert result.error is not None and "TypeError" in result.error
    assert recorder.calls == []


def test_only_the_standard_library_is_importable(box: Sandbox) -> None:
    code = (
        "import json, re, math, collections, itertools, sys\n"
        "print(json.dumps({'a': 1}), re.sub('b', 'c', 'ab'), math.isqrt(17),\n"
        "      collections.Counter('aab')['a'], list(itertools.islice(itertools.count(), 3)),\n"
        "      sys.flags.isolated, sys.flags.no_site)"
    )
    result = box.run(code)
    assert result.stdout == '{"a": 1} ac 4 2 [0, 1, 2] 1 1\n', result.error
    missing = box.run("import pydantic")
    assert missing.error is not None and "ModuleNotFoundError" in missing.error


def test_show_vars_lists_the_cells_variables(box: Sandbox) -> None:
    box.run("items = [1, 2]\nname = 'x'")
    # The reference's (rlms 0.1.3) text; ``answer`` is not listed.
    assert box.run("print(SHOW_VARS())").stdout == (
        "Available variables: {'items': 'list', 'name': 'str'}\n"
    )


def test_a_forged_frame_is_a_protocol_violation_and_restart_recovers(box: Sandbox) -> None:
    # fd 4 is the REPL's end of the host pipe; a cell can write to it: the host must cope.
    result = box.run("import os\nos.write(4, b'\\xff\\xff\\xff\\xff')\nwhile True: pass", 5)
    assert result.killed_reason == "protocol_violation"
    assert not box.alive
    box.restart()
    assert box.run("print(1)").stdout == "1\n"


def test_refuses_without_root_unless_unsafe_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailable, match="unsafe_local=True"):
        Sandbox(Recorder())
    with Sandbox(Recorder(), unsafe_local=True) as sandbox:
        assert sandbox.uid is None
        assert sandbox.run("print(6 * 7)").stdout == "42\n"


def test_the_answer_dict_is_read_at_the_end_of_each_cell(box: Sandbox) -> None:
    assert box.run("answer['content'] = 'draft'").answer is None  # not ready yet
    assert box.run("answer['ready'] = True").answer == "draft"
    # Read when the cell ends, even if it raised after answering.
    raised = box.run("answer.update(content=42, ready=True)\n1 / 0")
    assert (raised.answer, raised.error is not None) == ("42", True)
    assert box.run("answer = 'not a dict'").answer is None


def test_lookup_gives_a_variables_text_and_every_name(box: Sandbox) -> None:
    box.run("total = 6 * 7\nlabel = 'x'")
    found = box.lookup("total")
    assert (found.value, found.names, found.error) == ("42", ["total", "label"], None)
    assert box.lookup("missing").value is None
    box.run("class Bad:\n    def __str__(self):\n        raise ValueError('no text')\nbad = Bad()")
    failed = box.lookup("bad")
    assert failed.value is None and failed.error == "ValueError: no text"
    assert box.alive


def test_a_lookup_that_never_answers_kills_the_sandbox(box: Sandbox) -> None:
    box.run(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "class Slow:\n    def __str__(self):\n        import time\n        time.sleep(60)\n"
        "slow = Slow()"
    )
    with pytest.raises(SandboxDead):
        box.lookup("slow", timeout_s=0.5)
    assert not box.alive


def test_kill_from_another_thread_ends_a_running_cell_as_crashed(box: Sandbox) -> None:
    uid = box.uid
    killer = threading.Timer(0.3, box.kill)
    killer.start()
    result = box.run("while True: pass", timeout_s=30, cpu_s=30)
    killer.join()
    assert result.killed_reason == "crashed"
    assert not box.alive and uid not in host._uids_in_use()


def test_on_call_can_be_rebound_between_cells(box: Sandbox) -> None:
    assert box.run("print(llm_query('a'))").stdout == "llm_query:a\n"
    box.on_call = lambda kind, prompts, model: [p * 2 for p in prompts]
    assert box.run("print(llm_query('a'))").stdout == "aa\n"

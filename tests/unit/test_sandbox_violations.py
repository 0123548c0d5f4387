"""Which cells ran into a sandbox limit, read from real cells of a real sandbox (no Ray)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlm.sandbox import CellResult, Sandbox, SandboxLimits
from rlm.sandbox.violations import SandboxViolation, cell_violation

LIMITS = SandboxLimits(memory_bytes=512 << 20, max_processes=8, file_bytes=1 << 20)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(lambda kind, prompts, model: prompts, limits=LIMITS)
    yield sandbox
    sandbox.close()


@pytest.mark.parametrize(
    ("code", "reason", "severity"),
    [
        ("big = bytearray(4 * 2**30)", "memory", "medium"),
        (
            "import os\nkids = []\nwhile True:\n    pid = os.fork()\n    if pid == 0:\n"
            "        import time; time.sleep(2); os._exit(0)\n    kids.append(pid)",
            "processes",
            "medium",
        ),
        ("open('big.bin', 'wb').write(b'x' * (4 << 20))", "file_size", "medium"),
        (
            "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=5)",
            "network",
            "high",
        ),
        ("while True:\n    pass", "cpu_limit", "medium"),
    ],
)
def test_a_cell_that_meets_a_limit_is_a_violation(
    box: Sandbox, code: str, reason: str, severity: str
) -> None:
    if not box.alive:
        box.restart()
    cell = box.run(code, 30, cpu_s=1)
    assert cell.error is not None
    assert cell_violation(cell) == SandboxViolation(reason, severity)  # type: ignore[arg-type]


def test_a_crashed_repl_is_a_high_violation_and_plain_errors_are_none(box: Sandbox) -> None:
    if not box.alive:
        box.restart()
    assert cell_violation(box.run("x = 1")) is None
    assert cell_violation(box.run("raise PermissionError('not a limit')")) is None
    assert cell_violation(box.run("print('y' * 100_000)")) is None  # output is cut, not a breach
    crashed = box.run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert cell_violation(crashed) == SandboxViolation("crashed", "high")
    box.restart()
    protocol = CellResult(
        "",
        "",
        error="the sandbox broke the protocol: bad frame",
        killed_reason="protocol_violation",
    )
    assert cell_violation(protocol) == SandboxViolation("protocol_violation", "high")

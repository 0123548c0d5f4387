"""Each isolation promise of the sandbox, proven against a real child process (no Ray).

The host must run as root (as the service does): the sandbox starts each REPL as its own uid.
A test's control case shows the thing it forbids is otherwise possible, so it fails for a reason.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm.sandbox import Sandbox, SandboxDead, SandboxLimits, host


def no_calls(kind: str, prompts: list[str], model: str | None) -> list[str]:
    raise AssertionError("no host call expected")


def assert_cleaned_up(sandbox: Sandbox) -> None:
    uid, scratch = sandbox.uid, sandbox.scratch_dir
    sandbox.close()
    assert not scratch.exists()
    assert uid is not None and uid not in host._uids_in_use()


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(no_calls)
    yield sandbox
    if sandbox.alive:
        assert_cleaned_up(sandbox)
    sandbox.close()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A directory standing for the service's state dir: root's, mode 0700, a readable file.

    Not under ``/tmp``: a sandbox sees its own empty tmpfs there, so a directory in the host's
    ``/tmp`` would be out of sight whatever the hiding does (the controls below need it in
    sight without hiding)."""
    path = Path(tempfile.mkdtemp(prefix="rlm-state-", dir="/var/lib"))  # 0700
    (path / "secret.txt").write_text("tenant keys")
    (path / "secret.txt").chmod(0o644)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def test_no_network_not_even_the_hosts_loopback(box: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # control: it listens
        server.accept()[0].close()
        result = box.run(
            "import socket\n"
            "print(sorted(name for _, name in socket.if_nameindex()))\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=5)"
        )
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the host's server
    assert result.stdout == "['lo']\n"
    assert result.error is not None and "Network is unreachable" in result.error


def test_no_secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("RLM_AUTH__JWT_SECRET", "jwt-secret")
    with Sandbox(no_calls) as sandbox:
        result = sandbox.run(
            "import os\nprint(sorted(os.environ.items()))\n"
            f"open('/proc/{os.getpid()}/environ', 'rb').read()"
        )
    assert result.stdout == "[('LANG', 'C.UTF-8'), ('PATH', '/usr/bin:/bin')]\n"
    assert result.error is not None and "PermissionError" in result.error  # the host's env


def test_no_inherited_file_descriptors() -> None:
    fd = os.open(__file__, os.O_RDONLY)
    high = os.dup2(fd, 200, inheritable=True)  # an fd the child would inherit if not closed
    try:
        with Sandbox(no_calls) as sandbox:
            result = sandbox.run(
                "import os\nfds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
                "print([os.readlink(f'/proc/self/fd/{f}') for f in (0, 1, 2)])\n"
                "print(len(fds) <= 7, 200 in fds)"
            )
    finally:
        os.close(high)
        os.close(fd)
    assert result.stdout == "['/dev/null', '/dev/null', '/dev/null']\nTrue False\n", result.error


def test_runs_as_its_own_uid_in_a_scratch_dir_removed_at_close(box: Sandbox) -> None:
    scratch = box.scratch_dir
    result = box.run(
        "import os\nopen('notes.txt', 'w').write('x')\nprint(os.getuid(), os.getcwd())"
    )
    assert result.stdout == f"{box.uid} {scratch}\n"
    assert box.run("print(open('notes.txt').read())").stdout == "x\n"  # kept between cells
    # ... in the sandbox's own tmpfs: nothing of it reaches the host's disk.
    assert box.uid != os.getuid() and not (scratch / "notes.txt").exists()
    assert_cleaned_up(box)


def test_everything_it_writes_shares_one_capped_tmpfs() -> None:
    marker = Path(tempfile.gettempdir()) / f"host-marker-{os.getpid()}"
    marker.write_text("host")
    code = (
        "import os\n"
        "def fill(path, mib):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(mib):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "        return 'ok'\n"
        "    except OSError as err:\n"
        "        return err.strerror\n"
        "print(fill('/tmp/a', 3), fill('/dev/shm/b', 3), fill('/var/tmp/c', 3), fill('d', 3))\n"
        f"print(os.path.exists({str(marker)!r}))"
    )
    try:
        with Sandbox(no_calls, limits=SandboxLimits(scratch_bytes=8 << 20)) as sandbox:
            result = sandbox.run(code)
    finally:
        marker.unlink()
    # 8 MiB for all four places together: the third file runs out, the fourth has no room;
    # the host's /tmp (and its files) is out of sight.
    assert result.error is None, result.error
    assert result.stdout == "ok ok No space left on device No space left on device\nFalse\n"


def test_the_state_dir_is_unreadable(box: Sandbox, state_dir: Path) -> None:
    assert (state_dir / "secret.txt").read_text() == "tenant keys"  # control: it is there
    result = box.run(f"print(open({str(state_dir / 'secret.txt')!r}).read())")
    assert result.error is not None and "PermissionError" in result.error
    assert "tenant keys" not in result.stdout


def test_hidden_paths_are_covered_even_when_world_readable(state_dir: Path) -> None:
    state_dir.chmod(0o755)
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"print(libc.umount2({str(state_dir).encode()!r}, 2), ctypes.get_errno() != 0)\n"
        f"print(os.listdir({str(state_dir)!r}))"
    )
    with Sandbox(no_calls) as control:  # control: without hiding, the mode lets it read
        assert control.run(code).stdout == "-1 True\n['secret.txt']\n"
    with Sandbox(no_calls, hidden_paths=[state_dir]) as sandbox:
        result = sandbox.run(code + f"\nopen({str(state_dir / 'secret.txt')!r})")
    # The covering mount is locked (umount fails) and the directory looks empty.
    assert result.stdout == "-1 True\n[]\n"
    assert result.error is not None and "FileNotFoundError" in result.error


def test_memory_cap_gives_a_memory_error_and_the_process_survives(box: Sandbox) -> None:
    pid = box.pid
    box.run("kept = 'yes'")
    result = box.run("big = bytearray(10 * 2**30)")
    assert result.error is not None and "MemoryError" in result.error
    assert box.run("print(kept)").stdout == "yes\n" and box.pid == pid


def test_wall_timeout_interrupts_an_endless_loop_and_keeps_the_namespace(box: Sandbox) -> None:
    box.run("kept = 1")
    result = box.run("while True: pass", timeout_s=1.0, cpu_s=60)
    assert result.killed_reason == "wall_timeout"
    assert result.error is not None and "KeyboardInterrupt" in result.error
    assert result.duration_ms < (1.0 + box.limits.interrupt_grace_s) * 1000 + 500
    assert box.run("print(kept)").stdout == "1\n"


def test_cpu_cap_stops_a_cell_even_if_it_catches_exceptions(box: Sandbox) -> None:
    code = "while True:\n    try:\n        pass\n    except Exception:\n        pass"
    result = box.run(code, timeout_s=60, cpu_s=1)
    assert result.killed_reason == "cpu_limit"
    assert box.run("print('usable')").stdout == "usable\n"


def test_the_code_cannot_raise_its_hard_limits(box: Sandbox) -> None:
    code = (
        "import resource\n"
        "for name in ('RLIMIT_AS', 'RLIMIT_CPU', 'RLIMIT_NPROC', 'RLIMIT_FSIZE'):\n"
        "    r = getattr(resource, name)\n"
        "    try:\n"
        "        resource.setrlimit(r, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
        "        print(name, 'raised')\n"
        "    except ValueError as exc:\n"
        "        print(name, exc)\n"
    )
    lines = box.run(code).stdout.splitlines()
    assert lines == [f"{n} not allowed to raise maximum limit" for n in _LIMITS]
    # The cap still holds after the attempt.
    result = box.run("big = bytearray(10 * 2**30)")
    assert result.error is not None and "MemoryError" in result.error


_LIMITS = ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NPROC", "RLIMIT_FSIZE")


@pytest.mark.parametrize(
    "escape",
    [
        # The per-cell CPU limit is a soft one: the code may raise it up to the hard one...
        "s, h = resource.getrlimit(resource.RLIMIT_CPU)\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (h, h))",
        # ...or ignore the signal it sends.
        "signal.signal(signal.SIGXCPU, signal.SIG_IGN)",
    ],
    ids=["raised", "ignored"],
)
def test_a_cell_that_escapes_its_cpu_limit_is_killed_by_the_host(escape: str) -> None:
    with Sandbox(no_calls) as sandbox:
        code = f"import resource, signal\n{escape}\nwhile True:\n    pass"
        # A wall time far beyond the CPU limit: only the host's CPU watch can end it first
        # (on a loaded machine CPU time accrues slower than wall time, hence the margin).
        result = sandbox.run(code, timeout_s=300, cpu_s=1)
        assert result.killed_reason == "cpu_limit_killed", result.error
        assert result.error is not None and "past its limit of 1 s" in result.error
        assert not sandbox.alive
        with pytest.raises(SandboxDead):
            sandbox.run("x = 1")
    # The control (no escape: the child's own limit stops the cell as "cpu_limit", its
    # namespace kept) is test_cpu_cap_stops_a_cell_even_if_it_catches_exceptions.


def test_a_cell_that_ignores_interrupts_is_killed_and_must_be_restarted(box: Sandbox) -> None:
    box.set_context("ctx")
    uid = box.uid
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    result = box.run(code, timeout_s=0.5, cpu_s=60)
    assert result.killed_reason == "wall_timeout_killed"
    assert not box.alive and uid not in host._uids_in_use()
    with pytest.raises(SandboxDead):
        box.run("x = 1")
    box.restart()
    assert box.run("print(context)").stdout == "ctx\n"


def test_a_fork_bomb_fails_cleanly_and_leaves_no_process() -> None:
    sandbox = Sandbox(no_calls, limits=SandboxLimits(max_processes=8))
    try:
        result = sandbox.run("import os\nwhile True:\n    os.fork()", timeout_s=60)
        assert result.error is not None and "BlockingIOError" in result.error
        assert result.killed_reason is None
        assert sandbox.run("print('alive')").stdout == "alive\n"
    finally:
        with contextlib.suppress(SandboxDead):
            assert_cleaned_up(sandbox)


def test_output_is_capped_head_and_tail_never_buffered_whole() -> None:
    limits = SandboxLimits(memory_bytes=256 << 20, output_chars=1000)
    with Sandbox(no_calls, limits=limits) as sandbox:
        one = sandbox.run("print('a' * 100_000_000 + 'END')")
        # 1 GB through print: buffering it would exceed the 256 MiB address space.
        many = sandbox.run("for i in range(1_000_000):\n    print('b' * 999)\nprint('LAST')")
    assert one.error is None and many.error is None, (one.error, many.error)
    for result in (one, many):
        assert len(result.stdout) < 1100 and "characters truncated" in result.stdout
    assert one.stdout.startswith("a" * 500) and one.stdout.endswith("aEND\n")
    assert many.stdout.endswith("b\nLAST\n")


def test_dangerous_modules_import_the_os_is_the_boundary(box: Sandbox) -> None:
    result = box.run(
        "import ctypes, socket, subprocess\n"
        "print(subprocess.run(['id', '-u'], capture_output=True, text=True).stdout)"
    )
    assert result.stdout == f"{box.uid}\n\n", result.error


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_host_that_dies_takes_its_repl_with_it() -> None:
    # The REPL is armed with PR_SET_PDEATHSIG: a host killed outright (SIGKILL, an engine
    # shut down) leaves no REPL behind, even one busy in an endless cell (which would never
    # notice its pipe closing), although the REPL runs in a session of its own.
    script = (
        "from rlm.sandbox import Sandbox\n"
        "box = Sandbox(lambda kind, prompts, model: prompts)\n"
        "print(box.pid, box.uid, flush=True)\n"
        "box.run('while True: pass', timeout_s=600, cpu_s=600)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=repo
    )
    try:
        assert proc.stdout is not None
        pid, uid = (int(x) for x in proc.stdout.readline().split())
        deadline = time.monotonic() + 10
        while _cpu_ticks(pid) < 20 and time.monotonic() < deadline:  # control: the cell spins
            time.sleep(0.02)
        assert _cpu_ticks(pid) >= 20
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while uid in host._uids_in_use() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uid not in host._uids_in_use()

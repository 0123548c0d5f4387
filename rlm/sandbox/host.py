"""The host side of a sandboxed REPL: one confined Python child per RLM session.

How the child is confined (each point has a test in ``tests/unit/test_sandbox_isolation.py``):

1. **Its own unprivileged uid.** The host must run as root. ``subprocess.Popen(user=U, group=U,
   extra_groups=[])`` starts the child as a uid ``U`` picked at random from ``uid_range`` and
   used by no running process, so it shares no uid with the service or another sandbox: the
   service's state dir (mode 0700, owned by root) is unreadable, ``/proc/<service>/environ``
   too, and no sandbox can signal or ptrace another. ``RLIMIT_NPROC`` counts per uid, so it is
   a per-sandbox process cap.
2. **Namespaces.** Before any model-written code runs, the child calls ``unshare(2)`` (through
   ``ctypes``) with ``CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS`` and maps only its own
   uid/gid: it holds capabilities over its new namespaces only. The network namespace has a
   loopback that is down and no other interface, so no connection leaves it, not even to the
   host's 127.0.0.1. ``hidden_paths`` are covered by empty read-only tmpfs mounts, then a second
   ``unshare(CLONE_NEWUSER | CLONE_NEWNS)`` locks those mounts (the kernel refuses to unmount
   mounts inherited from a more privileged mount namespace).
3. **Nothing inherited.** ``env`` is ``PATH`` and ``LANG`` only; ``close_fds=True`` and the
   child closes every fd but its two pipes; fds 0/1/2 become ``/dev/null``; the interpreter
   runs with ``-I -S`` (no site-packages, no ``PYTHON*`` variables, no script dir on the path);
   ``prctl(PR_SET_NO_NEW_PRIVS)`` makes set-uid binaries inert.
4. **Limits** (``setrlimit``, hard = soft, so the child can not raise them): ``RLIMIT_AS``,
   ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, ``RLIMIT_CORE`` = 0, ``RLIMIT_CPU`` for the process's life
   and a soft ``RLIMIT_CPU`` per cell (``SIGXCPU`` stops the cell). A soft limit is the
   process's to raise (up to the hard one) and ``SIGXCPU`` its to ignore, so the host also
   watches the REPL's CPU time (``/proc/<pid>/stat``, every :data:`CPU_CHECK_S` while a cell
   runs): a cell past its CPU time by :data:`CPU_SLACK_S` is killed with its sandbox
   (``cpu_limit_killed``). The wall clock is the host's:
   past the cell's timeout it sends ``SIGINT``; a cell that does not stop within
   ``interrupt_grace_s`` is ``SIGKILL``-ed and the sandbox must be restarted. Output is kept as
   head + tail inside the child, never buffered whole; frames above ``max_frame_bytes`` are a
   protocol violation.

Importing modules is not restricted (``os``, ``socket``, ``ctypes``, ``subprocess`` all import):
the isolation is the OS's, not a blacklist.

Example:
    >>> with Sandbox(lambda kind, prompts, model: [p.upper() for p in prompts]) as box:
    ...     box.set_context("some long text")
    ...     box.run("n = len(context); print(llm_query('hi'))").stdout
    'HI\\n'
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm.errors import InvalidInput
from rlm.sandbox import framing
from rlm.sandbox.errors import SandboxDead, SandboxError, SandboxUnavailable

__all__ = ["HOST_FUNCTIONS", "CellResult", "HostCall", "Lookup", "Sandbox", "SandboxLimits"]

#: The functions a cell can call on the host; ``on_call`` receives one of these as ``kind``.
HOST_FUNCTIONS = ("llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched")

#: ``on_call(kind, prompts, model) -> one answer per prompt``; an exception answers every
#: prompt with ``"Error: <exception>"``.
HostCall = Callable[[str, list[str], "str | None"], list[str]]

_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
#: How often the host reads a running cell's CPU time.
CPU_CHECK_S = 0.25
#: CPU time past a cell's limit after which the host kills it (the child's own ``SIGXCPU``
#: normally stops it first; only a cell that raised its soft limit or ignores the signal
#: gets here).
CPU_SLACK_S = 1.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_BOOT = """\
import sys, types
def _load(name, src):
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(src, "<" + name + ">", "exec"), module.__dict__)
    return module
_load("_rlm_sandbox_child", sys.argv[2]).main(_load("_rlm_framing", sys.argv[1]), sys.argv[3])
"""


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandbox may use. The host fixes these at start; the child can not raise them.

    Attributes:
        memory_bytes: ``RLIMIT_AS`` (address space) of the REPL process.
        max_processes: ``RLIMIT_NPROC`` for the sandbox's uid (the REPL counts as one; threads
            count too).
        cpu_s_total: ``RLIMIT_CPU`` hard limit over the process's life.
        file_bytes: ``RLIMIT_FSIZE``, the largest file the sandbox can write.
        scratch_bytes: All the sandbox's writable places together (``/tmp``, ``/var/tmp``,
            ``/dev/shm``, its working directory: one tmpfs of this size; memory, not disk).
        output_chars: stdout and stderr of a cell are each cut to this many characters (head
            and tail kept).
        max_frame_bytes: Longest frame the host accepts from the child.
        max_prompts_per_call: Most prompts one batched call may carry.
        interrupt_grace_s: After a wall timeout, how long the cell has to stop on ``SIGINT``
            before the process is killed.
        start_timeout_s: How long start-up may take.
    """

    memory_bytes: int = 1 << 30
    max_processes: int = 32
    cpu_s_total: int = 3600
    file_bytes: int = 256 << 20
    scratch_bytes: int = 256 << 20
    output_chars: int = 20_000
    max_frame_bytes: int = 8 << 20
    max_prompts_per_call: int = 4096
    interrupt_grace_s: float = 1.0
    start_timeout_s: float = 15.0


@dataclass(frozen=True)
class CellResult:
    """What one cell produced.

    Attributes:
        stdout: Printed output, head + tail if longer than ``output_chars``.
        stderr: Same for ``sys.stderr``.
        new_vars: Names the cell added to the namespace, in order.
        error: The traceback (or the reason the cell was stopped), or ``None``.
        duration_ms: Host-side wall time of the cell, host calls included.
        killed_reason: ``None`` when the cell ended by itself; ``"cpu_limit"`` or
            ``"wall_timeout"`` (stopped, namespace kept); ``"wall_timeout_killed"``,
            ``"cpu_limit_killed"`` (past its CPU time although the child's own limit should
            have stopped it: the code raised it or ignored the signal), ``"crashed"`` or
            ``"protocol_violation"`` (the process is gone: ``restart()``).
        answer: ``str(answer["content"])`` when the cell ended with ``answer["ready"]``
            truthy (the rule of :func:`rlm.rlmmode.answer.answer_from_dict`), else ``None``.
    """

    stdout: str
    stderr: str
    new_vars: list[str] = field(default_factory=list)
    error: str | None = None
    duration_ms: float = 0.0
    killed_reason: str | None = None
    answer: str | None = None


@dataclass(frozen=True)
class Lookup:
    """A variable of the REPL, as ``FINAL_VAR(name)`` reads it.

    Attributes:
        value: ``str()`` of the variable, ``None`` when there is no such variable (or its
            ``str()`` failed: see ``error``).
        names: The names of the REPL's variables (``SHOW_VARS``'s), for a message.
        error: Why ``str()`` failed, if it did.
    """

    value: str | None
    names: list[str]
    error: str | None = None


class _ChildGone(Exception):
    pass


@dataclass
class _Process:
    """The OS resources of one child; ``cleanup`` is safe to call twice (and from a finalizer)."""

    popen: subprocess.Popen[bytes]
    scratch: Path
    uid: int | None
    decoder: framing.FrameDecoder
    pending: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False

    @property
    def write_fd(self) -> int:
        assert self.popen.stdin is not None
        return self.popen.stdin.fileno()

    @property
    def read_fd(self) -> int:
        assert self.popen.stdout is not None
        return self.popen.stdout.fileno()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        if self.uid is not None:
            _kill_uid(self.uid)

    def cleanup(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.kill()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _uids_in_use() -> dict[int, list[int]]:
    """Real uid -> pids of live processes, from ``/proc`` (zombies are dead: skipped)."""
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("State:") and line.split()[1] in ("Z", "X"):
                        break
                    if line.startswith("Uid:"):
                        found.setdefault(int(line.split()[1]), []).append(int(entry.name))
                        break
        except OSError:
            continue  # the process ended while we looked
    return found


def _cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and its waited-for children (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), counted from the state (3).
    return sum(int(f) for f in fields[11:15]) / _CLK_TCK


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (forks a cell left behind), until none is left."""
    for _ in range(100):
        pids = _uids_in_use().get(uid, [])
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _world_executable(path: str) -> bool:
    """Whether a uid with no groups can run ``path`` (every directory above it searchable)."""
    real = Path(os.path.realpath(path))
    try:
        if not real.is_file() or not real.stat().st_mode & 0o001:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in real.parents)
    except OSError:
        return False


def _interpreter(python: str | None, confine: bool) -> str:
    """The child's interpreter: ``python``, else this one, else the system's same version.

    A confined child runs as an unprivileged uid, so the service's own interpreter may be out
    of its reach (a pyenv build under ``/root``); the child needs only the standard library.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = (
        [python] if python else [sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    )
    for candidate in candidates:
        if candidate and (not confine or _world_executable(candidate)):
            return os.path.realpath(candidate)  # the base interpreter, not a venv's shim
    raise SandboxUnavailable(
        f"no Python interpreter the sandbox's uid can run (tried {candidates}); install "
        f"{version} system-wide or pass python=",
        {"tried": candidates},
    )


def _child_sources() -> tuple[str, str]:
    here = Path(__file__).parent
    return (here / "framing.py").read_text(), (here / "_child.py").read_text()


class Sandbox:
    """A persistent, confined Python REPL for one RLM session (never shared).

    Args:
        on_call: Answers the cell's ``llm_query``/``rlm_query`` calls; the host enforces depth,
            budgets and quotas there. The attribute of the same name may be rebound between
            cells (a pre-started sandbox is given its session's callback when taken).
        limits: Resource limits; defaults are :class:`SandboxLimits`'s.
        hidden_paths: Directories the child must not see (the service's state dir, config);
            they are covered by empty tmpfs mounts in the child's mount namespace.
        unsafe_local: Run without the uid switch and namespaces (no network or filesystem
            isolation; limits still apply). An explicit operator choice for machines that can
            not isolate.
        uid_range: ``(first, end)`` of the uids sandboxes run as; none should belong to a user.
        python: The child's interpreter (standard library only is used). By default this
            process's interpreter if the sandbox's uid can run it, else the system's
            ``/usr/bin/python3.X`` of the same version.

    Raises:
        SandboxUnavailable: The OS can not isolate the child and ``unsafe_local`` is off.
    """

    def __init__(
        self,
        on_call: HostCall,
        *,
        limits: SandboxLimits | None = None,
        hidden_paths: Sequence[str | os.PathLike[str]] = (),
        unsafe_local: bool = False,
        uid_range: tuple[int, int] = (2_000_000_000, 2_000_000_000 + (1 << 26)),
        python: str | None = None,
    ) -> None:
        self.on_call = on_call
        self.limits = limits or SandboxLimits()
        self._hidden = [os.path.abspath(p) for p in hidden_paths]
        self.unsafe_local = unsafe_local
        self._uid_range = uid_range
        self._python = python
        self._context: Any = None
        self._has_context = False
        self._process: _Process | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._start()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the REPL process is running and usable."""
        process = self._process
        return process is not None and not process.closed and process.popen.poll() is None

    @property
    def pid(self) -> int:
        """The REPL process's pid (host view)."""
        return self._require().popen.pid

    @property
    def uid(self) -> int | None:
        """The uid the REPL runs as (``None`` in unsafe local mode)."""
        return self._require().uid

    @property
    def scratch_dir(self) -> Path:
        """The REPL's working directory, removed at :meth:`close`."""
        return self._require().scratch

    def _pick_uid(self) -> int:
        first, end = self._uid_range
        taken = _uids_in_use()
        while True:
            uid = first + secrets.randbelow(end - first)
            if uid not in taken:
                return uid

    def _start(self) -> None:
        confine = not self.unsafe_local
        if confine and os.geteuid() != 0:
            raise SandboxUnavailable(
                "the sandbox needs the service to run as root, to start each REPL as its own "
                "unprivileged uid; pass unsafe_local=True to run without isolation",
                {"euid": os.geteuid()},
            )
        uid = self._pick_uid() if confine else None
        scratch = Path(tempfile.mkdtemp(prefix="rlm-sandbox-"))
        if uid is not None:
            os.chown(scratch, uid, uid)
        config = {
            "confine": confine,
            "hidden_paths": self._hidden,
            "memory_bytes": self.limits.memory_bytes,
            "max_processes": self.limits.max_processes,
            "cpu_s_total": self.limits.cpu_s_total,
            "file_bytes": self.limits.file_bytes,
            "scratch_bytes": self.limits.scratch_bytes,
            "output_chars": self.limits.output_chars,
            "parent_pid": os.getpid(),
        }
        framing_src, child_src = _child_sources()
        python = _interpreter(self._python, confine)
        try:
            popen = subprocess.Popen(
                [python, "-I", "-S", "-B", "-c", _BOOT, framing_src, child_src, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=dict(_ENV),
                cwd=scratch,
                close_fds=True,
                start_new_session=True,
                user=uid,
                group=uid,
                extra_groups=[] if uid is not None else None,
            )
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        process = _Process(popen, scratch, uid, framing.FrameDecoder(self.limits.max_frame_bytes))
        os.set_blocking(process.write_fd, False)
        self._process = process
        self._finalizer = weakref.finalize(self, process.cleanup)
        try:
            ready = self._read(time.monotonic() + self.limits.start_timeout_s)
        except (_ChildGone, framing.FrameError) as exc:
            self.close()
            raise SandboxError(f"the sandbox did not start: {exc}") from None
        if ready is None or ready.get("op") != "ready":
            self.close()
            raise SandboxError("the sandbox did not start in time")
        if ready.get("error"):
            self.close()
            raise SandboxUnavailable(
                f"the OS refused the sandbox's isolation ({ready['error']}); user namespaces "
                "may be disabled. Pass unsafe_local=True to run without isolation",
                {"reason": ready["error"]},
            )
        if self._has_context:
            self.set_context(self._context)

    def restart(self) -> None:
        """Replace the process with a fresh one (empty namespace; ``context`` is set again)."""
        self._stop()
        self._start()

    def close(self) -> None:
        """Kill the process and every process it started; remove the scratch dir."""
        self._stop()

    def kill(self) -> None:
        """Kill the process and every process of its uid, from any thread.

        Unlike :meth:`close` it leaves the pipes open, so a thread blocked in :meth:`run` is
        not left reading a closed descriptor: its cell ends as ``crashed``. Call
        :meth:`close` afterwards (from the thread that uses the sandbox).
        """
        process = self._process
        if process is not None and not process.closed:
            process.kill()

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs process.cleanup once
        self._process = None
        self._finalizer = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the wire ------------------------------------------------------------------------

    def _require(self) -> _Process:
        if self._process is None or self._process.closed:
            raise SandboxDead("the sandbox process is gone; call restart()")
        return self._process

    def _send(self, message: dict[str, Any], deadline: float) -> bool:
        """Write one frame; ``False`` if the child did not take it before ``deadline``."""
        return self._send_frame(framing.encode(message), deadline)

    def _send_frame(self, frame: bytes, deadline: float) -> bool:
        """Write an encoded frame; ``False`` if the child did not take it before ``deadline``."""
        process = self._require()
        view = memoryview(frame)
        poller = select.poll()
        poller.register(process.write_fd, select.POLLOUT)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if not poller.poll(remaining * 1000):
                continue
            try:
                view = view[os.write(process.write_fd, view) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _ChildGone("the sandbox closed its pipe") from None
        return True

    def _read(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or ``None`` at ``deadline``.

        Raises:
            _ChildGone: The child closed its pipe (it exited or was killed).
            framing.FrameError: The child sent a malformed or oversized frame.
        """
        process = self._require()
        if process.pending:
            return process.pending.pop(0)
        poller = select.poll()
        poller.register(process.read_fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not poller.poll(remaining * 1000):
                continue
            data = os.read(process.read_fd, 1 << 16)
            if not data:
                raise _ChildGone(f"exit status {process.popen.wait()}")
            messages = process.decoder.feed(data)
            if messages:
                process.pending.extend(messages[1:])
                return messages[0]

    # -- the REPL ------------------------------------------------------------------------

    def set_context(self, value: Any, timeout_s: float = 60.0) -> None:
        """Bind ``context`` in the namespace to a copy of ``value`` (JSON-able).

        Raises:
            InvalidInput: ``value`` is not JSON-serialisable.
            SandboxDead: The process is gone.
        """
        try:
            frame = framing.encode({"op": "context", "value": value})  # once: it may be large
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the context is not JSON-serialisable: {exc}") from None
        self._context, self._has_context = value, True
        deadline = time.monotonic() + timeout_s
        try:
            sent = self._send_frame(frame, deadline)
            reply = self._read(deadline) if sent else None
        except (_ChildGone, framing.FrameError):
            reply = None
        if reply is None or reply.get("op") != "ok":
            self._stop()
            raise SandboxDead("the sandbox did not take the context; call restart()")

    def run(self, code: str, timeout_s: float = 60.0, *, cpu_s: int | None = None) -> CellResult:
        """Run one cell in the persistent namespace.

        Args:
            code: Python source from the model.
            timeout_s: Wall-clock limit, host calls included.
            cpu_s: CPU-time limit of the cell (whole seconds); defaults to ``timeout_s``.

        Returns:
            The cell's feedback; what the code did wrong is in ``error``, never raised.

        Raises:
            SandboxDead: The process was already gone (call :meth:`restart`).
        """
        self._require()
        started = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        cpu = cpu_s if cpu_s is not None else max(1, math.ceil(timeout_s))
        cpu_start = _cpu_seconds(self.pid)
        interrupted = False

        def ended(reason: str, error: str) -> CellResult:
            self._stop()
            elapsed = (time.perf_counter() - started) * 1000
            return CellResult("", "", [], error, elapsed, reason)

        try:
            if not self._send({"op": "run", "code": code, "cpu_s": cpu}, deadline):
                return ended("wall_timeout_killed", "the sandbox did not take the cell")
            while True:
                message = self._read(min(deadline, time.monotonic() + CPU_CHECK_S))
                if message is None and time.monotonic() < deadline:
                    used = _cpu_seconds(self.pid) - cpu_start
                    if used > cpu + CPU_SLACK_S:
                        return ended(
                            "cpu_limit_killed",
                            f"the cell used {used:.1f} s of CPU time, past its limit of {cpu} s "
                            "(its own limit was raised or its signal ignored); the sandbox was "
                            "killed (its variables are lost)",
                        )
                    continue
                if message is None:
                    if interrupted:
                        return ended(
                            "wall_timeout_killed",
                            f"the cell ran past its {timeout_s} s timeout and did not stop on "
                            "interrupt; the sandbox was killed (its variables are lost)",
                        )
                    os.kill(self.pid, signal.SIGINT)
                    interrupted = True
                    deadline = time.monotonic() + self.limits.interrupt_grace_s
                    continue
                op = message["op"]
                if op == "call":
                    answers = self._answer(message, refuse=interrupted)
                    if not self._send({"op": "reply", "results": answers}, deadline):
                        continue  # the timeout path above handles a child that stopped reading
                elif op == "result":
                    return self._result(message, started, interrupted, timeout_s)
                else:
                    return ended("protocol_violation", f"unexpected message {op!r}")
        except _ChildGone as exc:
            return ended("crashed", f"the sandbox process died ({exc}); call restart()")
        except (framing.FrameError, KeyError, TypeError, ValueError) as exc:
            return ended("protocol_violation", f"the sandbox broke the protocol: {exc}")

    def lookup(self, name: str, timeout_s: float = 10.0) -> Lookup:
        """``str()`` of the variable ``name`` and the names of all variables (``FINAL_VAR``).

        ``str()`` runs the model's code (a ``__str__``), under a CPU cap of ``timeout_s``;
        a lookup that does not answer within ``timeout_s`` kills the process (then
        :class:`SandboxDead` on the next call, as after a killed cell).

        Raises:
            SandboxDead: The process is gone, or was killed here.
        """
        self._require()
        deadline = time.monotonic() + timeout_s
        cpu = max(1, math.ceil(timeout_s))
        try:
            sent = self._send({"op": "var", "name": name, "cpu_s": cpu}, deadline)
            reply = self._read(deadline) if sent else None
        except (_ChildGone, framing.FrameError):
            reply = None
        if reply is None or reply.get("op") != "var":
            self._stop()
            raise SandboxDead(f"the sandbox did not answer a lookup of {name!r}; restart it")
        value, names, error = reply.get("value"), reply.get("names"), reply.get("error")
        return Lookup(
            value=None if value is None else str(value),
            names=[str(n) for n in names] if isinstance(names, list) else [],
            error=None if error is None else str(error),
        )

    def _answer(self, message: dict[str, Any], *, refuse: bool) -> list[str]:
        # The decoder checked the fields' types (framing.CHILD_MESSAGES); the kind is ours.
        kind, prompts, model = message["kind"], message["prompts"], message["model"]
        if kind not in HOST_FUNCTIONS:
            raise ValueError(f"unknown host function {kind!r:.40}")
        if len(prompts) > self.limits.max_prompts_per_call:
            return [f"Error: at most {self.limits.max_prompts_per_call} prompts per call"] * len(
                prompts
            )
        if refuse:
            return ["Error: the cell timed out"] * len(prompts)
        try:
            answers = self.on_call(kind, prompts, model)
            if len(answers) != len(prompts):
                raise SandboxError(f"{len(answers)} answers for {len(prompts)} prompts")
            return [str(a) for a in answers]
        except Exception as exc:  # any host failure is the code's feedback, as in rlms
            return [f"Error: {exc}"] * len(prompts)

    def _result(
        self, message: dict[str, Any], started: float, interrupted: bool, timeout_s: float
    ) -> CellResult:
        error = message["error"]
        killed = message["killed_reason"]
        if interrupted and killed is None:
            killed = "wall_timeout"
            error = f"the cell ran past its {timeout_s} s timeout and was interrupted\n{error}"
        return CellResult(
            stdout=str(message["stdout"]),
            stderr=str(message["stderr"]),
            new_vars=[str(v) for v in message["new_vars"]],
            error=None if error is None else str(error),
            duration_ms=(time.perf_counter() - started) * 1000,
            killed_reason=killed,
            answer=None if message.get("answer") is None else str(message["answer"]),
        )

"""The REPL that runs inside the sandboxed child process (standard library only).

The host does not import this module: it sends its source, with :mod:`rlm.sandbox.framing`'s,
to ``python -I -S -c`` (see ``host._bootstrap``), which calls :func:`main`. Everything before
the first cell is trusted start-up: it moves the protocol off fds 0/1, confines the process
(user + network + mount namespaces, hidden paths, ``no_new_privs``) and sets the resource
limits. Only then does model-written code run, in one persistent namespace.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import io
import json
import os
import resource
import signal
import sys
import traceback
from collections.abc import Mapping
from types import ModuleType
from typing import Any, BinaryIO

__all__ = ["main"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 0x1
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_NOEXEC = 0x8
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 0x40000
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1
_HOST_FUNCTIONS = ("llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched")
#: Longest text of an answer or of a variable sent to the host (characters).
_MAX_VALUE_CHARS = 1_000_000


class _CPULimit(BaseException):
    """Raised from SIGXCPU; a BaseException so ``except Exception`` in a cell does not eat it."""


class _Capped(io.TextIOBase):
    """A text sink keeping the first and last ``limit // 2`` characters and a count."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self._total = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        self._total += n
        room = self._half - self._head_len
        if room > 0:
            self._head.append(s[:room])
            self._head_len += min(room, n)
            s = s[room:]
        if s:
            self._tail = (self._tail + s[-self._half :])[-self._half :]
        return n

    def getvalue(self) -> str:
        head = "".join(self._head)
        dropped = self._total - len(head) - len(self._tail)
        if dropped <= 0:
            return head + self._tail
        return f"{head}\n... [{dropped} characters truncated] ...\n{self._tail}"


def _libc_check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _write_maps(uid: int, gid: int) -> None:
    # Map only our own ids: an unprivileged process may do that and nothing more.
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _confine(hidden_paths: list[str], scratch_bytes: int) -> None:
    """New user + network + mount namespaces; writable scratch only in a capped tmpfs; hide
    ``hidden_paths`` under empty read-only tmpfs.

    The process already runs as an unprivileged uid (the host's Popen ``user=``), so the new
    user namespace grants capabilities over these namespaces only. The network namespace has a
    loopback that is down and no other interface. After the mounts, a second user + mount
    namespace makes them *locked*: code holding capabilities there can not unmount them.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    _libc_check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS), "unshare")
    _write_maps(uid, gid)
    _libc_check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount private /")
    _mount_scratch(libc, scratch_bytes)
    flags = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    for path in hidden_paths:
        result = libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, b"size=4k,mode=000")
        if result != 0 and ctypes.get_errno() not in (2, 13):  # ENOENT, EACCES: unreachable
            _libc_check(result, f"mount tmpfs over {path}")
    _libc_check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare (lock mounts)")
    _write_maps(uid, gid)


def _mount_scratch(libc: Any, size: int) -> None:
    """One tmpfs of ``size`` bytes is every place the REPL can write: ``/tmp``, and bound onto
    ``/var/tmp``, ``/dev/shm``, ``/run/lock`` and the working directory. Written files are
    memory, so the one cap bounds them all (``RLIMIT_FSIZE`` still caps each file); the
    host's own ``/tmp`` (and everything hidden there) is out of sight."""
    cwd = os.getcwd()
    options = f"size={size},mode=1777".encode()
    _libc_check(
        libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, options), "mount /tmp"
    )
    targets = [("var-tmp", "/var/tmp"), ("shm", "/dev/shm"), ("run-lock", "/run/lock")]
    if not cwd.startswith("/tmp/"):
        targets.append(("work", cwd))
    for name, target in targets:
        if not os.path.isdir(target):
            continue
        source = f"/tmp/.{name}"
        os.mkdir(source)
        os.chmod(source, 0o1777 if name != "work" else 0o700)
        result = libc.mount(os.fsencode(source), os.fsencode(target), None, _MS_BIND, None)
        if result != 0 and ctypes.get_errno() not in (2, 13):  # ENOENT, EACCES: unreachable
            _libc_check(result, f"bind scratch onto {target}")
    if cwd.startswith("/tmp/"):  # the host's scratch dir was in the /tmp now covered
        os.makedirs(cwd, mode=0o700, exist_ok=True)
    os.chdir(cwd)


def _set_limits(config: dict[str, Any]) -> None:
    def cap(which: int, value: int) -> None:
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_AS, int(config["memory_bytes"]))
    cap(resource.RLIMIT_NPROC, int(config["max_processes"]))
    cap(resource.RLIMIT_FSIZE, int(config["file_bytes"]))
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_CPU, int(config["cpu_s_total"]))
    # A write past RLIMIT_FSIZE fails with EFBIG instead of killing the REPL.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _close_other_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):  # listdir's own fd, already closed
                os.close(fd)


class _Repl:
    def __init__(self, framing: ModuleType, reader: BinaryIO, wfd: int, config: dict[str, Any]):
        self._framing = framing
        self._reader = reader
        self._wfd = wfd
        self._output_chars = int(config["output_chars"])
        self._pid = os.getpid()
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        for name in _HOST_FUNCTIONS:
            self.namespace[name] = self._host_function(name)
        self.namespace["SHOW_VARS"] = self._show_vars
        # The reference's way to answer: set answer["content"], then answer["ready"] = True.
        self.namespace["answer"] = {"content": "", "ready": False}

    def send(self, message: dict[str, Any]) -> None:
        data = self._framing.encode(message)
        view = memoryview(data)
        while view:
            view = view[os.write(self._wfd, view) :]

    def read(self) -> dict[str, Any] | None:
        message: dict[str, Any] | None = self._framing.read_message(self._reader)
        return message

    def _host_function(self, kind: str) -> Any:
        batched = kind.endswith("_batched")

        def call(prompts: Any, model: str | None = None) -> Any:
            items = list(prompts) if batched else [prompts]
            if not all(isinstance(p, str) for p in items):
                raise TypeError(f"{kind}: prompts must be str")
            if model is not None and not isinstance(model, str):
                raise TypeError(f"{kind}: model must be a str or None")
            self.send({"op": "call", "kind": kind, "prompts": items, "model": model})
            reply = self.read()
            if reply is None or reply.get("op") != "reply":
                raise RuntimeError(f"{kind}: the host did not answer")
            results = [str(r) for r in reply["results"]]
            return results if batched else results[0]

        call.__name__ = kind
        return call

    def _user_names(self) -> list[str]:
        hidden = {"__name__", "__builtins__", "SHOW_VARS", "answer", *_HOST_FUNCTIONS}
        return [k for k in self.namespace if k not in hidden and not k.startswith("_")]

    def _show_vars(self) -> str:
        # The reference's text (rlms 0.1.3), so prompts tuned on it read the same.
        available = {k: type(self.namespace[k]).__name__ for k in self._user_names()}
        if not available:
            return "No variables created yet. Use ```repl``` blocks to create variables."
        return f"Available variables: {available}"

    def _answer(self) -> str | None:
        # The rule of rlm.rlmmode.answer.answer_from_dict (this file cannot import rlm).
        answer = self.namespace.get("answer")
        if not isinstance(answer, Mapping) or not answer.get("ready"):
            return None
        return _cap(str(answer.get("content", "")))

    def _format_error(self, exc: BaseException) -> str:
        # Skip the REPL's own frame: the model should see its cell, not this file.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        sink = _Capped(self._output_chars)
        sink.write(text)
        return sink.getvalue()

    @staticmethod
    def _cpu_cap(cpu_s: int) -> int:
        """Set a soft CPU limit ``cpu_s`` from now; the hard limit to restore after."""
        _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = int(usage.ru_utime + usage.ru_stime) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (min(hard, used + max(cpu_s, 1)), hard))
        return hard

    def run(self, code: str, cpu_s: int) -> dict[str, Any]:
        before = set(self.namespace)
        out, err = _Capped(self._output_chars), _Capped(self._output_chars)
        error: str | None = None
        killed: str | None = None
        answer: str | None = None
        hard = self._cpu_cap(cpu_s)
        sys.stdout, sys.stderr = out, err
        try:
            try:
                exec(compile(code, "<cell>", "exec"), self.namespace)
            finally:
                # Also after an exception (the reference takes the answer when ``ready``
                # flips), and inside the cell's limits: str() of the content runs its code.
                answer = self._answer()
        except _CPULimit:
            killed = "cpu_limit"
            error = f"CPU time limit of {cpu_s} s exceeded; the cell was stopped"
        except BaseException as exc:  # everything a cell raises is feedback, SystemExit too
            error = self._format_error(exc)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        if os.getpid() != self._pid:
            os._exit(0)  # a fork of the REPL made by the cell: only the REPL answers
        _reap()
        return {
            "op": "result",
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "new_vars": [k for k in self.namespace if k not in before],
            "error": error,
            "killed_reason": killed,
            "answer": answer,
        }

    def lookup(self, name: str, cpu_s: int) -> dict[str, Any]:
        """``str()`` of one variable (for ``FINAL_VAR``) and the names of them all."""
        value: str | None = None
        error: str | None = None
        hard = self._cpu_cap(cpu_s)
        sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
        sys.stdout = sys.stderr = sink  # a __str__ that prints writes nowhere
        try:
            if name in self._user_names():
                value = _cap(str(self.namespace[name]))
        except _CPULimit:
            error = f"CPU time limit of {cpu_s} s exceeded"
        except BaseException as exc:  # str() runs the model's code: anything may happen
            error = f"{type(exc).__name__}: {exc}"
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            sink.close()
            resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
        if os.getpid() != self._pid:
            os._exit(0)
        return {"op": "var", "value": value, "names": self._user_names(), "error": error}

    def serve(self) -> None:
        while True:
            try:
                message = self.read()
            except KeyboardInterrupt:
                continue  # an interrupt that arrived just after a cell ended
            if message is None:
                return
            op = message["op"]
            if op == "run":
                self.send(self.run(str(message["code"]), int(message.get("cpu_s", 60))))
            elif op == "context":
                self.namespace["context"] = message["value"]
                self.send({"op": "ok"})
            elif op == "var":
                self.send(self.lookup(str(message["name"]), int(message.get("cpu_s", 10))))


def _cap(text: str) -> str:
    if len(text) <= _MAX_VALUE_CHARS:
        return text
    return text[:_MAX_VALUE_CHARS]


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _on_sigxcpu(signum: int, frame: Any) -> None:
    raise _CPULimit


def main(framing: ModuleType, config_json: str) -> None:
    """Start-up, confinement, then the REPL loop until the host closes the pipe."""
    config = json.loads(config_json)
    # The protocol moves to fresh fds; 0/1/2 become /dev/null so stray writes (a subprocess,
    # os.write(1, ...)) can not corrupt the frames.
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    _close_other_fds({rfd, wfd})
    reader = os.fdopen(rfd, "rb")
    # Outside a cell, output goes nowhere.
    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    sys.stdout = sys.stderr = sink
    sys.__stdout__ = sys.__stderr__ = sink  # type: ignore[misc]
    repl = _Repl(framing, reader, wfd, config)
    error: str | None = None
    try:
        if config["confine"]:
            _confine(list(config["hidden_paths"]), int(config["scratch_bytes"]))
        libc = ctypes.CDLL(None, use_errno=True)
        _libc_check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _set_limits(config)
        # Killed with the host thread that started it, so a host that dies (SIGKILL, an
        # engine shut down) never leaves a REPL behind. Set last: credential changes clear it.
        _libc_check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if config.get("parent_pid") is not None and os.getppid() != config["parent_pid"]:
            os._exit(0)  # the host died before the signal was armed
    except OSError as exc:
        error = str(exc)
    repl.send({"op": "ready", "confined": bool(config["confine"]), "error": error})
    if error is not None:
        return
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    repl.serve()

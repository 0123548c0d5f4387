"""``rlm serve`` in a process of its own, as a user starts it: for the tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import ok_response, wait_until

__all__ = ["Served", "descendants", "free_port", "kill_tree", "rlm_serve"]


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(root: int) -> list[int]:
    """Every process below ``root`` (children, their children...), read from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL ``process`` and everything it started (its local Ray, the engine's actors), as
    a crash or an OOM kill would: no handler runs, nothing is flushed or shut down."""
    tree = [process.pid, *descendants(process.pid)]  # listed first: orphans leave the tree
    for pid in tree:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # and anything started since, in its session
    process.wait(timeout=30)
    # A killed process is still there until it has exited and been reaped (a Ray worker
    # unmapping its object store takes a while): a restart before then finds the old engine
    # "alive" by its pid and refuses, as it must. Wait until all of them are gone.
    wait_until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in tree[1:]),
        30,
        lambda: f"the killed processes exit: {[p for p in tree if Path(f'/proc/{p}').exists()]}",
        interval=0.05,
    )


@dataclass
class Served:
    """A running ``rlm serve``: its process, API base URL and output so far."""

    process: subprocess.Popen[str]
    base: str
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        """Everything it printed (stdout and stderr) so far."""
        return "".join(self.lines)


@contextmanager
def rlm_serve(
    env: dict[str, str],
    port: int,
    *args: str,
    scheme: str = "http",
    verify: bool | ssl.SSLContext = True,
) -> Iterator[Served]:
    """Start ``rlm serve --port PORT [ARGS]``, wait until it is ready, stop it with Ctrl-C.

    Its replicas' shutdown poll is 0.1 s unless ``env`` sets ``RLM_SERVER__SHUTDOWN_POLL_S``.
    Ready is what a user waits for: the banner (printed once ``serve.run`` has returned) and
    a health answer. The proxy may answer before ``serve.run`` returns, and a Ctrl-C then
    would interrupt it before the banner is printed. ``scheme`` and ``verify`` say how the
    health check reaches it (``https`` and the CA of its certificate, for TLS).
    """
    # Its replicas, when stopped, check for requests in flight every 0.1 s rather than every
    # 2 s (Serve's default): they still wait for every one, but an idle replica no longer
    # waits 2 s for nothing at each of the suite's stops. A test may set its own.
    env = {"RLM_SERVER__SHUTDOWN_POLL_S": "0.1", **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "rlm", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    served = Served(process, f"{scheme}://127.0.0.1:{port}/v1")
    # Drain the output as it comes: a full pipe would block the server's writes (and a
    # Ctrl-C then drops what it had buffered).
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: served.lines.extend(stdout), daemon=True)
    reader.start()
    try:

        def ready() -> bool:
            assert process.poll() is None, served.output
            if served.base not in served.output:
                return False
            health = f"{served.base}/health"
            return ok_response(lambda: httpx.get(health, timeout=2, verify=verify)) is not None

        # Polled often: until the banner is printed a poll only reads the output so far, and
        # every start of the suite waits on this (a 1 s poll cost half a second each).
        wait_until(ready, 150, "rlm serve prints its banner and answers /health", interval=0.2)
        yield served
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(timeout=30)

"""A Ray cluster of its own for a test: ``ray start --head`` (and ``--address`` workers), as an
operator starts one, on free ports and a short temporary directory.

The test session may run its own local Ray (``tests/conftest.py``), and other Rays may run on
the machine: nothing here uses ``ray stop`` (it stops every Ray of the machine). Each node is
``ray start --block`` in a process group of its own; stopping it sends SIGTERM to that
process, which stops the node's Ray processes (Ray's own shutdown hook), then kills what is
left of its group.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.api.serve_process import free_port
from tests.support import wait_until

__all__ = ["RayNode", "cluster_env", "ray_bin", "start_head", "start_worker"]

#: The Ray CLI of the environment the tests run in.
_BIN = Path(sys.executable).parent


def ray_bin(name: str) -> str:
    """The path of a console script of this environment (``ray``, ``serve``, ``rlm``)."""
    return str(_BIN / name)


def cluster_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a test cluster's nodes and CLI calls run in.

    The session's Ray address and settings are dropped, so nothing joins the session's Ray;
    this environment's ``bin`` comes first on ``PATH``, so a job's ``python`` is its Python.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RLM_", "RAY_ADDRESS", "PYTEST_", "RAY_SERVE_"))
    }
    env["PATH"] = f"{_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RLM_STATE_DIR"] = str(state_dir)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Token authentication, as Ray 2.60 enables by default, with a token of this cluster's
    # own (not the user's ~/.ray/auth_token): every CLI call and HTTP request presents it.
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    # A test cluster stops at once: no draining of Serve proxies before its processes go.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    env.update(extra)
    return env


@dataclass
class RayNode:
    """One ``ray start --block`` process: a node of a test cluster."""

    process: subprocess.Popen[str]
    temp_dir: Path
    env: dict[str, str]
    gcs_address: str = ""
    dashboard_url: str | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        """The header the cluster's dashboard wants (its token)."""
        return {"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}

    @property
    def output(self) -> str:
        """What ``ray start`` printed so far."""
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        """Stop this node: ``sig`` to ``ray start`` (SIGTERM: Ray stops its processes), then
        SIGKILL to whatever of its process group is left."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """Lose the node at once, as a machine that dies: SIGKILL to its whole process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def _spawn(args: list[str], env: Mapping[str, str], temp_dir: Path) -> RayNode:
    process = subprocess.Popen(
        [ray_bin("ray"), "start", "--block", "--disable-usage-stats", *args],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopped and killed as one
    )
    node = RayNode(process, temp_dir, dict(env))
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: node.lines.extend(stdout), daemon=True).start()
    return node


def _node_ports() -> list[str]:
    # Every port a node opens that has a fixed default, so two clusters never collide.
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def _temp_dir() -> Path:
    # Short: Ray's socket paths live under it and a Unix socket path has ~107 bytes.
    return Path(tempfile.mkdtemp(prefix="rlmray-", dir="/tmp"))


#: ``ray start`` gives a node's raylet a fixed 30 s to register with the GCS; on a machine
#: under heavy load it can miss that, and exits. Another attempt, on new ports, is then made.
_ATTEMPTS = 3


def _launch(
    make_args: Callable[[Path], list[str]],
    env: Mapping[str, str],
    ready: Callable[[RayNode], bool],
    timeout: float,
    what: str,
) -> RayNode:
    """Start a node, retrying when ``ray start`` itself gives up (see :data:`_ATTEMPTS`)."""
    for attempt in range(1, _ATTEMPTS + 1):
        temp_dir = _temp_dir()
        node = _spawn(make_args(temp_dir), env, temp_dir)

        def up(node: RayNode = node) -> bool | str:
            if node.process.poll() is not None:
                return "exited"
            return "block forever" in node.output and ready(node)

        outcome = wait_until(
            up, timeout, lambda node=node: f"{what} is up:\n{node.output}", interval=0.5
        )
        if outcome is True:
            return node
        node.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
        if attempt == _ATTEMPTS:
            pytest.fail(f"{what} exited {_ATTEMPTS} times:\n{node.output}", pytrace=False)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _running(node: RayNode) -> Iterator[RayNode]:
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(node.temp_dir, ignore_errors=True)


@contextlib.contextmanager
def start_head(
    env: Mapping[str, str], *, num_cpus: int = 2, dashboard: bool = True, timeout: float = 120
) -> Iterator[RayNode]:
    """``ray start --head`` on free ports; yields once its GCS (and dashboard) answer."""
    dash_port = 0

    def args(temp_dir: Path) -> list[str]:
        nonlocal dash_port
        dash_port = free_port()
        listed = [
            "--head",
            f"--port={free_port()}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={temp_dir}",
            f"--ray-client-server-port={free_port()}",
            f"--include-dashboard={'true' if dashboard else 'false'}",
            *_node_ports(),
        ]
        if dashboard:
            listed += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}"]
        return listed

    def ready(node: RayNode) -> bool:
        # The address workers join with, as `ray start` prints it (the node's IP).
        found = re.search(r"ray start --address='([^']+)'", node.output)
        assert found is not None, node.output
        node.gcs_address = found.group(1)
        if not dashboard:
            return True
        node.dashboard_url = f"http://127.0.0.1:{dash_port}"
        try:
            url = f"{node.dashboard_url}/api/version"
            return httpx.get(url, headers=node.auth, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    with _running(_launch(args, env, ready, timeout, "ray start --head")) as node:
        yield node


@contextlib.contextmanager
def start_worker(
    head: RayNode, env: Mapping[str, str], *, num_cpus: int = 1, timeout: float = 120
) -> Iterator[RayNode]:
    """``ray start --address HEAD``: a second raylet on this machine; yields once it runs."""

    def args(temp_dir: Path) -> list[str]:
        return [
            f"--address={head.gcs_address}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={temp_dir}",
            *_node_ports(),
        ]

    def ready(node: RayNode) -> bool:
        node.gcs_address = head.gcs_address
        return True

    with _running(_launch(args, env, ready, timeout, "ray start --address")) as node:
        yield node

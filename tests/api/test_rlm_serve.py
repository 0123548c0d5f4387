"""``rlm serve`` as the README runs it: a process of its own, a token from ``rlm token``, Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.support import ok_response, wait_until

pytestmark = pytest.mark.integration


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_rlm_serve_token_execute_and_ctrl_c(tmp_path: Path) -> None:
    port = _port()
    env = {**os.environ, "RLM_STATE_DIR": str(tmp_path), "RLM_ENGINE__AGENTS": "1"}
    env.pop("RAY_ADDRESS", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "rlm", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # Drain the output as it comes: a full pipe would block the server's writes (and a
    # Ctrl-C then drops what it had buffered).
    lines: list[str] = []
    assert server.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(server.stdout), daemon=True)
    reader.start()
    try:
        base = f"http://127.0.0.1:{port}/v1"

        def ready() -> bool:
            # Ready is what a user waits for: the banner (printed once serve.run has returned)
            # and a health answer. The proxy may answer before serve.run returns, and a
            # Ctrl-C then would interrupt it before the banner is printed.
            assert server.poll() is None, "".join(lines)
            if base not in "".join(lines):
                return False
            return ok_response(lambda: httpx.get(f"{base}/health", timeout=2)) is not None

        wait_until(ready, 150, "rlm serve prints its banner and answers /health", interval=1)
        token = subprocess.run(
            [sys.executable, "-m", "rlm", "token", "--sub", "alice", "--tier", "user"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        response = httpx.post(
            f"{base}/execute",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "type": "recursive",
                "description": "Sum large dataset",
                "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
                "options": {"timeoutMs": 30000, "priority": "normal"},
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["output"] == 55
        assert httpx.get(f"{base.removesuffix('/v1')}/docs", timeout=10).status_code == 200
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        reader.join(timeout=30)
    out = "".join(lines)
    assert server.returncode == 0, out
    assert f"http://127.0.0.1:{port}/v1" in out, out[-4000:]
    assert "rlm token" in out

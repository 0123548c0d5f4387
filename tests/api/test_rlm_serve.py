"""``rlm serve`` as the README runs it: a process of its own, a token from ``rlm token``, Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.serve_process import free_port, rlm_serve

pytestmark = pytest.mark.integration


def test_rlm_serve_token_execute_and_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "RLM_STATE_DIR": str(tmp_path), "RLM_ENGINE__AGENTS": "1"}
    env.pop("RAY_ADDRESS", None)
    with rlm_serve(env, port) as served:
        base = served.base
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
    out = served.output
    assert served.process.returncode == 0, out
    assert f"http://127.0.0.1:{port}/v1" in out, out[-4000:]
    assert "rlm token" in out

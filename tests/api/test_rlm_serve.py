"""``rlm serve`` as the README runs it: a process of its own, a token from ``rlm token``, Ctrl-C."""

from __future__ import annotations

import json
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


def test_json_logs_carry_the_request_id_on_every_line(tmp_path: Path) -> None:
    port = free_port()
    logs = tmp_path / "logs"
    env = {
        **os.environ,
        "RLM_STATE_DIR": str(tmp_path / "state"),
        "RLM_ENGINE__AGENTS": "1",
        "RLM_LOG_FORMAT": "json",
        "RLM_LOG_DIR": str(logs),
    }
    env.pop("RAY_ADDRESS", None)
    rid = "req-json-logs-test-7f3a"
    with rlm_serve(env, port) as served:
        answer = httpx.get(f"{served.base}/health", headers={"X-Request-ID": rid}, timeout=10)
        assert answer.headers["x-request-id"] == rid
        bad = httpx.post(
            f"{served.base}/execute", content=b"{", headers={"X-Request-ID": rid + "-bad"}
        )
        assert bad.json()["requestId"] == rid + "-bad"
    files = sorted(logs.glob("*.log"))
    assert files, f"no replica log in {logs}"
    records = []
    for path in files:
        for line in path.read_text().splitlines():
            if line.strip():
                records.append(json.loads(line))  # every line is one JSON object
    mine = [r for r in records if r.get("request_id") in (rid, rid + "-bad")]
    assert {r["request_id"] for r in mine} == {rid, rid + "-bad"}, records[-20:]
    assert any("/v1/health" in r.get("message", "") for r in mine)


def test_an_audit_key_others_can_read_is_refused_before_anything_starts(tmp_path: Path) -> None:
    key_file = tmp_path / "audit-key"
    key = "ab" * 32
    key_file.write_text(key + "\n")
    key_file.chmod(0o644)
    env = {**os.environ, "RLM_STATE_DIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    env.pop("RLM_DATABASE_URL", None)
    refused = subprocess.run(
        [sys.executable, "-m", "rlm", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = refused.stdout + refused.stderr
    assert refused.returncode == 2, out[-4000:]
    assert "is serving on" not in out and "Traceback" not in out, out[-4000:]
    error = json.loads(refused.stderr.strip().splitlines()[-1])["error"]
    assert error["details"] == {"keyFile": str(key_file), "reason": "audit_key_unsafe"}
    assert "chmod 600" in error["message"], error
    assert key not in out

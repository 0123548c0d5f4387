"""``rlm serve`` as the README runs it: a process of its own, a token from ``rlm token``, Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import Settings
from tests.api.serve_process import free_port, rlm_serve

pytestmark = pytest.mark.integration

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----"


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


def test_json_logs_carry_the_request_id_and_never_a_secret(tmp_path: Path) -> None:
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
        # Nothing secret reaches a log (#11): a valid token, a forged one, and credentials
        # in request bodies, refused or not.
        settings = Settings(state_dir=tmp_path / "state")
        key = load_signing_key(settings.auth, settings.state_dir, settings.env)
        token = issue_token(
            "ada", ["rlm:execute", "rlm:read"], "user", settings=settings.auth, key=key
        )
        forged = token[:-8] + ("A" * 8 if not token.endswith("A" * 8) else "B" * 8)
        auth = {"Authorization": f"Bearer {token}"}
        checked = httpx.post(
            f"{served.base}/security/validate", json={"input": f"key {AWS_KEY}"}, headers=auth
        )
        assert checked.status_code == 200 and checked.json()["allowed"] is False
        task = {
            "type": "parallel",
            "description": "count",
            "input": {"items": [f"creds: {AWS_KEY}", PEM], "operation": "word_count"},
        }
        refused = httpx.post(f"{served.base}/execute", json=task, headers=auth, timeout=60)
        assert refused.status_code == 400, refused.text
        denied = httpx.get(f"{served.base}/tasks", headers={"Authorization": f"Bearer {forged}"})
        assert denied.status_code == 401
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
    # Requests were logged (the refusals too), and no secret with them.
    assert any("/v1/security/validate" in r.get("message", "") for r in records)
    everything = served.output + "".join(path.read_text() for path in files)
    signature = token.rsplit(".", 1)[1]
    for secret in (token, signature, forged.rsplit(".", 1)[1], AWS_KEY, "MIIEpAIBAAKCAQEA7x"):
        assert secret not in everything, secret[:12]


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

"""``rlm serve --tls-cert/--tls-key``: HTTPS with TLS 1.3 only, plain HTTP refused, the SDK
trusting the certificate through its CA file; production refuses plain HTTP."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import Settings
from rlm_hypervisor import RLMClient
from tests.api.serve_process import free_port, rlm_serve
from tests.tls_support import self_signed

pytestmark = pytest.mark.integration


def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    """The protocol a client with ``context`` agrees on, or ``None`` when refused."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version()
        except ssl.SSLError:
            return None


def test_https_with_tls_1_3_only(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    state = tmp_path / "state"
    port = free_port()
    env = {**os.environ, "RLM_STATE_DIR": str(state), "RLM_ENGINE__AGENTS": "1"}
    env.pop("RAY_ADDRESS", None)
    trusted = ssl.create_default_context(cafile=str(cert))
    args = ("--tls-cert", str(cert), "--tls-key", str(key))
    with rlm_serve(env, port, *args, scheme="https", verify=trusted) as served:
        assert served.base == f"https://127.0.0.1:{port}/v1"
        # A client that speaks at most TLS 1.2 is refused; TLS 1.3 is what is agreed.
        old = ssl.create_default_context(cafile=str(cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        assert _handshake(port, old) is None
        assert _handshake(port, ssl.create_default_context(cafile=str(cert))) == "TLSv1.3"
        # Plain HTTP on the same port gets no answer at all.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10)
        # A client that does not trust the certificate is refused too.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{served.base}/health", timeout=10)
        # The SDK, given the CA file, does everything over HTTPS.
        settings = Settings(state_dir=state)
        token = issue_token(
            "alice",
            ["rlm:execute", "rlm:read"],
            "user",
            settings=settings.auth,
            key=load_signing_key(settings.auth, state, settings.env),
        )
        with RLMClient(api_key=token, base_url=served.base, verify=str(cert)) as client:
            assert client.health()["status"] == "ok"
            result = client.execute(
                {
                    "type": "recursive",
                    "description": "over TLS",
                    "input": {"items": [1, 2, 3, 4], "operation": "sum"},
                }
            )
            assert result.output == 10
    out = served.output
    assert served.process.returncode == 0, out[-4000:]
    assert f"https://127.0.0.1:{port}/v1" in out and f"--cacert {cert}" in out, out[-4000:]


def test_production_refuses_plain_http_unless_a_proxy_terminates_tls(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RLM_STATE_DIR": str(tmp_path),
        "RLM_ENV": "production",
        "RLM_AUTH__SECRET": "s" * 48,
    }
    env.pop("RAY_ADDRESS", None)
    refused = subprocess.run(
        [sys.executable, "-m", "rlm", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    last = refused.stderr.strip().splitlines()[-1]
    assert '"INVALID_INPUT"' in last and "RLM_SERVER__BEHIND_TLS_PROXY" in last, last
    # Only one of the pair is refused too, before anything starts.
    cert, _ = self_signed(tmp_path)
    half = subprocess.run(
        [sys.executable, "-m", "rlm", "serve", "--tls-cert", str(cert)],
        env={**env, "RLM_ENV": "development"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert half.returncode == 2 and "tls_key" in half.stderr, half.stderr[-2000:]

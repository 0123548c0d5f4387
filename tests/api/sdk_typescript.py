"""What the TypeScript SDK's tests need from Python: npm, a live ``rlm serve`` and its tokens.

``tests/api/test_sdk_typescript.py`` builds ``sdk/typescript`` with its own pinned tools
(``npm ci`` from the committed lock file, then ``tsc``), starts one ``rlm serve`` for the module
and hands Node's test runner the base URL and tokens minted with the service's own key.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import Settings
from rlm.webhooks.signing import generate_secret, signed_headers
from tests.api.serve_process import Served, free_port, rlm_serve

__all__ = [
    "SDK_DIR",
    "LiveServer",
    "live_server",
    "node_env",
    "npm",
    "run",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SDK_DIR = REPO_ROOT / "sdk" / "typescript"


def run(
    args: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it exits non-zero."""
    started = time.monotonic()
    done = subprocess.run(
        args,
        cwd=cwd,
        env=dict(env if env is not None else os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {done.returncode} after {took:.1f} s\n"
            f"--- stdout\n{done.stdout[-8000:]}\n--- stderr\n{done.stderr[-8000:]}",
            pytrace=False,
        )
    return done


def npm(*args: str, cwd: Path = SDK_DIR, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``npm ARGS`` in ``cwd`` (fails the test when npm is missing or the command fails)."""
    exe = shutil.which("npm")
    if exe is None:
        pytest.fail("npm is not installed (scripts/system-deps.sh installs Node.js)", pytrace=False)
    return run([exe, "--no-audit", "--no-fund", *args], cwd, timeout=timeout)


@dataclass
class LiveServer:
    """A running ``rlm serve`` and what the Node tests get from it."""

    served: Served
    settings: Settings
    tag: str

    @property
    def base_url(self) -> str:
        """The API's base URL (``http://127.0.0.1:PORT/v1``)."""
        return self.served.base

    def token(self, sub: str, scopes: str, tier: str, **claims: str) -> str:
        """A token signed with the service's own key."""
        auth, state, env = self.settings.auth, self.settings.state_dir, self.settings.env
        key = load_signing_key(auth, state, env)
        return issue_token(sub, scopes.split(), tier, settings=auth, key=key, **claims)  # type: ignore[arg-type]


@contextmanager
def live_server(home: Path) -> Iterator[LiveServer]:
    """``rlm serve`` with a fresh ``HOME``, the test operations, and loopback webhooks allowed.

    The slow operation of ``tests/integration/ops.py`` gives the tests tasks that run long
    enough to watch, cancel and time out; webhook receivers of the tests listen on loopback
    over plain HTTP, which the service refuses by default.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_"))}
    state = home / ".rlm"
    env |= {
        "HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "RLM_STATE_DIR": str(state),
        "RLM_ENGINE__AGENTS": "2",
        "RLM_OPERATIONS": '["tests.integration.ops:OPERATIONS"]',
        "RLM_WEBHOOKS__ALLOW_HTTP": "true",
        "RLM_WEBHOOKS__ALLOW_LOOPBACK": "true",
        "RLM_WEBHOOKS__ATTEMPT_TIMEOUT_S": "2",
        "RLM_WEBHOOKS__RETRY_BASE_S": "0.2",
        "RLM_WEBHOOKS__RETRY_MAX_DELAY_S": "1",
        "RLM_WEBHOOKS__POLL_INTERVAL_S": "0.5",
    }
    with rlm_serve(env, free_port()) as served:
        yield LiveServer(served, Settings(state_dir=state), uuid.uuid4().hex[:8])


def node_env(server: LiveServer, blob: bytes) -> dict[str, str]:
    """The environment of ``node --test``: base URL, tokens by role, fixtures' facts."""
    tag = server.tag
    reader = "rlm:execute rlm:read rlm:quota:read"
    tokens = {
        # enterprise: 600 requests a minute, so polls and streams never meet the rate limit.
        "user": server.token(f"user-{tag}", reader, "enterprise"),
        "other": server.token(f"other-{tag}", reader, "user"),
        # Its own user: a test counts every task this one has.
        "retrier": server.token(f"retrier-{tag}", reader, "user"),
        # Its own user too: a test lists exactly the tasks this one ran.
        "lister": server.token(f"lister-{tag}", reader, "user"),
        "executeOnly": server.token(f"exec-{tag}", "rlm:execute", "user"),
        "anonymous": server.token(f"anon-{tag}", "rlm:read", "anonymous"),
        "manager": server.token(
            f"manager-{tag}",
            "rlm:quota:manage rlm:quota:read rlm:admin rlm:execute rlm:read",
            "admin",
            org=f"corp-{tag}",
        ),
    }
    # A delivery as the service signs it (standardwebhooks), for the SDK's verify to check.
    secret = generate_secret()
    body = json.dumps({"event": "webhook.test", "timestamp": "t", "data": {"n": 1}}).encode()
    headers = signed_headers(f"msg_{tag}", int(time.time()), body, [secret])
    vector = {"secret": secret, "headers": headers, "body": body.decode()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    return env | {
        "RLM_BASE_URL": server.base_url,
        "RLM_TEST_TOKENS": json.dumps(tokens),
        "RLM_TEST_TAG": tag,
        "RLM_TEST_WEBHOOK_VECTOR": json.dumps(vector),
        "RLM_TEST_BLOB_KEY": "public/sdk-ts.bin",
        "RLM_TEST_BLOB_B64": base64.b64encode(blob).decode(),
    }

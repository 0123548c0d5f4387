"""``serve run serve_app/config.yaml`` and ``serve deploy serve_app/config.yaml``, Serve's own
commands, on a ``ray start --head`` cluster of the test's own: the API comes up, answers a task
sent with a real token, and goes away when Serve is shut down.

The config runs as written except for its HTTP port (8000 may be taken on a shared machine):
the test writes a copy that differs in ``http_options.port`` only, and checks that it does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api.serve_process import free_port
from tests.deploy.conftest import DeployCluster
from tests.deploy.ray_cluster import ray_bin
from tests.shared_data import REPO_ROOT
from tests.support import ok_response, state_dir_token, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = REPO_ROOT / "serve_app" / "config.yaml"

#: Serve's start on a loaded 2-core machine: controller, proxy, two replicas, the engine.
UP_TIMEOUT_S = 180

TASK = {
    "type": "recursive",
    "description": "Sum over Serve",
    "input": {"items": list(range(1, 11)), "operation": "sum"},
    "options": {"timeoutMs": 60000},
}


def _config_on(port: int, directory: Path) -> Path:
    """serve_app/config.yaml with its HTTP port set to ``port``, and nothing else changed."""
    original = yaml.safe_load(CONFIG.read_text())
    config = yaml.safe_load(CONFIG.read_text())
    config["http_options"]["port"] = port
    changed = {k for k in config if config[k] != original[k]}
    assert changed == {"http_options"}
    assert {k: v for k, v in config["http_options"].items() if k != "port"} == {
        k: v for k, v in original["http_options"].items() if k != "port"
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _token(cluster: DeployCluster) -> str:
    """A token the deployed API accepts: signed with the key in the cluster's state dir."""
    return state_dir_token(cluster.state_dir, f"ops-{uuid.uuid4().hex[:6]}")


def _serve_answers_a_task(cluster: DeployCluster, base: str, what: Any) -> None:
    wait_until(
        lambda: ok_response(lambda: httpx.get(f"{base}/health", timeout=5)),
        UP_TIMEOUT_S,
        what,
        interval=1,
    )
    # No token, no task: the deployed API is the real one, with its auth.
    refused = httpx.post(f"{base}/execute", json=TASK, timeout=30)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "UNAUTHORIZED"
    answer = httpx.post(
        f"{base}/execute",
        json=TASK,
        headers={"Authorization": f"Bearer {_token(cluster)}"},
        timeout=90,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "completed" and body["output"] == 55, body


def _closed(base: str) -> bool:
    try:
        httpx.get(f"{base}/health", timeout=2)
    except httpx.HTTPError:
        return True
    return False


@contextlib.contextmanager
def _process(
    args: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    process = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        reader.join(timeout=10)


def test_serve_run_config_serves_the_api_until_ctrl_c(
    cluster: DeployCluster, tmp_path: Path
) -> None:
    port = free_port()
    config = _config_on(port, tmp_path)
    base = f"http://127.0.0.1:{port}/v1"
    args = [ray_bin("serve"), "run", "--address", cluster.head.gcs_address, str(config)]
    with _process(args, cluster.env) as (process, lines):
        _serve_answers_a_task(
            cluster, base, lambda: f"serve run answers /health:\n{''.join(lines)}"
        )
        # Ctrl-C: `serve run` shuts Serve down on the cluster and exits.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    wait_until(lambda: _closed(base), 60, "the API stops answering after Ctrl-C")


#: ``serve deploy`` attempts: a port free when chosen may be taken before Serve's proxy binds it
#: (on a shared machine any process's outgoing connection can get it); the proxy then fails.
_BIND_ATTEMPTS = 3


def test_serve_deploy_config_then_serve_shutdown(cluster: DeployCluster, tmp_path: Path) -> None:
    assert cluster.head.dashboard_url is not None
    dash = ["-a", cluster.head.dashboard_url]

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ray_bin("serve"), *args],
            cwd=REPO_ROOT,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    attempts = 0
    while True:
        attempts += 1
        port = free_port()
        config = _config_on(port, tmp_path)
        base = f"http://127.0.0.1:{port}/v1"
        deployed = serve("deploy", str(config), *dash)
        told = deployed.stdout + deployed.stderr
        bind_failed = "Failed to bind to address" in told
        if deployed.returncode == 0 or not bind_failed or attempts == _BIND_ATTEMPTS:
            break
        # Serve stays up with its failed proxy: shut it down before the next port.
        assert serve("shutdown", "-y", *dash).returncode == 0
    assert deployed.returncode == 0, f"attempt {attempts}: {told}"
    try:
        _serve_answers_a_task(
            cluster, base, lambda: f"serve deploy answers /health: {serve('status', *dash).stdout}"
        )
        status = serve("status", *dash)
        assert status.returncode == 0, status.stderr
        assert "RUNNING" in status.stdout and "rlm-api" in status.stdout, status.stdout
    finally:
        down = serve("shutdown", "-y", *dash)
    assert down.returncode == 0, down.stdout + down.stderr
    wait_until(lambda: _closed(base), 60, "the API stops answering after serve shutdown")

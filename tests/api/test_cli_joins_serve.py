"""The CLI and ``rlm.connect()`` join the engine ``rlm serve`` runs on the same state directory.

No ``--address`` and no ``RAY_ADDRESS``: the engine registers its Ray address in the state file,
and every command started on that state directory joins it instead of starting a second engine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rlm.tasks.store import TaskStore
from tests.api.serve_process import free_port, rlm_serve

pytestmark = pytest.mark.integration

TASK = {
    "type": "recursive",
    "description": "Sum",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
}

TENANTS = """
users:
  - userId: alice
    tier: user
    dailyAgentLimit: 4321
    weeklyAgentLimit: 20000
    monthlyAgentLimit: 60000
    dailyComputeHours: 10
    maxConcurrentAgents: 20
    maxStorageGB: 50
"""

CONNECT = """
import json, ray, rlm
hv = rlm.connect()
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address,
                  "core": hv.engine_info()["corePid"]}))
"""


def test_cli_and_connect_join_the_running_serve(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "RLM_STATE_DIR": str(tmp_path),
        "RLM_ENGINE__AGENTS": "1",
        # The commands run in the state directory: import this checkout's rlm from there too.
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    for name in ("RAY_ADDRESS", "RLM_RAY_ADDRESS"):
        env.pop(name, None)

    def rlm_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rlm", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    with rlm_serve(env, port) as serving:
        base = serving.base
        store = TaskStore(tmp_path / "state.db")
        engines = [i for i in store.live_instances() if i.ray_address]
        assert len(engines) == 1, engines
        engine = engines[0]

        (tmp_path / "task.json").write_text(json.dumps(TASK))
        run = rlm_cli("run", "task.json")
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["output"] == 55
        record = store.get(result["taskId"])
        assert record is not None
        assert record.instance_id == engine.instance_id  # run by the served engine

        listing = rlm_cli("tasks", "list")
        assert listing.returncode == 0, listing.stderr
        assert [t["taskId"] for t in json.loads(listing.stdout)] == [result["taskId"]]

        # With an engine running, tenants load writes through the engine's ledger (it holds
        # the store: opening it here would be refused), and the engine applies her limits.
        (tmp_path / "tenants.yaml").write_text(TENANTS)
        loaded = rlm_cli("tenants", "load", "tenants.yaml")
        assert loaded.returncode == 0, loaded.stderr
        assert json.loads(loaded.stdout)["users"] == 1

        # Over HTTP, alice's task is charged to her quota; the CLI reads the same ledger.
        token = rlm_cli("token", "--sub", "alice", "--tier", "user").stdout.strip()
        served = httpx.post(
            f"{base}/execute",
            headers={"Authorization": f"Bearer {token}"},
            json=TASK,
            timeout=60,
        )
        assert served.status_code == 200, served.text
        quota = rlm_cli("quota", "show", "alice", "--json")
        assert quota.returncode == 0, quota.stderr
        daily = json.loads(quota.stdout)["daily"]
        assert daily["agentsUsed"] == served.json()["agentCalls"] > 0
        assert daily["agentsLimit"] == 4321  # the limit loaded through the engine
        assert [i.instance_id for i in store.live_instances() if i.ray_address] == [
            engine.instance_id
        ]  # the commands joined; none started an engine of its own

        joined = subprocess.run(
            [sys.executable, "-c", CONNECT],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert joined.returncode == 0, joined.stderr
        seen = json.loads(joined.stdout.strip().splitlines()[-1])
        assert seen == {"gcs": engine.ray_address, "core": engine.pid}

        second = rlm_cli("serve", "--port", str(free_port()))
        assert second.returncode == 3, second.stderr
        assert f"pid {engine.pid}" in json.loads(second.stderr.splitlines()[-1])["error"]["message"]
        store.close()
    out = serving.output
    assert serving.process.returncode == 0, out
    assert "will not be applied" not in out, out
    assert "Token authentication" not in run.stderr + quota.stderr, run.stderr
    # rlm.connect() joining from Python prints no notice either.
    assert "Token authentication" not in joined.stderr, joined.stderr

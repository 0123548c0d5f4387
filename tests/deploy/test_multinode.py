"""The engine on two raylets of one machine: ``ray start --address`` joins a second node to the
test cluster's head, and a driver in a process of its own (``multinode_driver``) runs tasks.

The pool's agents spread over both nodes (the leaves report the node they ran on); losing the
worker node in the middle of a task sends its lost calls to the agents left (or, when that
cannot be, ends the task with a clear error) within a bound, never a hang; the next task
completes at once on the agents left, and once Ray has declared the node dead and restarted
its agents on the head, the whole pool answers again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import DeployCluster
from tests.deploy.ray_cluster import start_worker
from tests.shared_data import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The whole scenario's bound (each of the driver's waits has its own, of 120 s).
DRIVER_TIMEOUT_S = 420


def _phases(stdout: str) -> dict[str, list[dict[str, Any]]]:
    phases: dict[str, list[dict[str, Any]]] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            phases.setdefault(record["phase"], []).append(record)
    return phases


def test_agents_spread_over_two_nodes_and_survive_losing_one(cluster: DeployCluster) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="rlm-multinode-"))
    try:
        done = _run_driver(cluster, state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    told = f"driver exited {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}"
    _check(done, told)


def _run_driver(cluster: DeployCluster, state_dir: Path) -> subprocess.CompletedProcess[str]:
    with start_worker(cluster.head, cluster.env, num_cpus=1) as worker:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.deploy.multinode_driver",
                "--address",
                cluster.head.gcs_address,
                "--state-dir",
                str(state_dir),
                "--agents",
                "4",
                "--cpus",
                "3",  # the head's 2 and the worker's 1
                "--kill-pgid",
                str(worker.process.pid),
            ],
            cwd=REPO_ROOT,
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_S,
        )
        # The driver SIGKILLed the worker node's process group: `ray start` is gone with it.
        assert worker.process.wait(timeout=30) is not None
    return done


def _check(done: subprocess.CompletedProcess[str], told: str) -> None:
    assert done.returncode == 0, told
    phases = _phases(done.stdout)

    (nodes,) = phases["nodes"]
    head = nodes["head"]
    assert len(nodes["nodes"]) == 2, told
    (other,) = set(nodes["nodes"]) - {head}
    # The state's actors on the head; the agents over both nodes.
    assert set(nodes["actors"]["HypervisorCore"]) == {head}, told
    assert set(nodes["actors"]["_SecurityShell"]) == {head}, told
    assert set(nodes["actors"]["Agent"]) == {head, other}, told

    (spread,) = phases["spread"]
    assert spread["status"] == "completed", told
    assert sorted(spread["seen"]) == sorted([head, other]), told

    (loss,) = phases["loss"]
    assert loss["status"] in ("failed", "completed"), told
    if loss["status"] == "failed":
        # A clear failure: the API's error envelope, saying what happened.
        assert loss["error"]["code"] == "INTERNAL_ERROR", told
        assert "agent worker died" in loss["error"]["message"], told
    assert loss["endedAfterS"] < 120, told

    right_after, healed = phases["heal"]
    assert right_after["status"] == "completed", told
    assert right_after["seen"] == [head], told  # only the agents left took it
    assert healed["status"] == "completed", told
    assert healed["seen"] == [head], told
    assert healed["aliveNodes"] == [head], told
    # Ray restarted the lost node's agents on the head: the pool is whole again.
    assert healed["agents"] == [head] * 4, told

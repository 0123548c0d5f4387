"""Large inputs outlive the process that submitted them, and are freed when their task ends.

A driver in a process of its own (``input_driver``) joins the session's engine, submits a sum
over 8 MB of int64 items and exits. The engine's agents are all busy with another task until
then, so the input is first read after its submitter is gone: with the submitter as the
object's owner (a plain ``ray.put``) that read fails; with the engine's input holder as owner
the task completes with the right sum. Once a task ends, completed or cancelled, its input is
freed: it leaves the holder's reference table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray

import rlm
from tests.shared_data import REPO_ROOT
from tests.support import wait_until

pytestmark = pytest.mark.integration

#: Items of the driver's input: 8 MB of int64, far beyond what travels inline with a call.
N_ITEMS = 1_000_000


def _blocker(hv: rlm.Hypervisor, tmp_path: Path) -> tuple[str, Path]:
    """A task whose four leaves hold every agent slot (2 agents x 2 calls in flight; each
    agent runs one at a time) until ``release`` exists; its id and the release file."""
    started, release = tmp_path / "started", tmp_path / "release"
    task_id = hv.submit(
        {
            "type": "recursive",
            "description": "hold every agent",
            "input": {
                "items": [1, 2, 3, 4],
                "operation": "stubborn",
                "params": {"started": str(started), "release": str(release)},
            },
            "options": {"leafSize": 1, "fanout": 4, "timeoutMs": 120_000},
        }
    )
    wait_until(
        lambda: started.exists() and started.read_text().count("started") == 2,
        60,
        "the blocker's first two leaves run",
    )
    return task_id, release


def test_input_outlives_its_driver_and_is_freed_when_the_task_ends(
    hv: rlm.Hypervisor, tmp_path: Path
) -> None:
    before = set(hv.live_inputs())
    blocker, release = _blocker(hv, tmp_path)
    env = {**os.environ, "RLM_STATE_DIR": str(hv.settings.state_dir)}
    env.pop("RAY_ADDRESS", None)  # the driver finds the engine through its state directory
    driver = [sys.executable, "-m", "tests.integration.input_driver"]
    done = subprocess.run(
        [*driver, str(hv.settings.state_dir), str(N_ITEMS)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    task_id = json.loads(done.stdout.strip().splitlines()[-1])["taskId"]
    # The driver is gone; its input is still there, owned by the engine, and not read yet.
    assert hv.status(task_id).status == "pending"
    held = set(hv.live_inputs()) - before

    release.touch()
    assert hv.result(blocker, timeout=120).status == "completed"
    result = hv.result(task_id, timeout=120)
    assert result.status == "completed", result.error
    assert result.output == int(np.arange(N_ITEMS, dtype=np.int64).sum())
    assert len(held) == 1, held
    wait_until(
        lambda: not held & set(hv.live_inputs()),
        30,
        lambda: f"the input is freed after its task completed (live: {hv.live_inputs()})",
    )


def test_input_is_freed_when_its_task_is_cancelled(hv: rlm.Hypervisor) -> None:
    before = set(hv.live_inputs())
    task_id = hv.submit(
        {
            "type": "parallel",
            "description": "a slow sum to cancel",
            "input": {
                "items": np.arange(N_ITEMS, dtype=np.int64),
                "operation": "slow_sum",
                "params": {"seconds": 30},
            },
            "options": {"leafSize": N_ITEMS // 4, "timeoutMs": 120_000},
        }
    )
    held = wait_until(lambda: set(hv.live_inputs()) - before, 30, "the input is held")
    wait_until(lambda: hv.status(task_id).status == "running", 60, "the task runs")
    assert hv.cancel(task_id).status == "cancelled"
    wait_until(
        lambda: not held & set(hv.live_inputs()),
        30,
        lambda: f"the input is freed after its task was cancelled (live: {hv.live_inputs()})",
    )


def test_large_inputs_still_travel_after_the_engine_restarts(hv: rlm.Hypervisor) -> None:
    """The holder dies with the core; the restarted core makes a new one, and a handle that
    knew the old one finds the new one."""
    hv.live_inputs()  # this handle now knows the first holder
    core = hv._core
    ray.kill(core, no_restart=False)  # Ray restarts the core
    wait_until(lambda: _answers(hv), 120, "the restarted engine answers")
    items = np.arange(N_ITEMS, dtype=np.int64)
    result = hv.execute(
        {
            "type": "recursive",
            "description": "a large input after a restart",
            "input": {"items": items, "operation": "sum"},
            "options": {"leafSize": N_ITEMS // 4},
        }
    )
    assert result.status == "completed", result.error
    assert result.output == int(items.sum())


def _answers(hv: rlm.Hypervisor) -> bool:
    try:
        hv.engine_info()
    except ray.exceptions.RayError:
        return False
    return True

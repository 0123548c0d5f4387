"""The ``rlm`` command line, run as a user runs it (a subprocess with its own Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TASK = {
    "type": "recursive",
    "description": "Sum large dataset",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
    "options": {"timeoutMs": 30000, "priority": "normal"},
}


def _rlm(state: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RLM_STATE_DIR": str(state), "RLM_ENGINE__AGENTS": "2"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "rlm", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_run_then_show_and_list(tmp_path: Path) -> None:
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(TASK))
    run = _rlm(tmp_path, "run", str(task_file))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["output"] == 55
    assert result["status"] == "completed"

    show = _rlm(tmp_path, "tasks", "show", result["taskId"])
    assert show.returncode == 0, show.stderr
    status = json.loads(show.stdout)
    assert status["status"] == "completed"
    assert status["result"]["output"] == 55

    listing = _rlm(tmp_path, "tasks", "list")
    assert [t["taskId"] for t in json.loads(listing.stdout)] == [result["taskId"]]


def test_run_from_stdin_and_refusals(tmp_path: Path) -> None:
    bad = _rlm(tmp_path, "run", "-", stdin=json.dumps({**TASK, "type": "diagonal"}))
    assert bad.returncode == 2
    assert json.loads(bad.stderr.splitlines()[-1])["error"]["code"] == "INVALID_INPUT"
    missing = _rlm(tmp_path, "tasks", "show", "task-nope")
    assert missing.returncode == 2
    assert json.loads(missing.stderr.splitlines()[-1])["error"]["code"] == "TASK_NOT_FOUND"
    ops = _rlm(tmp_path, "operations")
    names = {row["name"] for row in json.loads(ops.stdout)}
    assert {"sum", "sort", "grep", "label_counts"} <= names

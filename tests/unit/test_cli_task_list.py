"""``rlm tasks list`` filters and pages in the state file (no engine, no Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rlm.tasks import TaskRecord, TaskStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _rlm(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_", "RAY_"))}
    env["RLM_STATE_DIR"] = str(state)
    return subprocess.run(
        [sys.executable, "-m", "rlm", "tasks", "list", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_filters_and_the_next_page(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "state.db")
    for i, (status, operation) in enumerate(
        [("completed", "sum"), ("failed", "sum"), ("completed", "max"), ("completed", "sum")]
    ):
        store.put(
            TaskRecord(
                task_id=f"t{i}",
                status=status,  # type: ignore[arg-type]
                created_at=T0 + timedelta(minutes=i),
                type="parallel",
                description="d",
                priority="normal",
                owner_id="ada",
                request={"type": "parallel", "input": {"operation": operation}},
                instance_id="i",
            )
        )
    store.close()
    first = _rlm(tmp_path, "--status", "completed", "--operation", "sum", "--limit", "1")
    assert first.returncode == 0, first.stderr
    assert [t["taskId"] for t in json.loads(first.stdout)] == ["t3"]
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    rest = _rlm(tmp_path, "--status", "completed", "--operation", "sum", "--cursor", cursor)
    assert [t["taskId"] for t in json.loads(rest.stdout)] == ["t0"]
    assert "--cursor" not in rest.stderr
    window = _rlm(
        tmp_path,
        "--since",
        (T0 + timedelta(minutes=1)).isoformat(),
        "--until",
        (T0 + timedelta(minutes=3)).isoformat(),
    )
    assert [t["taskId"] for t in json.loads(window.stdout)] == ["t2", "t1"]
    refused = _rlm(tmp_path, "--status", "finished")
    assert refused.returncode == 2
    assert json.loads(refused.stderr)["error"]["code"] == "INVALID_INPUT"

"""The ``rlm`` command line, run as a user runs it (a subprocess with its own Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rlm

pytestmark = pytest.mark.integration

TASK = {
    "type": "recursive",
    "description": "Sum large dataset",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
    "options": {"timeoutMs": 30000, "priority": "normal"},
}


def _rlm(
    state: Path, *args: str, stdin: str | None = None, no_ray: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``rlm ARGS`` on ``state``; with ``no_ray`` (see :func:`_no_ray`), Ray is unimportable."""
    env = {**os.environ, "RLM_STATE_DIR": str(state), "RLM_ENGINE__AGENTS": "2"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RLM_RAY_ADDRESS", None)
    if no_ray is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(no_ray), env.get("PYTHONPATH")]))
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


def test_detach_needs_an_engine_to_leave_the_task_with(tmp_path: Path) -> None:
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(TASK))
    no_ray = _no_ray(tmp_path)
    run = _rlm(tmp_path, "run", "--detach", str(task_file), no_ray=no_ray)
    # No engine runs on this state dir: the command's own Ray would stop with it. Known
    # before a Ray is imported, let alone started.
    assert run.returncode == 3, run.stderr
    assert "--detach needs a running engine" in run.stderr
    assert not _ray_was_imported(no_ray)
    assert json.loads(_rlm(tmp_path, "tasks", "list").stdout) == []


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


TENANTS = """
orgs:
  - {orgId: corp, agents: 100000, computeHours: 1000}
  - {orgId: eng, parentId: corp, agents: 60000, computeHours: 600}
teams:
  - teamId: research
    teamName: Research
    orgId: eng
    totalAgentPool: 20000
    totalComputeHours: 200
    members:
      - {userId: alice, agentsAllocated: 12000, computeHoursAllocated: 120}
users:
  - userId: alice
    org: eng
    tier: power_user
    dailyAgentLimit: 5000
    weeklyAgentLimit: 20000
    monthlyAgentLimit: 60000
    dailyComputeHours: 10
    maxConcurrentAgents: 20
    maxStorageGB: 50
"""


# Shadows the installed Ray (first on PYTHONPATH): an import of it leaves a mark and fails, so
# even an import some code would catch and survive is seen.
RAY_BLOCKER = """
import os
with open(os.path.join(os.path.dirname(__file__), "imported"), "a") as mark:
    mark.write("ray was imported\\n")
raise ImportError("ray is blocked by the test: this command must not import it")
"""


def _no_ray(tmp_path: Path) -> Path:
    """A directory to put first on ``PYTHONPATH`` so that ``import ray`` fails and is marked."""
    root = tmp_path / "no-ray"
    (root / "ray").mkdir(parents=True)
    (root / "ray" / "__init__.py").write_text(RAY_BLOCKER)
    return root


def _ray_was_imported(no_ray: Path) -> bool:
    return (no_ray / "ray" / "imported").exists()


def test_tenants_load_is_idempotent_and_quota_show(tmp_path: Path) -> None:
    # No engine runs on this state directory: the commands open the quota ledger themselves,
    # without importing (let alone starting) Ray.
    no_ray = _no_ray(tmp_path)
    probe = _rlm(tmp_path, "run", "-", stdin=json.dumps(TASK), no_ray=no_ray)
    assert probe.returncode != 0 and _ray_was_imported(no_ray), probe.stderr  # the blocker works
    (no_ray / "ray" / "imported").unlink()

    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS)
    first = _rlm(tmp_path, "tenants", "load", str(path), no_ray=no_ray)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # no Ray start lines, no notice
    assert json.loads(first.stdout) == {
        "orgsCreated": 2,
        "orgsUpdated": 0,
        "teamsCreated": 1,
        "members": 1,
        "users": 1,
    }
    again = json.loads(_rlm(tmp_path, "tenants", "load", str(path), no_ray=no_ray).stdout)
    assert (again["orgsCreated"], again["orgsUpdated"], again["teamsCreated"]) == (0, 2, 0)
    show = _rlm(tmp_path, "quota", "show", "alice", "--json", no_ray=no_ray)
    assert show.returncode == 0, show.stderr
    assert show.stderr == ""
    status = json.loads(show.stdout)
    assert status["daily"]["agentsLimit"] == 5000
    assert status["maxConcurrentAgents"] == 20
    assert not _ray_was_imported(no_ray)
    quiet = _rlm(tmp_path, "quota", "events", "--json", no_ray=no_ray)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout) == []  # nothing ran over HTTP: no threshold crossed
    bad = tmp_path / "bad.yaml"
    bad.write_text("orgs:\n  - {orgId: x, agents: -1}\n")
    refused = _rlm(tmp_path, "tenants", "load", str(bad), no_ray=no_ray)
    assert refused.returncode == 2
    assert (
        json.loads(refused.stderr.splitlines()[-1])["error"]["details"]["field"] == "orgs[0].agents"
    )
    assert not _ray_was_imported(no_ray)


HOLD_QUOTA_STORE = """
import sys
from rlm.quotas.store import QuotaStore
store = QuotaStore(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""

# What another `rlm quota show` or `rlm tenants load` holds while it runs without an engine.
HOLD_LOCAL_LEDGER = """
import sys
from rlm.quotas.local import LocalQuotas
quotas = LocalQuotas(sys.argv[1])
quotas("user_status", "alice")
print("held", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("holder_code", [HOLD_QUOTA_STORE, HOLD_LOCAL_LEDGER], ids=["store", "cli"])
def test_store_held_by_another_process_is_one_line_and_exit_3(
    tmp_path: Path, holder_code: str
) -> None:
    # A process that is not an engine (no Ray address registered) holds the quota store.
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(tmp_path / "quotas.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(TENANTS)
    no_ray = _no_ray(tmp_path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        commands = (
            ("quota", "show", "alice"),
            ("tenants", "load", "missing.yaml"),
            ("tenants", "load", str(tenants)),
        )
        for args in commands:
            refused = _rlm(tmp_path, *args, no_ray=no_ray)
            if args[-1] == "missing.yaml":  # a bad file is refused before any engine is needed
                assert refused.returncode == 2, refused.stderr
                continue
            assert refused.returncode == 3, refused.stderr
            assert "Traceback" not in refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1, refused.stderr
            error = json.loads(lines[0])["error"]
            assert error["details"]["pid"] == holder.pid
            assert f"process {holder.pid}" in error["message"]
            assert "RLM_STATE_DIR" in error["message"]
        # Refused without waiting on Ray: the commands never imported it.
        assert not _ray_was_imported(no_ray)
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: the same load now goes through, onto an intact ledger.
    loaded = _rlm(tmp_path, "tenants", "load", str(tenants), no_ray=no_ray)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["orgsCreated"] == 2


RLM_STEPS = [
    ("rlm.turn", {"path": "0", "depth": 0, "turn": 1, "reply": "```repl\nprint(2 + 2)\n```"}),
    ("rlm.cell", {"path": "0", "turn": 1, "index": 0, "code": "print(2 + 2)", "stdout": "4\n"}),
]


def test_watch_and_trajectory_join_the_running_engine(hv: rlm.Hypervisor) -> None:
    # The session's engine runs on its own state directory; the CLI joins it from there.
    state = hv.settings.state_dir
    slow = {
        "type": "parallel",
        "description": "slow",
        "input": {"items": [1, 2, 3, 4], "operation": "slow_sum", "params": {"seconds": 0.5}},
        "options": {"leafSize": 1},
    }
    task_id = hv.submit(slow)
    assert hv.record_events(task_id, RLM_STEPS)
    live = _rlm(state, "tasks", "watch", task_id, "--jsonl")  # live, or from the store once ended
    assert live.returncode == 0, live.stderr
    events = [json.loads(line) for line in live.stdout.splitlines()]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "task.started" and kinds[-1] == "task.completed"
    assert {"rlm.turn", "rlm.cell", "task.progress"} <= set(kinds)
    assert events[-1]["data"]["result"]["output"] == 10

    drawn = _rlm(state, "tasks", "watch", task_id)  # the view (on stderr), the result on stdout
    assert drawn.returncode == 0, drawn.stderr
    assert json.loads(drawn.stdout) == events[-1]["data"]["result"]
    assert "completed" in drawn.stderr and "5/5 calls  100.0 %" in drawn.stderr
    assert "turns 1  cells 1" in drawn.stderr and "print(2 + 2)" in drawn.stderr

    trajectory = _rlm(state, "tasks", "trajectory", task_id)
    assert trajectory.returncode == 0, trajectory.stderr
    document = json.loads(trajectory.stdout)
    assert document["taskId"] == task_id and document["status"] == "completed"
    assert [e["event"] for e in document["events"]] == ["rlm.turn", "rlm.cell", "task.completed"]
    assert document["events"] == [
        e for e in events if e["event"] in ("rlm.turn", "rlm.cell", "task.completed")
    ]
    lines = _rlm(state, "tasks", "trajectory", task_id, "--jsonl")
    assert [json.loads(line) for line in lines.stdout.splitlines()] == document["events"]


def test_watch_exits_with_the_tasks_code(hv: rlm.Hypervisor) -> None:
    state = hv.settings.state_dir
    failed = hv.execute(
        {"type": "parallel", "description": "x", "input": {"items": [1, 2], "operation": "explode"}}
    )
    assert failed.status == "failed"
    watched = _rlm(state, "tasks", "watch", failed.task_id)
    assert watched.returncode == 1, watched.stderr
    assert json.loads(watched.stdout)["error"]["code"] == "INVALID_INPUT"
    missing = _rlm(state, "tasks", "watch", "task-nope", "--last-event-id", "3")
    assert missing.returncode == 2
    assert json.loads(missing.stderr.splitlines()[-1])["error"]["code"] == "TASK_NOT_FOUND"


def test_rlm_run_serves_an_rlm_task_and_refuses_a_bad_one_before_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The LM provider is FakeLMServer on loopback, standing in for a paid API; the root's
    # turns come from tests/rlm_script.py, so its code really runs in the CLI engine's sandbox.
    from rlm.testing import FakeLMServer
    from tests import rlm_script

    query = rlm_script.script(
        ["```repl\nn = len(context)\nanswer.update(content=f'{n} lines', ready=True)\n```"]
    )
    task = {
        "type": "recursive",
        "description": "rlm from the CLI",
        "input": {"operation": "rlm", "query": query, "context": ["a", "b", "c"]},
    }
    bad = {**task, "input": {"operation": "rlm", "context": "x"}}
    refused = _rlm(tmp_path, "run", "-", stdin=json.dumps(bad))
    assert refused.returncode == 2
    assert json.loads(refused.stderr.splitlines()[-1])["error"]["details"]["field"] == "input.query"
    ops = {row["name"] for row in json.loads(_rlm(tmp_path, "operations").stdout)}
    assert "rlm" in ops
    with FakeLMServer(responder=rlm_script.responder) as server:
        monkeypatch.setenv("RLM_LM__BASE_URL", server.url)
        monkeypatch.setenv("RLM_LM__API_KEY", "test-key")
        monkeypatch.setenv("RLM_LM__MODEL", "fake-model")
        run = _rlm(tmp_path, "run", "-", stdin=json.dumps(task))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["output"], result["agentCalls"], result["decompositionDepth"]) == (
        "3 lines",
        1,
        0,
    )

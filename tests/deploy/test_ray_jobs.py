"""``ray job submit`` of ``rlm run`` and of an OOLONG evaluation, on a ``ray start --head``
cluster of the test's own: the jobs succeed, their logs come back through ``ray job logs``, and
their tasks are read back from the state store the engine keeps."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from rlm.tasks.store import TaskStore
from tests.deploy.conftest import DeployCluster
from tests.deploy.ray_cluster import ray_bin
from tests.shared_data import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: A job's whole run (upload, runtime env, engine start on a loaded 2-core machine).
JOB_TIMEOUT_S = 240


def _ray(
    cluster: DeployCluster, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """A ``ray`` CLI call against the test cluster's dashboard, from the repository root."""
    assert cluster.head.dashboard_url is not None
    return subprocess.run(
        [ray_bin("ray"), *args],
        cwd=REPO_ROOT,
        env={**cluster.env, "RAY_API_SERVER_ADDRESS": cluster.head.dashboard_url},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _submit(
    cluster: DeployCluster, *entrypoint: str
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """``ray job submit --working-dir . -- ENTRYPOINT``, the command as the README shows it
    (the one option added is the submission id, to find the job again); waits for the job
    (the CLI's default) and returns its id."""
    submission_id = f"rlm-test-{uuid.uuid4().hex[:8]}"
    done = _ray(
        cluster,
        "job",
        "submit",
        "--submission-id",
        submission_id,
        "--working-dir",
        ".",
        "--",
        *entrypoint,
        timeout=JOB_TIMEOUT_S,
    )
    return submission_id, done


def _status(cluster: DeployCluster, submission_id: str) -> str:
    done = _ray(cluster, "job", "status", submission_id)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def _logs(cluster: DeployCluster, submission_id: str) -> str:
    done = _ray(cluster, "job", "logs", submission_id)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _json_after(logs: str, opener: str) -> dict[str, object]:
    """The first JSON document in ``logs`` starting at a line equal to ``opener``."""
    start = logs.index(f"\n{opener}\n") + 1
    decoded, _ = json.JSONDecoder().raw_decode(logs[start:])
    assert isinstance(decoded, dict)
    return decoded


def test_ray_job_submit_runs_a_task_and_its_result_is_in_the_state_store(
    cluster: DeployCluster,
) -> None:
    submission_id, done = _submit(cluster, "python", "-m", "rlm", "run", "examples/sum.json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Job '{submission_id}' succeeded" in done.stdout + done.stderr
    assert f"Job '{submission_id}' succeeded" in _status(cluster, submission_id)

    # The driver's output, read back through Ray: the ExecuteResponse `rlm run` printed.
    logs = _logs(cluster, submission_id)
    printed = _json_after(logs, "{")
    expected = sum(json.loads((REPO_ROOT / "examples/sum.json").read_text())["input"]["items"])
    assert printed["status"] == "completed"
    assert printed["output"] == expected
    assert printed["success"] is True
    assert int(printed["decompositionDepth"]) >= 1  # a tree of agent calls, not one call

    # The engine the job started recorded the task in the state store of the cluster's nodes.
    store = TaskStore(cluster.state_dir / "state.db")
    try:
        record = store.get(str(printed["taskId"]))
    finally:
        store.close()
    assert record is not None
    status = record.to_status().to_wire()
    assert status["status"] == "completed"
    assert status["result"]["output"] == expected
    assert status["result"]["agentCalls"] == printed["agentCalls"]

    # What --working-dir uploaded: the checkout without the environment, the VCS, or what
    # .rayignore leaves out (tests, benchmarks, notebooks, the SDKs' sources and tools).
    uploaded = list(
        (cluster.head.temp_dir / "session_latest").glob(
            "runtime_resources/working_dir_files/*/rlm/cli.py"
        )
    )
    assert uploaded, "the job's working directory is on the head"
    package = uploaded[0].parent.parent
    names = {p.relative_to(package).parts[0] for p in package.iterdir()}
    assert {"rlm", "serve_app", "examples"} <= names
    assert not names & {".venv", ".git", "tests", "benchmarks", "notebooks", "sdk"}, names
    size = sum(p.stat().st_size for p in package.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024, f"the job uploaded {size:,} bytes"


def test_ray_job_submit_runs_an_oolong_evaluation(cluster: DeployCluster) -> None:
    questions = 4
    report_path = Path(f"/tmp/rlm-eval-{uuid.uuid4().hex[:8]}.json")
    submission_id, done = _submit(
        cluster,
        "python",
        "-m",
        "rlm",
        "eval",
        "oolong",
        "--modes",
        "direct,map-reduce",
        "--questions",
        str(questions),
        "--data",
        str(cluster.data),
        "--json",
        str(report_path),
    )
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"Job '{submission_id}' succeeded" in _status(cluster, submission_id)
        logs = _logs(cluster, submission_id)
        # The report's table, as a user reads it in the job's logs.
        assert "OOLONG-synth" in logs and "map-reduce" in logs
        report = json.loads(report_path.read_text())
    finally:
        report_path.unlink(missing_ok=True)
    # The oracle model answers from the data: both modes must score every question right.
    for mode in ("direct", "map-reduce"):
        summary = report["modes"][mode]
        assert summary["accuracy"] == 1.0, summary
        assert summary["errors"] == 0, summary

    # Each question's task is in the state store, completed.
    store = TaskStore(cluster.state_dir / "state.db")
    try:
        records = store.list(limit=100)
    finally:
        store.close()
    asked = [r for r in records if r.description.startswith("OOLONG ")]
    assert len(asked) == 2 * questions, [r.description for r in records]
    assert {r.status for r in asked} == {"completed"}

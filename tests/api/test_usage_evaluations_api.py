"""Usage over time and recorded evaluation runs through real HTTP: what tasks charge shows up
in the caller's, its team's and its org's series; evaluation runs are shared within an org and
invisible to any other; scopes and bad input are refused with the API's codes.

Usage history and evaluation runs live in the state store: every test runs on both (SQLite,
then PostgreSQL) but the bad usage parameters, refused by the route before any query, which run
once, on SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from rlm_hypervisor import AsyncRLMClient, EvaluationNotFound, Forbidden, RLMClient
from tests.api.conftest import Api
from tests.eval_report import report_json

pytestmark = pytest.mark.integration

SUM = {
    "type": "recursive",
    "description": "sum",
    "input": {"items": list(range(64)), "operation": "sum"},
    "options": {"leafSize": 16},
}
USER_SCOPES = "rlm:execute rlm:read rlm:quota:read"


@pytest.fixture(scope="module")
def api(api_on_each_store: Api) -> Api:
    """This suite runs on both state stores: SQLite, then PostgreSQL."""
    return api_on_each_store


@dataclass
class Tenant:
    """An org with a manager, a team and two members (one ran tasks), made for this module."""

    org: str
    team: str
    member: str
    idle: str
    manager: httpx.Client
    worker: httpx.Client
    colleague: httpx.Client


def _ok(response: httpx.Response, status: int = 200) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def tenant(api: Api) -> Iterator[Tenant]:
    tag = uuid.uuid4().hex[:8]
    org, team, member, idle = f"uo-{tag}", f"ut-{tag}", f"um-{tag}", f"ui-{tag}"
    manager = api.client(
        api.token(sub=f"mgr-{tag}", scopes="rlm:quota:manage rlm:quota:read", org=org, tier="admin")
    )
    _ok(
        manager.post(
            "/quotas/enterprise/org", json={"orgId": org, "agents": 10**6, "computeHours": 1000}
        ),
        201,
    )
    body = {"teamId": team, "teamName": "Usage", "totalAgentPool": 10**5, "totalComputeHours": 10}
    _ok(manager.post("/quotas/team", json=body), 201)
    for user in (member, idle):
        _ok(manager.put(f"/quotas/team/{team}/members/{user}", json={"role": "member"}))
    worker = api.client(api.token(sub=member, scopes=USER_SCOPES, org=org, tier="enterprise"))
    colleague = api.client(api.token(sub=idle, scopes=USER_SCOPES, org=org, tier="enterprise"))
    try:
        yield Tenant(org, team, member, idle, manager, worker, colleague)
    finally:
        for client in (manager, worker, colleague):
            client.close()


def _this_hour(history: dict) -> dict:  # type: ignore[type-arg]
    now = datetime.now(UTC)
    last = history["buckets"][-1]
    assert datetime.fromisoformat(last["start"]).hour == now.hour or now.minute == 0
    return last  # type: ignore[no-any-return]


def test_usage_follows_the_tasks_on_every_level(tenant: Tenant) -> None:
    for _ in range(3):
        _ok(tenant.worker.post("/execute", json=SUM))
    used = _ok(tenant.worker.get("/quotas/user/me"))["daily"]["agentsUsed"]
    assert used > 0

    mine = _ok(tenant.worker.get("/quotas/user/me/usage"))
    assert (mine["level"], mine["id"], mine["period"], mine["bucket"]) == (
        "user",
        tenant.member,
        "daily",
        "hour",
    )
    assert mine["total"]["agentsUsed"] == used
    assert _this_hour(mine)["agentsUsed"] == used
    assert len(mine["buckets"]) == datetime.now(UTC).hour + 1
    week = _ok(
        tenant.worker.get("/quotas/user/me/usage", params={"period": "weekly", "bucket": "day"})
    )
    assert week["total"]["agentsUsed"] == used
    assert len(week["buckets"]) == datetime.now(UTC).weekday() + 1

    # The team's pool and the org draw the same calls; members see the team's series.
    team = _ok(tenant.colleague.get(f"/quotas/team/{tenant.team}/usage"))
    assert team["total"]["agentsUsed"] == used
    org = _ok(
        tenant.manager.get(
            f"/quotas/enterprise/org/{tenant.org}/usage",
            params={"period": "monthly", "bucket": "day"},
        )
    )
    assert org["total"]["agentsUsed"] == used
    # A manager reads a member's series; the idle member's is zeros.
    assert (
        _ok(tenant.manager.get(f"/quotas/user/{tenant.member}/usage"))["total"]["agentsUsed"]
        == used
    )
    assert _ok(tenant.colleague.get("/quotas/user/me/usage"))["total"]["agentsUsed"] == 0


def test_usage_scopes_and_tenants(api: Api, tenant: Tenant) -> None:
    # A user reads only itself; the org's series is for its managers.
    for path in (
        f"/quotas/user/{tenant.member}/usage",
        f"/quotas/enterprise/org/{tenant.org}/usage",
    ):
        refused = tenant.colleague.get(path)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "FORBIDDEN"
    # Another org's manager sees nothing of this one, and a stranger not the team.
    other = api.client(
        api.token(
            sub="mgr-x",
            scopes="rlm:quota:manage rlm:quota:read",
            org=f"x-{tenant.org}",
            tier="admin",
        )
    )
    stranger = api.client(api.token(sub="stranger", scopes=USER_SCOPES, tier="user"))
    with other, stranger:
        for client, path in (
            (other, f"/quotas/enterprise/org/{tenant.org}/usage"),
            (other, f"/quotas/user/{tenant.member}/usage"),
            (other, f"/quotas/team/{tenant.team}/usage"),
            (stranger, f"/quotas/team/{tenant.team}/usage"),
        ):
            assert client.get(path).status_code == 403, path
    with api.client() as anonymous:
        assert anonymous.get("/quotas/user/me/usage").status_code == 401
    with api.client(api.token(scopes="rlm:execute")) as no_scope:
        assert no_scope.get("/quotas/user/me/usage").status_code == 403


@pytest.mark.parametrize("params", [{"period": "yearly"}, {"bucket": "minute"}, {"period": ""}])
def test_bad_usage_parameters_are_invalid_input(
    sqlite_user: Callable[..., httpx.Client], params: dict[str, str]
) -> None:
    with sqlite_user(scopes=USER_SCOPES) as worker:
        refused = worker.get("/quotas/user/me/usage", params=params)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "INVALID_INPUT"


def test_evaluation_runs_are_recorded_and_shared_within_the_org(api: Api, tenant: Tenant) -> None:
    report = report_json(direct_score=0.5)
    run = _ok(tenant.worker.post("/evaluations", json=report), 201)
    assert run["runId"].startswith("eval_")
    assert (run["ownerId"], run["orgId"]) == (tenant.member, tenant.org)
    assert run["modes"] == report["modes"]

    # A colleague of the org lists it (no per-question parts) and reads it whole.
    listed = _ok(tenant.colleague.get("/evaluations"))["evaluations"]
    mine = [r for r in listed if r["runId"] == run["runId"]]
    assert len(mine) == 1 and "results" not in mine[0]
    assert mine[0]["modes"]["direct"]["accuracy"] == 0.5
    whole = _ok(tenant.colleague.get(f"/evaluations/{run['runId']}"))
    assert whole["results"] == report["results"] and whole["questions"] == report["questions"]

    # Another org neither lists nor reads it: 404 as for an id that never existed.
    with api.client(api.token(scopes="rlm:read rlm:execute", org=f"x-{tenant.org}")) as other:
        assert all(
            r["runId"] != run["runId"] for r in _ok(other.get("/evaluations"))["evaluations"]
        )
        for run_id in (run["runId"], "eval_unknown"):
            missing = other.get(f"/evaluations/{run_id}")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "EVALUATION_NOT_FOUND"
            assert missing.json()["error"]["details"] == {"runId": run_id}


def test_evaluation_scopes_and_bad_reports(api: Api, tenant: Tenant) -> None:
    with api.client(api.token(scopes="rlm:read")) as reader:
        refused = reader.post("/evaluations", json=report_json())
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
    with api.client(api.token(scopes="rlm:execute")) as runner:
        assert runner.get("/evaluations").status_code == 403
    with api.client() as anonymous:
        assert anonymous.get("/evaluations").status_code == 401
    bad = report_json()
    bad["modes"]["direct"]["accuracy"] = 2.0
    refused = tenant.worker.post("/evaluations", json=bad)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "INVALID_INPUT" and error["details"]["field"] == "modes.direct.accuracy"
    assert tenant.worker.get("/evaluations", params={"limit": 0}).status_code == 400
    # Well formed, but a result names a mode the report does not list: 409 CONFLICT.
    odd = report_json()
    odd["results"][0]["mode"] = "rlm"
    conflict = tenant.worker.post("/evaluations", json=odd)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]["code"] == "CONFLICT"
    assert conflict.json()["error"]["details"]["field"] == "results"


def test_the_cli_records_a_report_file_as_the_keys_user(
    api: Api, tenant: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report_json(direct_score=0.25)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env |= {"HOME": str(tmp_path), "RLM_BASE_URL": api.base_url}
    command = [sys.executable, "-m", "rlm", "eval", "record", str(path)]
    # Without a key the CLI says what it needs (exit 2, the error envelope on stderr).
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "RLM_API_KEY" in refused.stderr
    key = api.token(sub=tenant.member, scopes=USER_SCOPES, org=tenant.org, tier="enterprise")
    done = subprocess.run(
        command, env=env | {"RLM_API_KEY": key}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["ownerId"], run["orgId"]) == (tenant.member, tenant.org)
    assert "results" not in run
    # The colleague of the org reads what the CLI recorded, whole.
    whole = _ok(tenant.colleague.get(f"/evaluations/{run['runId']}"))
    assert whole["modes"]["direct"]["accuracy"] == 0.25
    assert len(whole["results"]) == 4


def test_the_python_sdk_sync_and_async(api: Api, tenant: Tenant) -> None:
    key = api.token(sub=tenant.member, scopes=USER_SCOPES, org=tenant.org, tier="enterprise")
    with RLMClient(key, base_url=api.base_url) as client:
        used = client.quotas.get_status().daily.agents_used
        day = client.quotas.usage()
        assert (day.level, day.id, day.total.agents_used) == ("user", tenant.member, used)
        assert sum(b.agents_used for b in day.buckets) == used
        assert client.quotas.usage(team_id=tenant.team, period="monthly").total.agents_used == used
        with pytest.raises(Forbidden):
            client.quotas.usage(org_id=tenant.org)  # a member, not a manager
        run = client.evaluations.record(report_json(direct_score=0.75))
        assert run.modes["direct"].accuracy == 0.75
        assert client.evaluations.list(limit=200)[0].run_id == run.run_id
        with pytest.raises(EvaluationNotFound) as missing:
            client.evaluations.get("eval_missing")
        assert missing.value.details == {"runId": "eval_missing"}

    async def main() -> None:
        async with AsyncRLMClient(key, base_url=api.base_url) as client:
            week = await client.quotas.usage(period="weekly", bucket="day")
            assert week.total.agents_used == used
            got = await client.evaluations.get(run.run_id)
            assert got.results == run.results
            assert run.run_id in {r.run_id for r in await client.evaluations.list()}

    asyncio.run(main())

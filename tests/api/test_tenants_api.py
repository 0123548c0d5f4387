"""Teams and the enterprise org tree through real HTTP."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.integration


def _manager(api: Api, org: str = "corp") -> object:
    return api.client(
        api.token(sub="ops-manager", scopes="rlm:quota:manage rlm:admin", tier="admin", org=org)
    )


def test_org_tree_is_validated_as_a_whole(api: Api) -> None:
    root, eng, ops = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("corp", "eng", "ops"))
    with _manager(api, org=root) as m:  # type: ignore[attr-defined]
        assert (
            m.post("/quotas/enterprise/org", json={"orgId": root, "agents": 1000}).status_code
            == 201
        )
        assert (
            m.post(
                "/quotas/enterprise/org", json={"orgId": eng, "parentId": root, "agents": 600}
            ).status_code
            == 201
        )
        assert (
            m.post(
                "/quotas/enterprise/org", json={"orgId": ops, "parentId": root, "agents": 300}
            ).status_code
            == 201
        )
        orphan = m.post("/quotas/enterprise/org", json={"orgId": "x", "parentId": "nope"})
        assert orphan.status_code == 400

        too_much = m.patch(f"/quotas/enterprise/org/{eng}", json={"agents": 800})
        assert too_much.status_code == 400
        assert too_much.json()["error"]["code"] == "INVALID_INPUT"
        tree = m.get(f"/quotas/enterprise/org/{eng}/hierarchy").json()
        assert tree["org"]["agents"] == 600  # the refused PATCH changed nothing
        assert [o["orgId"] for o in tree["ancestors"]] == [root]
        assert [o["orgId"] for o in tree["siblings"]] == [ops]
        ok = m.patch(f"/quotas/enterprise/org/{eng}", json={"agents": 700})
        assert ok.status_code == 200 and ok.json()["agents"] == 700
        above_parent = m.patch(f"/quotas/enterprise/org/{ops}", json={"agents": 1001})
        assert above_parent.status_code == 400
    with api.client(api.token(sub="outsider", scopes="rlm:quota:read", org="elsewhere")) as other:
        assert other.get(f"/quotas/enterprise/org/{eng}/hierarchy").status_code == 403
        assert other.patch(f"/quotas/enterprise/org/{eng}", json={"agents": 1}).status_code == 403


def test_team_pool_allocations_and_idempotent_transfers(api: Api) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    alice, bob = f"alice-{team}", f"bob-{team}"
    with _manager(api) as m:  # type: ignore[attr-defined]
        created = m.post(
            "/quotas/team",
            json={
                "teamId": team,
                "teamName": "Research",
                "totalAgentPool": 100,
                "totalComputeHours": 10,
                "totalStorageGB": 5,
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["config"]["totalStorageGB"] == 5
        assert (
            m.put(
                f"/quotas/team/{team}/members/{alice}",
                json={"agentsAllocated": 60, "computeHoursAllocated": 5},
            ).status_code
            == 200
        )
        assert (
            m.put(
                f"/quotas/team/{team}/members/{bob}",
                json={"agentsAllocated": 30, "computeHoursAllocated": 3},
            ).status_code
            == 200
        )
        over = m.put(f"/quotas/team/{team}/members/{bob}", json={"agentsAllocated": 50})
        assert over.status_code == 400  # 60 + 50 > the pool of 100

        move = {"fromUserId": alice, "toUserId": bob, "agents": 10}
        key = {"Idempotency-Key": f"move-{team}"}
        first = m.post(f"/quotas/team/{team}/transfers", json=move, headers=key)
        assert first.status_code == 200, first.text
        again = m.post(f"/quotas/team/{team}/transfers", json=move, headers=key)
        assert again.json() == first.json()
        assert m.put(f"/quotas/team/{team}/members/carol-{team}", json={}).status_code == 200
        members = {x["userId"]: x for x in m.get(f"/quotas/team/{team}").json()["members"]}
        assert (members[alice]["agentsAllocated"], members[bob]["agentsAllocated"]) == (50, 40)
        # A member without an allocation of its own draws on the pool: null, not "capped at 0".
        carol = members[f"carol-{team}"]
        assert (carol["agentsAllocated"], carol["computeHoursAllocated"]) == (None, None)
        too_far = {"fromUserId": alice, "toUserId": bob, "agents": 51}
        assert m.post(f"/quotas/team/{team}/transfers", json=too_far).status_code == 400

    with api.client(
        api.token(
            sub=alice, team=team, tier="enterprise", scopes="rlm:execute rlm:read rlm:quota:read"
        )
    ) as member:
        body = {
            "type": "parallel",
            "description": "team work",
            "input": {"items": [1, 2, 3, 4], "operation": "sum"},
            "options": {"leafSize": 1},
        }
        ran = member.post("/execute", json=body)
        assert ran.status_code == 200, ran.text
        usage = member.get(f"/quotas/team/{team}").json()["usage"]
        assert usage["agentsUsed"] == 5 and usage["agentsTotal"] == 100
        # Membership is the ledger's: a token without a team claim, or naming a team never
        # loaded, still draws on alice's team pool.
        for claims in ({}, {"team": "never-loaded"}):
            token = api.token(sub=alice, tier="enterprise", **claims)  # type: ignore[arg-type]
            with api.client(token) as same_user:
                assert same_user.post("/execute", json=body).status_code == 200
        usage = member.get(f"/quotas/team/{team}").json()["usage"]
        assert usage["agentsUsed"] == 15
        # Storage used is what the service keeps for the team's three tasks (requests and
        # results, a few hundred bytes each), against the 5 GB the team was given.
        assert 3 * 100 / 1e9 < usage["storageUsed"] < 3 * 10_000 / 1e9
        assert usage["storageTotal"] == 5
    with api.client(api.token(sub="stranger", scopes="rlm:quota:read")) as stranger:
        assert stranger.get(f"/quotas/team/{team}").status_code == 403

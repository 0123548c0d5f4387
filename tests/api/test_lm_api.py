"""LM tasks over real HTTP: usage on the wire, tokens on the quotas, budgets and limits.

The service's LM provider is ``FakeLMServer`` on loopback (see ``conftest.lm_server``): it
stands in for a paid API and counts what it receives, so what was sent is measured there.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from rlm.testing import FakeLMServer
from tests.api.conftest import Api
from tests.api.test_quotas_api import _limits

pytestmark = pytest.mark.integration


def _map(items: list[str], options: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    return {
        "type": "parallel",
        "description": "map over HTTP",
        "input": {
            "items": items,
            "operation": "llm_map",
            "params": {"prompt": "Q {chunk}", **params},
        },
        "options": {"leafSize": 1, "memo": False, **(options or {})},
    }


def _user(api: Api, daily: int = 1000, **limits: Any) -> tuple[str, Any]:
    user = f"lm-{uuid.uuid4().hex[:8]}"
    _limits(api, user, daily=daily, **limits)
    token = api.token(sub=user, scopes="rlm:execute rlm:read rlm:quota:read", org="acme")
    return user, api.client(token)


def test_an_lm_task_reports_usage_and_charges_the_users_tokens(
    api: Api, lm_server: FakeLMServer
) -> None:
    _, client = _user(api)
    with client:
        response = client.post("/execute", json=_map(["alpha", "beta", "gamma"]))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["output"] == ["R:" + f"Q {x}"[::-1] for x in ("alpha", "beta", "gamma")]
        usage = body["usage"]
        assert usage["lmCalls"] == 3 and usage["cachedCalls"] == 0
        assert body["agentCalls"] == 4  # three LM leaves and the combine
        tokens = usage["inputTokens"] + usage["outputTokens"]
        assert tokens > 0
        assert usage["costUsd"] == pytest.approx(
            (usage["inputTokens"] + 2 * usage["outputTokens"]) / 1e6
        )
        daily = client.get("/quotas/user/me").json()["daily"]
        assert daily["tokensUsed"] == tokens
        assert daily["costUsd"] == pytest.approx(usage["costUsd"])
        assert daily["agentsUsed"] == 4
        stored = client.get(f"/tasks/{body['taskId']}").json()["result"]
        assert stored["usage"] == usage


def test_a_spent_budget_is_429_with_the_partial_usage(api: Api, lm_server: FakeLMServer) -> None:
    _, client = _user(api)
    lm_server.reset_stats()
    with client:
        response = client.post(
            "/execute",
            json=_map([f"b{i}" for i in range(6)], options={"budget": {"lmCalls": 2}}),
        )
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "QUOTA_EXCEEDED"
    assert error["details"]["budget"] == "lmCalls"
    assert error["details"]["result"]["usage"]["lmCalls"] == 2
    assert lm_server.stats().requests == 2


def test_a_daily_token_limit_stops_lm_calls_before_they_are_sent(
    api: Api, lm_server: FakeLMServer
) -> None:
    # Each call reserves its worst case: the prompt estimate plus maxTokens (10 here, about
    # 20 tokens a call); 100 tokens a day admit a few calls, never a token over.
    _, client = _user(api, dailyTokenLimit=100)
    lm_server.reset_stats()
    with client:
        response = client.post("/execute", json=_map([f"t{i}" for i in range(20)], maxTokens=10))
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert error["code"] == "QUOTA_EXCEEDED"
        details = error["details"]
        assert details["resource"] == "tokens"
        # Refused with a few calls already admitted (held), at the call that would cross.
        assert 0 < details["used"] <= 100 < details["used"] + details["requested"]
        daily = client.get("/quotas/user/me").json()["daily"]
    # The admitted calls may or may not have left before the refusal stopped the task.
    sent = lm_server.stats().requests
    assert sent < 20
    assert daily["tokensUsed"] <= 100
    assert daily["tokensRemaining"] >= 0


def test_a_model_the_provider_does_not_offer_is_400_before_anything_runs(
    api: Api, lm_server: FakeLMServer
) -> None:
    _, client = _user(api)
    lm_server.reset_stats()
    with client:
        response = client.post("/execute", json=_map(["x"], model="gpt-nope"))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "INVALID_INPUT"
        assert error["details"]["field"] == "input.params.model"
        assert client.get("/quotas/user/me").json()["daily"]["agentsUsed"] == 0
    assert lm_server.stats().requests == 0


def _classify(items: list[str]) -> dict[str, Any]:
    return {
        "type": "parallel",
        "description": "classify over HTTP",
        "input": {"items": items, "operation": "llm_classify", "params": {"labels": ["a", "b"]}},
        "options": {"memo": False},
    }


@pytest.mark.parametrize("daily", [1, 2])
def test_a_request_beyond_the_plan_is_held_on_the_quota_before_it_is_sent(
    api: Api, lm_server: FakeLMServer, daily: int
) -> None:
    # The stand-in's replies never parse as labels, so the one planned call asks again: that
    # second request is one more agent call, held before it is sent. With a daily limit of
    # one it is refused and never reaches the provider; with two it is sent and charged.
    _, client = _user(api, daily=daily)
    lm_server.reset_stats()
    with client:
        response = client.post("/execute", json=_classify(["x", "y", "z"]))
        used = client.get("/quotas/user/me").json()["daily"]["agentsUsed"]
    if daily == 1:
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert error["code"] == "QUOTA_EXCEEDED" and error["details"]["resource"] == "agents"
        assert lm_server.stats().requests == 1
        assert used <= 1
    else:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["output"] == {"a": 0, "b": 0, "unparsed": 3}
        assert body["agentCalls"] == 2 and body["usage"]["lmCalls"] == 2
        assert lm_server.stats().requests == 2
        assert used == 2


def test_an_lm_task_over_a_storage_file_has_each_prompt_checked_by_the_orgs_policies(
    api: Api, lm_server: FakeLMServer
) -> None:
    # The API never sees a source's lines: the core checks each prompt made of them before
    # the broker sends it (#11: every input that reaches a model passes the policies).
    from tests.support import wait_until

    secret = "AKIAIOSFODNN7EXAMPLE"
    user, client = _user(api)
    folder = api.settings.state_dir / "data" / "users" / user
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clean.txt").write_text("alpha\nbeta\n")
    (folder / "leaky.txt").write_text(f"alpha\nbeta\nmy aws key is {secret}\n")

    def task(name: str) -> dict[str, Any]:
        source = {"connector": "local", "key": f"users/{user}/{name}", "format": "lines"}
        return {
            "type": "parallel",
            "description": "map a file",
            "input": {"source": source, "operation": "llm_map", "params": {"prompt": "Q {chunk}"}},
            "options": {"leafSize": 1, "memo": False},
        }

    lm_server.reset_stats()
    admin = api.client(api.token("admin-acme", "rlm:admin", "admin", org="acme"))
    with client, admin:
        clean = client.post("/execute", json=task("clean.txt"))
        assert clean.status_code == 200, clean.text
        # The file's ranges went to the model (the fake answers each prompt reversed).
        assert clean.json()["output"] == ["R:" + "Q alpha\nbeta"[::-1]]
        # The file's first maxScanChars characters are scanned before the task is admitted:
        # refused there, nothing sent.
        early = client.post("/execute", json=task("leaky.txt"))
        assert early.status_code == 400, early.text
        (first, *_) = early.json()["error"]["details"]["violations"]
        assert (first["policyId"], first["field"]) == ("input-secrets", "input.source.lines[2]")
        assert lm_server.stats().requests == 1
        # Past that budget the lines are not scanned up front: the prompt made of them is.
        budget = {"settings": {"maxScanChars": 8}}
        assert admin.patch("/security/policies/input-size", json=budget).status_code == 200
        try:
            refused = client.post("/execute", json=task("leaky.txt"))
        finally:
            restored = {"settings": {"maxScanChars": 4_000_000}}
            assert admin.patch("/security/policies/input-size", json=restored).status_code == 200
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "INVALID_INPUT"
    assert "refused by security policy input-secrets" in error["message"]
    found = {(v["policyId"], v["field"], v["severity"]) for v in error["details"]["violations"]}
    assert ("input-secrets", "input.source.prompt", "critical") in found
    assert secret not in refused.text
    # The model never received the line with the key (the others may have gone out).
    assert lm_server.requests and secret not in str(lm_server.requests)
    # On record for the org's admin, without the secret.
    with api.client(api.token("admin-acme", "rlm:admin", "admin", org="acme")) as admin:

        def recorded() -> list[dict[str, Any]]:
            listed = admin.get("/security/events", params={"type": "policy.violation"})
            events: list[dict[str, Any]] = listed.json()["events"]
            task_id = error["details"].get("taskId")
            found = [e for e in events if e["details"].get("taskId") == task_id]
            return found if len(found) == 2 else []

        # The up-front scan's "not scanned beyond" finding (the task ran; recorded by the
        # replica) and the refusal (by the core): two writers, so in either order.
        found = wait_until(recorded, 30, "the scan and the refusal are recorded", interval=0.5)
        (scanned,) = [e for e in found if e["details"]["refused"] is False]
        (event,) = [e for e in found if e["details"]["refused"] is True]
    assert [v["detector"] for v in scanned["details"]["violations"]] == ["scan_limit"]
    assert event["details"]["source"] == "storage" and event["details"]["refused"] is True
    assert event["userId"] == user and secret not in str(event)

"""Every route of the service has an SDK method, sync and async, and each method calls its route.

The routes come from the app itself (its OpenAPI document, and every router's own routes so a
route hidden from the document is not missed). :data:`ROUTE_METHODS` maps each route to the
SDK methods that call it; a new route without an entry fails
:func:`test_every_route_has_an_sdk_method`. Each method is then called on both clients behind
``httpx.MockTransport`` and the request it sends must be its route's method and path.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlm.config import Settings
from rlm_hypervisor import AsyncRLMClient, RLMClient, RLMError
from serve_app import create_app
from serve_app.app import API_PREFIX
from serve_app.routes import evaluations, health, quotas, security, storage, tasks, webhooks
from tests.eval_report import report_json

BASE = "http://sdk.test/v1"

_CONFIG = {
    "userId": "u-1",
    "dailyAgentLimit": 10,
    "weeklyAgentLimit": 10,
    "monthlyAgentLimit": 10,
    "dailyComputeHours": 1.0,
    "maxConcurrentAgents": 2,
    "maxStorageGB": 1.0,
}
_TEAM = {"teamId": "t-1", "teamName": "T", "totalAgentPool": 10, "totalComputeHours": 1.0}
_SUM = {"type": "recursive", "description": "d", "input": {"items": [1, 2], "operation": "sum"}}
_POLICY = {"enabled": True, "priority": 10}
_HOOK = {"url": "https://example.com/hook", "events": ["task.completed"]}

#: (method, path template) -> the SDK methods calling it: (dotted name, args, kwargs).
SdkCall = tuple[str, tuple[Any, ...], dict[str, Any]]
ROUTE_METHODS: dict[tuple[str, str], list[SdkCall]] = {
    ("GET", "/v1/health"): [("health", (), {})],
    ("POST", "/v1/execute"): [
        ("execute", (_SUM,), {}),
        ("execute", (_SUM,), {"wait": False}),
        ("submit", (_SUM,), {}),
    ],
    ("GET", "/v1/tasks/{taskId}"): [("tasks.get", ("task-1",), {}), ("tasks.wait", ("t-1",), {})],
    ("POST", "/v1/tasks/{taskId}/cancel"): [("tasks.cancel", ("task-1",), {})],
    ("GET", "/v1/tasks"): [
        ("tasks.list", (), {}),
        ("tasks.list", (), {"status": ["running", "pending"], "type": "parallel"}),
        ("tasks.list_page", (), {"operation": "sum", "cursor": "abc"}),
    ],
    ("GET", "/v1/tasks/{taskId}/events"): [("tasks.events", ("task-1",), {})],
    ("GET", "/v1/tasks/{taskId}/trajectory"): [("tasks.trajectory", ("task-1",), {})],
    ("POST", "/v1/storage/read"): [("storage.read", ("local", "k", 0, 16), {})],
    ("GET", "/v1/quotas/user/{userId}"): [
        ("quotas.get_status", (), {}),
        ("quotas.get_status", ("u-1",), {}),
    ],
    ("PUT", "/v1/quotas/user/{userId}"): [("quotas.set_config", (_CONFIG,), {})],
    ("POST", "/v1/quotas/user/{userId}/check"): [("quotas.check", ("u-1", 2), {})],
    ("GET", "/v1/quotas/team/{teamId}"): [("quotas.team", ("t-1",), {})],
    ("POST", "/v1/quotas/team"): [("quotas.create_team", (_TEAM,), {})],
    ("PUT", "/v1/quotas/team/{teamId}/members/{userId}"): [
        ("quotas.set_member", ("t-1", "u-1"), {"agents_allocated": 1})
    ],
    ("PUT", "/v1/quotas/team/{teamId}/projects/{projectId}"): [
        ("quotas.set_project", ("t-1", "p-1", 1), {})
    ],
    ("POST", "/v1/quotas/team/{teamId}/transfers"): [
        ("quotas.transfer", ("t-1", "a", "b"), {"agents": 1})
    ],
    ("GET", "/v1/quotas/enterprise/org/{orgId}/hierarchy"): [("quotas.org_hierarchy", ("o",), {})],
    ("PATCH", "/v1/quotas/enterprise/org/{orgId}"): [("quotas.update_org", ("o",), {"agents": 1})],
    ("POST", "/v1/quotas/enterprise/org"): [("quotas.create_org", ({"orgId": "o"},), {})],
    ("GET", "/v1/quotas/user/{userId}/usage"): [
        ("quotas.usage", (), {}),
        ("quotas.usage", ("u-1",), {"period": "weekly", "bucket": "day"}),
    ],
    ("GET", "/v1/quotas/team/{teamId}/usage"): [("quotas.usage", (), {"team_id": "t-1"})],
    ("GET", "/v1/quotas/enterprise/org/{orgId}/usage"): [("quotas.usage", (), {"org_id": "o"})],
    ("POST", "/v1/evaluations"): [("evaluations.record", (report_json(),), {})],
    ("GET", "/v1/evaluations"): [("evaluations.list", (), {"limit": 5})],
    ("GET", "/v1/evaluations/{runId}"): [("evaluations.get", ("eval_1",), {})],
    ("POST", "/v1/security/validate"): [("security.validate", ("hello",), {})],
    ("GET", "/v1/security/events"): [
        ("security.events", (), {}),
        ("security.events_page", (), {"severity": "high"}),
    ],
    ("GET", "/v1/security/policies"): [("security.policies", (), {})],
    ("PUT", "/v1/security/policies/{policyId}"): [("security.put_policy", ("p", _POLICY), {})],
    ("PATCH", "/v1/security/policies/{policyId}"): [
        ("security.patch_policy", ("p", {"enabled": False}), {})
    ],
    ("POST", "/v1/webhooks"): [("webhooks.create", (), _HOOK)],
    ("GET", "/v1/webhooks"): [("webhooks.list", (), {})],
    ("GET", "/v1/webhooks/{webhookId}"): [("webhooks.get", ("w",), {})],
    ("PATCH", "/v1/webhooks/{webhookId}"): [("webhooks.update", ("w",), {"enabled": False})],
    ("DELETE", "/v1/webhooks/{webhookId}"): [("webhooks.delete", ("w",), {})],
    ("POST", "/v1/webhooks/{webhookId}/rotate-secret"): [("webhooks.rotate_secret", ("w",), {})],
    ("POST", "/v1/webhooks/{webhookId}/test"): [("webhooks.test", ("w",), {})],
    ("GET", "/v1/webhooks/{webhookId}/deliveries"): [("webhooks.deliveries", ("w",), {})],
    ("GET", "/v1/webhooks/{webhookId}/deliveries/{deliveryId}"): [
        ("webhooks.delivery", ("w", "d"), {})
    ],
    ("POST", "/v1/webhooks/{webhookId}/deliveries/{deliveryId}/retry"): [
        ("webhooks.retry", ("w", "d"), {})
    ],
}


class _Engine:
    async def ask(self, method: str, *args: Any) -> tuple[Any, dict[str, str]]:
        return None, {}

    async def running_async(self) -> dict[str, int]:
        return {"tasks": 0, "inflight": 0, "queued": 0}


def _app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings(state_dir=tmp_path), _Engine())
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    # Each router's own routes too: one left out of the document still needs a method.
    for module in (health, tasks, storage, quotas, security, webhooks, evaluations):
        for route in module.router.routes:
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":
                    documented.add((method, API_PREFIX + str(getattr(route, "path", ""))))
    return documented


def _template(path: str) -> re.Pattern[str]:
    # Each {param} matches one path segment; the rest must be equal.
    parts = re.split(r"\{[^}]+\}", path)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "$")


def _covers(mapped: tuple[str, str], route: tuple[str, str]) -> bool:
    # The document may list a parameter's values as paths of their own
    # (/security/policies/input-size for /security/policies/{policyId}).
    return mapped[0] == route[0] and bool(_template(mapped[1]).match(route[1]))


def test_every_route_has_an_sdk_method(tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    assert len(routes) >= 30  # the app's routes were found, not an empty set
    missing = sorted(r for r in routes if not any(_covers(m, r) for m in ROUTE_METHODS))
    assert not missing, f"routes without an SDK method (add them to the SDK and here): {missing}"
    stale = sorted(m for m in ROUTE_METHODS if not any(_covers(m, r) for r in routes))
    assert not stale, f"mapped routes the app does not have: {stale}"


def _resolve(client: object, dotted: str) -> Callable[..., Any]:
    target: Any = client
    for part in dotted.split("."):
        target = getattr(target, part)
    assert callable(target), dotted
    return target  # type: ignore[no-any-return]


class _Recorder:
    """Answers every request 404 ``TASK_NOT_FOUND`` (so each call sends one request and
    raises), recording what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        body = {"error": {"code": "TASK_NOT_FOUND", "message": "scripted"}, "requestId": "r"}
        return httpx.Response(404, json=body)


def _cases() -> Iterator[tuple[str, str, SdkCall]]:
    for (method, path), calls in ROUTE_METHODS.items():
        for call in calls:
            yield method, path, call


CASES = list(_cases())
IDS = [f"{c[2][0]}->{c[0]} {c[1]}" for c in CASES]


def _call_sync(client: RLMClient, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    out = _resolve(client, name)(*args, **kwargs)
    if isinstance(out, Iterator):  # an event stream sends on first read
        next(out)


@pytest.mark.parametrize(("method", "path", "call"), CASES, ids=IDS)
def test_the_sync_method_calls_its_route(method: str, path: str, call: SdkCall) -> None:
    name, args, kwargs = call
    recorder = _Recorder()
    transport = httpx.MockTransport(recorder)
    client = RLMClient("k", base_url=BASE, max_retries=0, transport=transport)
    with client, pytest.raises(RLMError):
        _call_sync(client, name, args, kwargs)
    assert len(recorder.sent) == 1
    sent_method, sent_path = recorder.sent[0]
    assert sent_method == method
    assert _template(path).match(sent_path), (sent_path, path)


@pytest.mark.parametrize(("method", "path", "call"), CASES, ids=IDS)
def test_the_async_method_calls_its_route(method: str, path: str, call: SdkCall) -> None:
    name, args, kwargs = call
    recorder = _Recorder()

    async def go() -> None:
        async with AsyncRLMClient(
            "k", base_url=BASE, max_retries=0, transport=httpx.MockTransport(recorder)
        ) as c:
            fn = _resolve(c, name)
            out = fn(*args, **kwargs)
            if inspect.isawaitable(out):
                await out
            else:
                assert hasattr(out, "__anext__"), f"{name} is neither awaitable nor async iterable"
                await out.__anext__()

    with pytest.raises(RLMError):
        asyncio.run(go())
    assert len(recorder.sent) == 1
    assert recorder.sent[0][0] == method
    assert _template(path).match(recorder.sent[0][1]), (recorder.sent[0][1], path)

"""The Python SDK (``rlm_hypervisor``) against a scripted server behind ``httpx.MockTransport``.

No Ray, no network: every test scripts the server's answers, then checks the exact requests
the SDK sent (method, URL, headers, camelCase body) and what it returned or raised.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import rlm
import rlm_hypervisor
from rlm.models import TeamQuotaStatus
from rlm_hypervisor import (
    AsyncRLMClient,
    ExecuteResult,
    Forbidden,
    InternalError,
    InvalidInput,
    QuotaExceeded,
    RateLimited,
    RLMClient,
    RLMError,
    TaskNotFound,
    TaskTimeout,
    Unauthorized,
)
from rlm_hypervisor._retry import parse_retry_after

API_KEY = "your-api-key"


def FULL_STEP() -> float:  # noqa: N802 - a constant, as a function
    """The jitter draw that sleeps the whole backoff step, so expected sleeps are exact."""
    return 1.0


BASE = "http://127.0.0.1:8000/v1"

# The Python snippet of the API document, verbatim.
DOC_REQUEST: dict[str, Any] = {
    "type": "recursive",
    "description": "Process items",
    "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"},
}
# What the SDK sends for it: the wire form with the model's defaults filled in.
DOC_WIRE: dict[str, Any] = {
    "type": "recursive",
    "description": "Process items",
    "complexity": "linear",
    "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"},
    "options": {"priority": "normal", "async": False},
}

Handler = Callable[[httpx.Request], httpx.Response]
Reply = httpx.Response | Exception | Handler


def result_body(task_id: str = "task-1", output: Any = 15, **extra: Any) -> dict[str, Any]:
    return {
        "taskId": task_id,
        "status": "completed",
        "output": output,
        "executionTimeMs": 12.5,
        "agentCalls": 3,
        "decompositionDepth": 1,
        "success": True,
        **extra,
    }


def status_body(task_id: str, state: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "taskId": task_id,
        "status": state,
        "createdAt": "2024-01-15T10:30:00Z",
    }
    if state != "pending":
        body["startedAt"] = "2024-01-15T10:30:01Z"
        body["progress"] = {"current": 2, "total": 3, "percentage": 66.7}
    if result is not None:
        body["completedAt"] = "2024-01-15T10:30:02Z"
        body["result"] = result
    return body


def error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    *,
    request_id: str = "req-abc123",
    retry_after: str | None = None,
) -> httpx.Response:
    payload: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        payload["details"] = details
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(status, json={"error": payload, "requestId": request_id}, headers=headers)


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


class Server:
    """A scripted server: answers requests in order and keeps each one for inspection."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.replies, f"unexpected request {request.method} {request.url}"
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return reply
        return reply(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


class Clock:
    """A fake monotonic clock and sleep: sleeping advances time and is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def body_of(request: httpx.Request) -> Any:
    assert request.headers["Content-Type"] == "application/json"
    return json.loads(request.content)


def client_for(server: Server, clock: Clock | None = None, **kwargs: Any) -> RLMClient:
    clock = clock or Clock()
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("jitter", FULL_STEP)
    return RLMClient(transport=server.transport, sleep=clock.sleep, clock=clock, **kwargs)


def async_client_for(server: Server, clock: Clock | None = None, **kwargs: Any) -> AsyncRLMClient:
    clock = clock or Clock()
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("jitter", FULL_STEP)
    return AsyncRLMClient(transport=server.transport, sleep=clock.asleep, clock=clock, **kwargs)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own settings must not leak into the defaults under test.
    monkeypatch.delenv("RLM_API_KEY", raising=False)
    monkeypatch.delenv("RLM_BASE_URL", raising=False)


# --------------------------------------------------------------------------- the doc snippet


@pytest.fixture
def doc_server(monkeypatch: pytest.MonkeyPatch) -> Server:
    """Route every ``httpx.Client`` to a scripted server, so the doc's code runs unchanged."""
    server = Server(ok(result_body(output=15)))
    real_client = httpx.Client

    def client_with_mock(**kwargs: Any) -> httpx.Client:
        kwargs["transport"] = server.transport
        return real_client(**kwargs)

    monkeypatch.setattr(httpx, "Client", client_with_mock)
    return server


def test_doc_python_snippet_runs_as_written(
    doc_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlm_hypervisor import RLMClient

    client = RLMClient(api_key="your-api-key")

    result = client.execute({
        "type": "recursive",
        "description": "Process items",
        "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"}
    })  # fmt: skip

    print(f"Result: {result.output}")

    assert capsys.readouterr().out == "Result: 15\n"
    request = doc_server.last
    assert request.method == "POST"
    assert str(request.url) == "http://127.0.0.1:8000/v1/execute"
    assert request.headers["Authorization"] == "Bearer your-api-key"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == f"rlm-hypervisor-python/{rlm_hypervisor.__version__}"
    assert body_of(request) == DOC_WIRE
    client.close()


def test_execute_returns_the_result_with_snake_case_attributes() -> None:
    server = Server(ok(result_body(output=15, score=1.0)))
    with client_for(server, base_url=BASE) as client:
        result = client.execute(DOC_REQUEST)
    assert isinstance(result, ExecuteResult)
    assert (result.output, result.task_id, result.status, result.success) == (
        15,
        "task-1",
        "completed",
        True,
    )
    assert (result.agent_calls, result.execution_time_ms, result.decomposition_depth) == (
        3,
        12.5,
        1,
    )
    assert (result.score, result.error, result.done) == (1.0, None, True)
    assert result.raise_for_error() is result


def test_execute_stretches_the_read_timeout_to_the_task_budget() -> None:
    server = Server(ok(result_body()), ok(result_body()), ok(result_body()))
    with client_for(server, timeout=60.0) as client:
        client.execute(DOC_REQUEST)  # no timeoutMs: the server's default of 600 s, plus 10 s
        client.execute({**DOC_REQUEST, "options": {"timeoutMs": 30_000}})
        client.execute({**DOC_REQUEST, "options": {"timeoutMs": 120_000, "priority": "high"}})
    reads = [r.extensions["timeout"]["read"] for r in server.requests]
    connects = {r.extensions["timeout"]["connect"] for r in server.requests}
    assert reads == [610.0, 60.0, 130.0]
    assert connects == {60.0}
    assert body_of(server.last)["options"] == {
        "timeoutMs": 120_000,
        "priority": "high",
        "async": False,
    }


def test_an_invalid_request_is_refused_before_sending() -> None:
    server = Server()
    with client_for(server) as client, pytest.raises(InvalidInput) as info:
        client.execute({**DOC_REQUEST, "type": "bogus"})
    assert info.value.details["field"] == "type"
    assert server.requests == []


def test_execute_without_wait_submits_in_async_mode() -> None:
    server = Server(
        ok({"taskId": "task-7", "status": "pending"}, status=202),
        ok({"taskId": "task-8", "status": "pending"}, status=202),
    )
    with client_for(server) as client:
        pending = client.execute(DOC_REQUEST, wait=False)
        task_id = client.submit(DOC_REQUEST)
    assert (pending.task_id, pending.status, pending.done, pending.output) == (
        "task-7",
        "pending",
        False,
        None,
    )
    assert task_id == "task-8"
    for request in server.requests:
        assert request.headers["Prefer"] == "respond-async"
        assert body_of(request) == {**DOC_WIRE, "options": {"priority": "normal", "async": True}}
        assert request.extensions["timeout"]["read"] == 60.0


def test_execute_waits_when_the_server_answers_202_anyway() -> None:
    clock = Clock()
    server = Server(
        ok({"taskId": "task-9", "status": "pending"}, status=202),
        ok(status_body("task-9", "running")),
        ok(status_body("task-9", "completed", result_body("task-9", output=15))),
    )
    with client_for(server, clock) as client:
        result = client.execute({**DOC_REQUEST, "options": {"async": True}})
    assert result.output == 15
    assert [r.url.path for r in server.requests] == [
        "/v1/execute",
        "/v1/tasks/task-9",
        "/v1/tasks/task-9",
    ]
    assert clock.sleeps == [0.2]


def test_a_failed_task_is_a_result_until_asked_to_raise() -> None:
    failed = result_body(
        status="failed",
        output=None,
        success=False,
        error={"code": "TIMEOUT", "message": "task ran past 30000 ms", "details": {"ms": 30000}},
    )
    server = Server(ok(failed))
    with client_for(server) as client:
        result = client.execute(DOC_REQUEST)
    assert (result.success, result.error.code if result.error else None) == (False, "TIMEOUT")
    with pytest.raises(TaskTimeout, match="30000 ms") as info:
        result.raise_for_error()
    assert info.value.details == {"ms": 30000}


# ----------------------------------------------------------------------------- configuration


def test_environment_supplies_key_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_API_KEY", "env-key")
    monkeypatch.setenv("RLM_BASE_URL", "http://rlm.internal:9000/api/v1/")
    server = Server(ok({"status": "ok", "version": "0.1.0"}))
    with RLMClient(transport=server.transport) as client:
        assert client.health() == {"status": "ok", "version": "0.1.0"}
        assert client.base_url == "http://rlm.internal:9000/api/v1"
    assert str(server.last.url) == "http://rlm.internal:9000/api/v1/health"
    assert server.last.headers["Authorization"] == "Bearer env-key"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_API_KEY", "env-key")
    monkeypatch.setenv("RLM_BASE_URL", "http://rlm.internal:9000/api/v1")
    server = Server(ok({"status": "ok"}))
    with RLMClient("arg-key", base_url="http://other:1/v1", transport=server.transport) as c:
        c.health()
    assert str(server.last.url) == "http://other:1/v1/health"
    assert server.last.headers["Authorization"] == "Bearer arg-key"


def test_defaults_without_key_or_environment() -> None:
    server = Server(ok({"status": "ok"}))
    with RLMClient(region="us-west-2", transport=server.transport) as client:
        client.health()
        assert (client.region, client.timeout, client.max_retries) == ("us-west-2", 60.0, 3)
    assert str(server.last.url) == "http://127.0.0.1:8000/v1/health"
    assert "Authorization" not in server.last.headers


def test_repr_does_not_show_the_key() -> None:
    with RLMClient("secret-key-123", transport=Server().transport) as client:
        assert "secret-key-123" not in repr(client)
        assert repr(client) == "RLMClient(base_url='http://127.0.0.1:8000/v1', api_key=set)"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RLMClient(max_retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        RLMClient(timeout=0)


def test_a_closed_client_cannot_send() -> None:
    server = Server(ok({"status": "ok"}))
    with client_for(server) as client:
        client.health()
    with pytest.raises(RuntimeError):
        client.health()


# ------------------------------------------------------------------------------------- tasks


def test_tasks_get_cancel_and_list() -> None:
    server = Server(
        ok(status_body("task-1", "running")),
        ok({"taskId": "task-1", "status": "cancelled", "message": "cancellation requested"}),
        ok({"tasks": [status_body("task-2", "pending"), status_body("task-1", "cancelled")]}),
    )
    with client_for(server) as client:
        status = client.tasks.get("task-1")
        cancelled = client.tasks.cancel("task-1")
        tasks = client.tasks.list(limit=10)
    assert status.status == "running"
    assert status.created_at == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert status.progress is not None and status.progress.percentage == 66.7
    assert (cancelled.status, cancelled.message) == ("cancelled", "cancellation requested")
    assert [t.task_id for t in tasks] == ["task-2", "task-1"]
    get, cancel, listing = server.requests
    assert (get.method, str(get.url)) == ("GET", f"{BASE}/tasks/task-1")
    assert (cancel.method, str(cancel.url), cancel.content) == (
        "POST",
        f"{BASE}/tasks/task-1/cancel",
        b"",
    )
    assert (listing.method, str(listing.url)) == ("GET", f"{BASE}/tasks?limit=10")


def test_task_ids_are_percent_encoded_in_paths() -> None:
    server = Server(error(404, "TASK_NOT_FOUND", "task 'a/../b' does not exist"))
    with client_for(server) as client, pytest.raises(TaskNotFound):
        client.tasks.get("a/../b")
    assert server.last.url.raw_path == b"/v1/tasks/a%2F..%2Fb"


def test_wait_polls_until_the_task_completes() -> None:
    clock = Clock()
    server = Server(
        ok(status_body("task-42", "pending")),
        ok(status_body("task-42", "running")),
        ok(status_body("task-42", "completed", result_body("task-42", output=15))),
    )
    with client_for(server, clock) as client:
        result = client.tasks.wait("task-42")
    assert (result.task_id, result.output, result.success) == ("task-42", 15, True)
    assert clock.sleeps == [0.2, 0.2]
    assert [(r.method, r.url.path) for r in server.requests] == [("GET", "/v1/tasks/task-42")] * 3


def test_wait_raises_timeout_error_at_its_deadline() -> None:
    clock = Clock()
    server = Server(*(ok(status_body("task-5", "running")) for _ in range(4)))
    with client_for(server, clock) as client, pytest.raises(TimeoutError, match="task-5"):
        client.tasks.wait("task-5", timeout=0.5, poll_interval=0.2)
    # The last sleep is cut short so the final poll lands on the deadline, not after it.
    assert clock.sleeps == pytest.approx([0.2, 0.2, 0.1])
    assert len(server.requests) == 4


def test_wait_on_a_task_cancelled_before_it_ran() -> None:
    server = Server(ok(status_body("task-6", "cancelled")))
    with client_for(server) as client:
        result = client.tasks.wait("task-6")
    assert (result.task_id, result.status, result.success, result.output) == (
        "task-6",
        "cancelled",
        False,
        None,
    )


def test_wait_refuses_a_non_positive_poll_interval() -> None:
    with client_for(Server()) as client, pytest.raises(ValueError, match="poll_interval"):
        client.tasks.wait("task-1", poll_interval=0)


# ------------------------------------------------------------------------------------ quotas


def period(used: int, limit: int, reset: str) -> dict[str, Any]:
    return {
        "agentsUsed": used,
        "agentsLimit": limit,
        "agentsRemaining": limit - used,
        "computeHoursUsed": 1.5,
        "computeHoursLimit": 10.0,
        "resetTime": reset,
        "exceeded": False,
    }


USER_QUOTA = {
    "userId": "user-123",
    "daily": period(12, 100, "2024-01-16T00:00:00Z"),
    "weekly": period(40, 500, "2024-01-22T00:00:00Z"),
    "monthly": period(90, 2000, "2024-02-01T00:00:00Z"),
    "currentConcurrentAgents": 2,
    "maxConcurrentAgents": 5,
}


def test_quota_status_of_the_key_owner_uses_me() -> None:
    server = Server(ok(USER_QUOTA), ok(USER_QUOTA))
    with client_for(server) as client:
        mine = client.quotas.get_status()
        theirs = client.quotas.get_status("user-123")
    assert mine.daily.agents_remaining == 88
    assert theirs.monthly.reset_time == datetime(2024, 2, 1, tzinfo=UTC)
    assert [str(r.url) for r in server.requests] == [
        f"{BASE}/quotas/user/me",
        f"{BASE}/quotas/user/user-123",
    ]


def test_quota_check_sends_camel_case() -> None:
    decision = {"allowed": True, "reason": "Quota available"}
    server = Server(ok(decision), ok(decision))
    with client_for(server) as client:
        first = client.quotas.check("user-123", 5, session_id="session-123")
        client.quotas.check("user-123", 1)
    assert (first.allowed, first.reason) == (True, "Quota available")
    assert str(server.requests[0].url) == f"{BASE}/quotas/user/user-123/check"
    assert [body_of(r) for r in server.requests] == [
        {"agentsRequested": 5, "sessionId": "session-123"},
        {"agentsRequested": 1},
    ]


def test_quota_check_of_zero_agents_is_refused_before_sending() -> None:
    server = Server()
    with client_for(server) as client, pytest.raises(InvalidInput):
        client.quotas.check("user-123", 0)
    assert server.requests == []


def test_team_quota() -> None:
    # Built from the shared model so the test follows its aliases, whatever they are.
    team = TeamQuotaStatus.model_validate(
        {
            "team_id": "team-1",
            "config": {
                "team_name": "Research",
                "total_agent_pool": 100,
                "total_compute_hours": 1000.0,
                "total_storage_gb": 500.0,
            },
            "usage": {
                "agents_used": 10,
                "agents_total": 100,
                "compute_used": 5.0,
                "compute_total": 1000.0,
                "storage_used": 1.0,
                "storage_total": 500.0,
            },
            "members": [{"user_id": "user-a", "role": "lead", "agents_allocated": 60}],
            "projects": [{"project_id": "p-1", "name": "NLP", "agents_allocated": 20}],
        }
    )
    server = Server(ok(team.to_wire()))
    with client_for(server) as client:
        status = client.quotas.team("team-1")
    assert status == team
    assert str(server.last.url) == f"{BASE}/quotas/team/team-1"


def test_transfer_sends_the_idempotency_key() -> None:
    server = Server(ok({"transferId": "tr-1", "status": "completed"}))
    with client_for(server) as client:
        answer = client.quotas.transfer(
            "team-1", "user-a", "user-b", agents=10, compute_hours=100, idempotency_key="key-1"
        )
    assert answer == {"transferId": "tr-1", "status": "completed"}
    request = server.last
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/quotas/team/team-1/transfers")
    assert request.headers["Idempotency-Key"] == "key-1"
    assert body_of(request) == {
        "fromUserId": "user-a",
        "toUserId": "user-b",
        "agents": 10,
        "computeHours": 100.0,
    }


def test_transfer_generates_one_key_and_keeps_it_across_retries() -> None:
    clock = Clock()
    server = Server(
        httpx.Response(503, text="upstream unavailable"),
        ok({"transferId": "tr-2", "status": "completed"}),
    )
    with client_for(server, clock) as client:
        client.quotas.transfer("team-1", "user-a", "user-b", agents=1)
    first, second = (r.headers["Idempotency-Key"] for r in server.requests)
    assert first == second and len(first) == 36
    assert clock.sleeps == [0.5]


def test_org_hierarchy_and_update() -> None:
    org = {"orgId": "org-eu", "name": "EU", "parentId": "org-root", "agents": 1000}
    hierarchy = {
        "org": org,
        "ancestors": [{"orgId": "org-root", "name": "Root"}],
        "descendants": [],
        "siblings": [{"orgId": "org-us", "name": "US", "parentId": "org-root"}],
    }
    server = Server(ok(hierarchy), ok(org))
    with client_for(server) as client:
        tree = client.quotas.org_hierarchy("org-eu")
        updated = client.quotas.update_org("org-eu", agents=1000, storage_gb=5000)
    assert [o.org_id for o in tree.ancestors] == ["org-root"]
    assert tree.org.parent_id == "org-root"
    assert updated == org
    get, patch = server.requests
    assert str(get.url) == f"{BASE}/quotas/enterprise/org/org-eu/hierarchy"
    assert (patch.method, str(patch.url)) == ("PATCH", f"{BASE}/quotas/enterprise/org/org-eu")
    assert body_of(patch) == {"agents": 1000, "storageGB": 5000.0}


# ---------------------------------------------------------------------- storage and security


def test_storage_read_returns_the_raw_bytes() -> None:
    payload = b"\x00\x01\xffRLM"
    server = Server(
        httpx.Response(200, content=payload, headers={"Content-Type": "application/octet-stream"})
    )
    with client_for(server) as client:
        data = client.storage.read("local", "data/a.bin", 0, 6)
    assert data == payload
    request = server.last
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/storage/read")
    assert request.headers["Accept"] == "application/octet-stream"
    assert body_of(request) == {
        "connector": "local",
        "key": "data/a.bin",
        "start": 0,
        "end": 6,
        "method": "auto",
    }


def test_storage_read_decodes_a_json_answer() -> None:
    payload = b"hello world"
    body = {"data": base64.b64encode(payload).decode(), "latencyMs": 1.2, "method": "mmap"}
    server = Server(ok(body))
    with client_for(server) as client:
        assert client.storage.read("s3", "bucket/key", 0, 11, method="mmap") == payload
    assert body_of(server.last)["method"] == "mmap"


def test_security_validate_and_events() -> None:
    verdict = {
        "allowed": False,
        "sanitized": "hello",
        "violations": [
            {
                "policyId": "xss",
                "category": "input_validation",
                "severity": "high",
                "message": "script tag",
            }
        ],
    }
    event = {
        "eventId": "ev-1",
        "timestamp": "2024-01-15T10:30:00Z",
        "severity": "critical",
        "category": "authentication",
        "message": "invalid token",
        "userId": "user-123",
    }
    server = Server(ok(verdict), ok({"events": [event]}))
    with client_for(server) as client:
        result = client.security.validate(
            "hello<script>", context={"userId": "user-123", "action": "create_agent"}
        )
        events = client.security.events(severity="critical", limit=100)
    assert (result.allowed, result.violations[0].policy_id) == (False, "xss")
    assert events[0].timestamp == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    validate, listing = server.requests
    assert body_of(validate) == {
        "input": "hello<script>",
        "context": {"userId": "user-123", "action": "create_agent"},
    }
    assert str(listing.url) == f"{BASE}/security/events?limit=100&severity=critical"


def test_security_event_pages_and_policies() -> None:
    page = {
        "events": [
            {
                "eventId": "sev-1",
                "timestamp": "2026-01-15T10:30:00Z",
                "severity": "high",
                "category": "sandbox",
                "message": "cell exceeded its memory cap",
                "type": "sandbox.violation",
                "orgId": "acme",
                "seq": 7,
                "digest": "ab" * 32,
            }
        ],
        "nextCursor": "czc",
    }
    policy = {
        "policyId": "input-injection",
        "name": "Prompt injection",
        "category": "input_validation",
        "enabled": False,
        "priority": 70,
        "settings": {"severity": "critical", "extraPhrases": []},
    }
    server = Server(ok(page), ok({"orgId": "acme", "policies": [policy]}), ok(policy), ok(policy))
    since = datetime(2026, 1, 1, tzinfo=UTC)
    with client_for(server) as client:
        got = client.security.events_page(
            severity="high,critical", limit=10, cursor="czE", since=since, type="sandbox.violation"
        )
        listed = client.security.policies()
        patched = client.security.patch_policy("input-injection", {"enabled": False})
        put = client.security.put_policy("input-injection", {"enabled": False, "priority": 70})
    assert (got.next_cursor, got.events[0].seq, got.events[0].type) == (
        "czc",
        7,
        "sandbox.violation",
    )
    assert listed.policies[0].policy_id == "input-injection" and listed.org_id == "acme"
    assert patched.enabled is False and put.priority == 70
    listing, policies, patch, replace = server.requests
    assert (
        listing.url.params["cursor"] == "czE" and listing.url.params["type"] == "sandbox.violation"
    )
    assert listing.url.params["since"] == "2026-01-01T00:00:00+00:00"
    assert (policies.method, str(policies.url)) == ("GET", f"{BASE}/security/policies")
    assert (patch.method, body_of(patch)) == ("PATCH", {"enabled": False})
    assert (replace.method, body_of(replace)) == ("PUT", {"enabled": False, "priority": 70})
    assert str(replace.url) == f"{BASE}/security/policies/input-injection"


# ------------------------------------------------------------------------------------ errors


ERROR_CASES: list[tuple[str, int, type[RLMError], dict[str, Any] | None]] = [
    ("INVALID_INPUT", 400, InvalidInput, {"field": "input.items"}),
    ("UNAUTHORIZED", 401, Unauthorized, None),
    ("FORBIDDEN", 403, Forbidden, {"requiredScope": "rlm:execute"}),
    ("TASK_NOT_FOUND", 404, TaskNotFound, {"taskId": "task-404"}),
    ("TIMEOUT", 408, TaskTimeout, {"timeoutMs": 30000}),
    (
        "QUOTA_EXCEEDED",
        429,
        QuotaExceeded,
        {"resource": "agents", "limit": 100, "used": 100, "resetTime": "2024-01-16T00:00:00Z"},
    ),
    ("RATE_LIMITED", 429, RateLimited, {"retryAfterS": 30}),
    ("INTERNAL_ERROR", 500, InternalError, None),
]


@pytest.mark.parametrize(("code", "status", "cls", "details"), ERROR_CASES)
def test_each_error_code_raises_its_class(
    code: str, status: int, cls: type[RLMError], details: dict[str, Any] | None
) -> None:
    server = Server(error(status, code, f"{code} happened", details, request_id="req-42"))
    with client_for(server, max_retries=0) as client, pytest.raises(cls) as info:
        client.execute(DOC_REQUEST)
    err = info.value
    assert type(err) is cls
    assert (err.code, err.message, err.details) == (code, f"{code} happened", details or {})
    assert getattr(err, "request_id", None) == "req-42"
    assert getattr(err, "status_code", None) == status


def test_rate_limited_exposes_retry_after() -> None:
    server = Server(error(429, "RATE_LIMITED", "slow down", {"retryAfterS": 7}, retry_after="7"))
    with client_for(server, max_retries=0) as client, pytest.raises(RateLimited) as info:
        client.tasks.get("task-1")
    assert info.value.retry_after_s == 7.0


def test_an_unknown_code_raises_the_base_class() -> None:
    server = Server(error(418, "TEAPOT", "short and stout"))
    with client_for(server) as client, pytest.raises(RLMError) as info:
        client.tasks.get("task-1")
    assert type(info.value) is RLMError
    assert getattr(info.value, "status_code", None) == 418


def test_a_conflict_is_an_invalid_input_with_its_own_class() -> None:
    from rlm.errors import Conflict, InvalidInput

    server = Server(error(409, "CONFLICT", "already exists", {"field": "orgId"}))
    with client_for(server) as client, pytest.raises(Conflict) as info:
        client.tasks.get("task-1")
    assert isinstance(info.value, InvalidInput)
    assert getattr(info.value, "status_code", None) == 409


def test_a_non_json_error_body_is_an_internal_error() -> None:
    page = "<html><body>502 Bad Gateway</body></html>"
    server = Server(httpx.Response(502, text=page, headers={"X-Request-ID": "edge-1"}))
    with client_for(server, max_retries=0) as client, pytest.raises(InternalError) as info:
        client.tasks.get("task-1")
    assert info.value.details == {"status": 502, "body": page}
    assert getattr(info.value, "request_id", None) == "edge-1"
    assert getattr(info.value, "status_code", None) == 502


def test_json_without_the_envelope_is_an_internal_error() -> None:
    server = Server(ok({"detail": "Not Found"}, status=404))
    with client_for(server) as client, pytest.raises(InternalError) as info:
        client.tasks.get("task-1")
    assert info.value.details["status"] == 404
    assert getattr(info.value, "request_id", "missing") is None


def test_a_2xx_body_of_the_wrong_shape_is_an_internal_error() -> None:
    server = Server(ok({"taskId": "task-1"}))
    with client_for(server) as client, pytest.raises(InternalError, match="TaskStatus"):
        client.tasks.get("task-1")


# ----------------------------------------------------------------------------------- retries


def test_429_is_retried_after_retry_after() -> None:
    clock = Clock()
    server = Server(
        error(429, "RATE_LIMITED", "slow down", {"retryAfterS": 2}, retry_after="2"),
        error(429, "RATE_LIMITED", "slow down", {"retryAfterS": 1}, retry_after="0.5"),
        ok(status_body("task-1", "running")),
    )
    with client_for(server, clock) as client:
        assert client.tasks.get("task-1").status == "running"
    assert clock.sleeps == [2.0, 0.5]
    assert len(server.requests) == 3


def test_backoff_is_jittered_between_half_and_all_of_its_step() -> None:
    draws = iter([0.0, 0.5, 1.0])
    clock = Clock()
    server = Server(
        httpx.Response(502, text="bad gateway"),
        httpx.Response(503, text="unavailable"),
        httpx.Response(504, text="gateway timeout"),
        ok(status_body("task-1", "completed", result_body())),
    )
    with client_for(server, clock, jitter=lambda: next(draws)) as client:
        assert client.tasks.get("task-1").status == "completed"
    # Steps 0.5, 1 and 2 s; the draws place each sleep at half, three quarters and all of it.
    assert clock.sleeps == [0.25, 0.75, 2.0]


def test_a_wait_the_server_names_is_not_jittered() -> None:
    clock = Clock()
    server = Server(
        error(429, "RATE_LIMITED", "slow down", {"retryAfterS": 2}, retry_after="2"),
        ok(status_body("task-1", "running")),
    )
    with client_for(server, clock, jitter=lambda: 0.0) as client:
        assert client.tasks.get("task-1").status == "running"
    assert clock.sleeps == [2.0]


def test_the_default_jitter_spreads_clients_that_failed_together() -> None:
    sleeps = []
    for _ in range(20):
        clock = Clock()
        server = Server(httpx.Response(503, text="x"), ok(status_body("task-1", "running")))
        with RLMClient(API_KEY, transport=server.transport, sleep=clock.sleep) as client:
            client.tasks.get("task-1")
        sleeps.extend(clock.sleeps)
    assert all(0.25 <= s <= 0.5 for s in sleeps), sleeps
    assert len(set(sleeps)) > 10  # drawn afresh each time, not one shared value


def test_execute_is_retried_on_429_which_consumed_nothing() -> None:
    clock = Clock()
    server = Server(
        error(429, "QUOTA_EXCEEDED", "concurrent agents", {"resource": "agents"}, retry_after="1"),
        ok(result_body()),
    )
    with client_for(server, clock) as client:
        assert client.execute(DOC_REQUEST).output == 15
    assert clock.sleeps == [1.0]
    assert [body_of(r) for r in server.requests] == [DOC_WIRE, DOC_WIRE]


def test_429_retries_are_bounded() -> None:
    clock = Clock()
    server = Server(*(error(429, "RATE_LIMITED", "slow", retry_after="1") for _ in range(3)))
    with client_for(server, clock, max_retries=2) as client, pytest.raises(RateLimited):
        client.tasks.get("task-1")
    assert clock.sleeps == [1.0, 1.0]
    assert len(server.requests) == 3


def test_each_sleep_is_capped_at_30_seconds() -> None:
    clock = Clock()
    server = Server(
        error(429, "RATE_LIMITED", "slow", retry_after="45"),
        error(429, "RATE_LIMITED", "slow", retry_after="15"),
        ok(status_body("task-1", "running")),
    )
    with client_for(server, clock) as client:
        client.tasks.get("task-1")
    assert clock.sleeps == [30.0, 15.0]


def test_a_wait_beyond_the_retry_budget_raises_at_once() -> None:
    clock = Clock()
    server = Server(error(429, "QUOTA_EXCEEDED", "daily quota", retry_after="3600"))
    with client_for(server, clock) as client, pytest.raises(QuotaExceeded):
        client.execute(DOC_REQUEST)
    assert clock.sleeps == []
    assert len(server.requests) == 1


def test_429_without_header_uses_the_body_then_backoff() -> None:
    clock = Clock()
    server = Server(
        error(429, "RATE_LIMITED", "slow", {"retryAfterS": 3}),
        httpx.Response(429, text="Too Many Requests"),
        ok(status_body("task-1", "running")),
    )
    with client_for(server, clock) as client:
        client.tasks.get("task-1")
    assert clock.sleeps == [3.0, 1.0]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_execute_is_retried_on_5xx_under_one_idempotency_key(status: int) -> None:
    clock = Clock()
    server = Server(error(status, "INTERNAL_ERROR", "replica died"), ok(result_body()))
    with client_for(server, clock) as client:
        assert client.execute(DOC_REQUEST).output == 15
    first, second = (r.headers["Idempotency-Key"] for r in server.requests)
    assert first == second and len(first) == 36  # the repeat names the first attempt's task
    assert body_of(server.requests[0]) == body_of(server.requests[1]) == DOC_WIRE
    assert clock.sleeps == [0.5]


def test_each_execute_call_has_its_own_key_unless_given_one() -> None:
    server = Server(ok(result_body()), ok(result_body()), ok(result_body()), ok(result_body()))
    with client_for(server) as client:
        client.execute(DOC_REQUEST)
        client.execute(DOC_REQUEST)
        client.execute(DOC_REQUEST, idempotency_key="mine-1")
        client.submit(DOC_REQUEST, idempotency_key="mine-2")
    keys = [r.headers["Idempotency-Key"] for r in server.requests]
    assert keys[0] != keys[1] and keys[2:] == ["mine-1", "mine-2"]


def test_a_task_that_ran_and_failed_is_not_repeated() -> None:
    clock = Clock()
    crashed = result_body(status="failed", output=None, success=False)
    server = Server(
        error(500, "INTERNAL_ERROR", "an agent crashed", {"taskId": "task-1", "result": crashed})
    )
    with client_for(server, clock) as client, pytest.raises(InternalError):
        client.execute(DOC_REQUEST)
    assert (len(server.requests), clock.sleeps) == (1, [])


def test_idempotent_calls_are_retried_on_gateway_errors_with_backoff() -> None:
    clock = Clock()
    server = Server(
        httpx.Response(502, text="bad gateway"),
        httpx.Response(503, text="unavailable"),
        httpx.Response(504, text="gateway timeout"),
        ok(status_body("task-1", "completed", result_body())),
    )
    with client_for(server, clock) as client:
        assert client.tasks.get("task-1").status == "completed"
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_500_is_retried_for_idempotent_calls_only() -> None:
    clock = Clock()
    server = Server(
        error(500, "INTERNAL_ERROR", "the replica died"),
        ok(status_body("task-1", "completed", result_body())),
        error(500, "INTERNAL_ERROR", "the replica died"),
    )
    with client_for(server, clock) as client:
        assert client.tasks.get("task-1").status == "completed"
        with pytest.raises(InternalError):
            client.quotas.create_team(
                {"teamId": "t", "teamName": "T", "totalAgentPool": 1, "totalComputeHours": 1}
            )
    assert clock.sleeps == [0.5]


def test_connection_failures_are_retried_then_propagate() -> None:
    clock = Clock()
    refused = httpx.ConnectError("connection refused")
    server = Server(refused, refused, ok(result_body()), refused, refused, refused, refused)
    with client_for(server, clock) as client:
        # Nothing was sent, so even POST /execute may be repeated.
        assert client.execute(DOC_REQUEST).output == 15
        with pytest.raises(httpx.ConnectError):
            client.health()
    assert clock.sleeps == [0.5, 1.0, 0.5, 1.0, 2.0]


def test_a_lost_answer_to_execute_is_retried_under_the_same_key() -> None:
    clock = Clock()
    server = Server(httpx.ReadTimeout("read timed out"), ok(result_body()))
    with client_for(server, clock) as client:
        assert client.execute(DOC_REQUEST).output == 15
    first, second = (r.headers["Idempotency-Key"] for r in server.requests)
    assert first == second


def test_retries_can_be_disabled() -> None:
    clock = Clock()
    server = Server(httpx.Response(503, text="unavailable"))
    with client_for(server, clock, max_retries=0) as client, pytest.raises(InternalError):
        client.tasks.get("task-1")
    assert clock.sleeps == []


def test_retry_after_accepts_an_http_date() -> None:
    now = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert parse_retry_after("Mon, 15 Jan 2024 10:30:12 GMT", now=now) == 12.0
    assert parse_retry_after("Mon, 15 Jan 2024 10:29:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


# ------------------------------------------------------------------------------ async client


def test_async_doc_example() -> None:
    server = Server(ok(result_body(output=15)))

    async def main() -> ExecuteResult:
        async with async_client_for(server) as client:
            return await client.execute(DOC_REQUEST)

    result = asyncio.run(main())
    assert f"Result: {result.output}" == "Result: 15"
    assert (server.last.method, str(server.last.url)) == ("POST", f"{BASE}/execute")
    assert server.last.headers["Authorization"] == f"Bearer {API_KEY}"
    assert body_of(server.last) == DOC_WIRE


def test_async_submit_and_wait() -> None:
    clock = Clock()
    server = Server(
        ok({"taskId": "task-3", "status": "pending"}, status=202),
        ok(status_body("task-3", "running")),
        ok(status_body("task-3", "completed", result_body("task-3", output=15))),
    )

    async def main() -> tuple[str, ExecuteResult]:
        async with async_client_for(server, clock) as client:
            task_id = await client.submit(DOC_REQUEST)
            return task_id, await client.tasks.wait(task_id, timeout=10)

    task_id, result = asyncio.run(main())
    assert (task_id, result.output) == ("task-3", 15)
    assert server.requests[0].headers["Prefer"] == "respond-async"
    assert clock.sleeps == [0.2]


def test_async_wait_times_out() -> None:
    clock = Clock()
    server = Server(*(ok(status_body("task-4", "running")) for _ in range(3)))

    async def main() -> None:
        async with async_client_for(server, clock) as client:
            await client.tasks.wait("task-4", timeout=0.3, poll_interval=0.2)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    assert clock.sleeps == pytest.approx([0.2, 0.1])


def test_async_429_retry_and_errors() -> None:
    clock = Clock()
    server = Server(
        error(429, "RATE_LIMITED", "slow down", retry_after="4"),
        error(404, "TASK_NOT_FOUND", "task 'nope' does not exist", {"taskId": "nope"}),
    )

    async def main() -> None:
        async with async_client_for(server, clock) as client:
            await client.tasks.get("nope")

    with pytest.raises(TaskNotFound) as info:
        asyncio.run(main())
    assert getattr(info.value, "request_id", None) == "req-abc123"
    assert info.value.details == {"taskId": "nope"}
    assert clock.sleeps == [4.0]


def test_async_execute_is_retried_on_5xx_under_one_key() -> None:
    clock = Clock()
    server = Server(httpx.Response(503, text="unavailable"), ok(result_body()))

    async def main() -> float:
        async with async_client_for(server, clock) as client:
            return (await client.execute(DOC_REQUEST, idempotency_key="k-async")).output  # type: ignore[no-any-return]

    assert asyncio.run(main()) == 15
    assert [r.headers["Idempotency-Key"] for r in server.requests] == ["k-async", "k-async"]
    assert clock.sleeps == [0.5]


def test_async_namespaces() -> None:
    payload = b"\x10\x20"
    server = Server(
        httpx.Response(200, content=payload, headers={"Content-Type": "application/octet-stream"}),
        ok(USER_QUOTA),
        ok({"transferId": "tr-3"}),
        ok({"allowed": True, "sanitized": "ok", "violations": []}),
        ok({"status": "ok"}),
    )

    async def main() -> list[Any]:
        async with async_client_for(server) as client:
            return [
                await client.storage.read("local", "a.bin", 0, 2),
                await client.quotas.get_status(),
                await client.quotas.transfer("team-1", "a", "b", idempotency_key="k-9"),
                await client.security.validate("ok"),
                await client.health(),
            ]

    data, quota, transfer, verdict, health = asyncio.run(main())
    assert data == payload
    assert quota.daily.agents_remaining == 88
    assert transfer == {"transferId": "tr-3"}
    assert verdict.allowed
    assert health == {"status": "ok"}
    assert server.requests[0].headers["Accept"] == "application/octet-stream"
    assert server.requests[1].url.path == "/v1/quotas/user/me"
    assert server.requests[2].headers["Idempotency-Key"] == "k-9"


def test_async_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_API_KEY", "env-key")
    monkeypatch.setenv("RLM_BASE_URL", "http://rlm.internal:9000/v1")
    server = Server(ok({"status": "ok"}))

    async def main() -> None:
        async with AsyncRLMClient(transport=server.transport) as client:
            await client.health()

    asyncio.run(main())
    assert str(server.last.url) == "http://rlm.internal:9000/v1/health"
    assert server.last.headers["Authorization"] == "Bearer env-key"


# ----------------------------------------------------------------------------------- package


def test_exports_are_exactly_what_we_mean() -> None:
    assert rlm_hypervisor.__all__ == sorted(rlm_hypervisor.__all__)
    assert set(rlm_hypervisor.__all__) == {
        "AsyncRLMClient",
        "ExecuteResult",
        "Forbidden",
        "InternalError",
        "InvalidInput",
        "ProgressEventData",
        "QuotaExceeded",
        "RLMClient",
        "RLMError",
        "RateLimited",
        "TaskEventMessage",
        "TaskNotFound",
        "TaskTimeout",
        "Trajectory",
        "EvaluationNotFound",
        "Unauthorized",
        "WebhookNotFound",
        "__version__",
        "webhooks",
    }
    # The SDK raises the server's classes, not look-alikes, and reads the server's models.
    assert rlm_hypervisor.RLMError is rlm.RLMError
    assert rlm_hypervisor.TaskEventMessage is rlm.models.TaskEventMessage
    assert rlm_hypervisor.__version__ == rlm.__version__


def test_every_module_has_a_sorted_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(rlm_hypervisor.__path__, "rlm_hypervisor."):
        module = importlib.import_module(info.name)
        assert module.__all__ == sorted(module.__all__), info.name


def test_importing_the_sdk_does_not_import_ray() -> None:
    code = (
        "import sys\n"
        "import rlm_hypervisor, rlm_hypervisor.client\n"
        "bad = [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\n"
        "assert not bad, bad[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_creates_are_not_retried_but_settings_are() -> None:
    # A repeated create after a lost answer would be refused ("exists") and hide the success;
    # a repeated PUT sets the same state again, so gateway errors are retried for it.
    clock = Clock()
    server = Server(httpx.Response(503, text="unavailable"), httpx.Response(503, text="again"))
    with client_for(server, clock) as client:
        with pytest.raises(RLMError):
            client.quotas.create_team(
                {"teamId": "t", "teamName": "T", "totalAgentPool": 1, "totalComputeHours": 1}
            )
        with pytest.raises(RLMError):
            client.quotas.create_org({"orgId": "o"})
    assert [r.url.path for r in server.requests] == ["/v1/quotas/team", "/v1/quotas/enterprise/org"]
    member = {"userId": "u", "role": "member", "agentsAllocated": None}
    server = Server(httpx.Response(502, text="bad gateway"), ok(member))
    with client_for(server, Clock()) as client:
        assert client.quotas.set_member("t", "u/x").user_id == "u"
    assert len(server.requests) == 2
    assert server.last.url.raw_path == b"/v1/quotas/team/t/members/u%2Fx"
    assert body_of(server.last) == {"role": "member"}


# ---------------------------------------------------------------------------------- webhooks

WEBHOOK = {
    "webhookId": "wh_1",
    "url": "https://hooks.example/in",
    "events": ["task.completed"],
    "scope": "user",
    "ownerId": "alice",
    "status": "active",
    "consecutiveFailures": 0,
    "createdAt": "2024-01-15T10:30:00Z",
    "updatedAt": "2024-01-15T10:30:00Z",
}
DELIVERY = {
    "deliveryId": "dlv_1",
    "webhookId": "wh_1",
    "eventId": "msg_1",
    "event": "task.completed",
    "status": "succeeded",
    "attempts": 1,
    "createdAt": "2024-01-15T10:30:00Z",
    "expiresAt": "2024-01-16T10:30:00Z",
    "attemptLog": [
        {"attempt": 1, "at": "2024-01-15T10:30:01Z", "statusCode": 200, "latencyMs": 3.5}
    ],
}


def test_every_webhook_route() -> None:
    server = Server(
        ok({**WEBHOOK, "secret": "whsec_abc"}, 201),
        ok({"webhooks": [WEBHOOK]}),
        ok(WEBHOOK),
        ok({**WEBHOOK, "status": "disabled", "description": None}),
        ok({"webhookId": "wh_1", "secret": "whsec_new", "previousSecretExpiresAt": None}),
        ok({**DELIVERY, "event": "webhook.test"}),
        ok({"deliveries": [DELIVERY]}),
        ok(DELIVERY),
        ok({**DELIVERY, "status": "pending"}, 202),
        httpx.Response(204),
    )
    with client_for(server) as client:
        created = client.webhooks.create(
            "https://hooks.example/in", ["task.completed"], description="CI"
        )
        listed = client.webhooks.list()
        got = client.webhooks.get("wh_1")
        changed = client.webhooks.update("wh_1", enabled=False, description=None)
        rotated = client.webhooks.rotate_secret("wh_1", grace_seconds=60)
        ping = client.webhooks.test("wh_1")
        deliveries = client.webhooks.deliveries("wh_1", status="succeeded", limit=5)
        one = client.webhooks.delivery("wh_1", "dlv_1")
        retried = client.webhooks.retry("wh_1", "dlv_1")
        assert client.webhooks.delete("wh_1") is None
    assert created.secret == "whsec_abc" and created.webhook_id == "wh_1"
    assert [w.webhook_id for w in listed] == ["wh_1"] and got.events == ["task.completed"]
    assert changed.status == "disabled" and rotated.secret == "whsec_new"
    assert ping.event == "webhook.test" and deliveries[0].attempt_log[0].status_code == 200
    assert one.event_id == "msg_1" and retried.status == "pending"
    sent = [(r.method, r.url.path, r.url.query.decode()) for r in server.requests]
    assert sent == [
        ("POST", "/v1/webhooks", ""),
        ("GET", "/v1/webhooks", ""),
        ("GET", "/v1/webhooks/wh_1", ""),
        ("PATCH", "/v1/webhooks/wh_1", ""),
        ("POST", "/v1/webhooks/wh_1/rotate-secret", ""),
        ("POST", "/v1/webhooks/wh_1/test", ""),
        ("GET", "/v1/webhooks/wh_1/deliveries", "limit=5&status=succeeded"),
        ("GET", "/v1/webhooks/wh_1/deliveries/dlv_1", ""),
        ("POST", "/v1/webhooks/wh_1/deliveries/dlv_1/retry", ""),
        ("DELETE", "/v1/webhooks/wh_1", ""),
    ]
    assert body_of(server.requests[0]) == {
        "url": "https://hooks.example/in",
        "events": ["task.completed"],
        "scope": "user",
        "description": "CI",
    }
    assert body_of(server.requests[3]) == {"enabled": False, "description": None}
    assert body_of(server.requests[4]) == {"graceSeconds": 60}


def test_webhook_requests_are_validated_before_sending() -> None:
    server = Server()
    with client_for(server) as client:
        with pytest.raises(InvalidInput) as raised:
            client.webhooks.create("https://hooks.example/in", ["task.started"])
        assert raised.value.details["field"] == "events[0]"
        with pytest.raises(InvalidInput):
            client.webhooks.rotate_secret("wh_1", grace_seconds=-1)
        with pytest.raises(InvalidInput):
            client.webhooks.update("wh_1", events=[])
    assert server.requests == []


def test_webhook_not_found_raises_its_class() -> None:
    server = Server(error(404, "WEBHOOK_NOT_FOUND", "no", {"webhookId": "wh_x"}))
    with client_for(server) as client, pytest.raises(rlm_hypervisor.WebhookNotFound) as raised:
        client.webhooks.get("wh_x")
    assert raised.value.details == {"webhookId": "wh_x"} and raised.value.status_code == 404


def test_webhook_calls_that_change_state_twice_are_not_retried() -> None:
    for call in (
        lambda c: c.webhooks.create("https://hooks.example/in"),
        lambda c: c.webhooks.rotate_secret("wh_1"),
        lambda c: c.webhooks.delete("wh_1"),
        lambda c: c.webhooks.test("wh_1"),
    ):
        server = Server(httpx.Response(503, text="unavailable"))
        with client_for(server, Clock()) as client, pytest.raises(RLMError):
            call(client)
        assert len(server.requests) == 1
    server = Server(httpx.Response(503, text="unavailable"), ok(WEBHOOK))
    with client_for(server, Clock()) as client:
        assert client.webhooks.update("wh_1", url="https://hooks.example/2").url
    assert len(server.requests) == 2  # a PATCH sets the same state again: retried


def test_async_webhooks() -> None:
    server = Server(
        ok({**WEBHOOK, "secret": "whsec_abc"}, 201),
        ok({"webhooks": []}),
        ok({"deliveries": [DELIVERY]}),
        ok({**DELIVERY, "status": "pending"}, 202),
        httpx.Response(204),
    )

    async def main() -> list[Any]:
        async with async_client_for(server) as client:
            return [
                await client.webhooks.create(
                    "https://hooks.example/in", ["quota.threshold_exceeded"], scope="org"
                ),
                await client.webhooks.list(),
                await client.webhooks.deliveries("wh_1"),
                await client.webhooks.retry("wh_1", "dlv_1"),
                await client.webhooks.delete("wh_1"),
            ]

    created, listed, deliveries, retried, deleted = asyncio.run(main())
    assert created.secret == "whsec_abc" and listed == [] and deleted is None
    assert deliveries[0].delivery_id == "dlv_1" and retried.status == "pending"
    assert body_of(server.requests[0])["scope"] == "org"
    assert server.requests[2].url.query == b"limit=50"


def test_verify_checks_what_the_service_signs() -> None:
    import time as _time

    from rlm.webhooks.signing import generate_secret, signed_headers
    from rlm_hypervisor.webhooks import WebhookVerificationError, verify

    old, new = generate_secret(), generate_secret()
    body = b'{"event":"task.completed","timestamp":"2024-01-15T10:30:00Z","data":{"taskId":"t"}}'
    headers = httpx.Headers(signed_headers("msg_1", int(_time.time()), body, [new, old]))
    assert verify(body, headers, old)["data"] == {"taskId": "t"}
    assert verify(body.decode(), dict(headers), new)["event"] == "task.completed"
    assert verify(body, headers, [generate_secret(), old])["event"] == "task.completed"
    for bad_body, bad_headers, secret in (
        (body + b" ", headers, new),
        (body, headers, generate_secret()),
        (body, {k: v for k, v in headers.items() if k != "webhook-signature"}, new),
        (body, {**dict(headers), "webhook-timestamp": str(int(_time.time()) - 3600)}, new),
    ):
        with pytest.raises(WebhookVerificationError):
            verify(bad_body, bad_headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify(body, headers, [])

"""``create_app`` builds and serves without Ray: the HTTP layer alone (auth, envelope, limits).

The engine here is an in-memory stand-in behind the app's one seam (``hv.ask``); the real
engine is exercised over HTTP in ``tests/api``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlm.auth.keys import load_signing_key
from rlm.auth.tokens import issue_token
from rlm.config import Settings
from rlm.errors import TaskNotFound
from rlm.ratelimit import RateLimiter
from serve_app import create_app
from serve_app.routes.health import EngineLoad


class _Engine:
    """Counts requests with the real rate limiter; knows no tasks."""

    def __init__(self) -> None:
        self.limiter = RateLimiter()
        self.calls: list[str] = []

    async def ask(self, method: str, *args: Any) -> tuple[Any, dict[str, str]]:
        self.calls.append(method)
        admission = args[-1]
        decision = self.limiter.check_and_consume(admission.key, admission.limits)
        decision.raise_if_rejected()
        if method == "status":
            raise TaskNotFound(args[0]).with_headers(decision.headers())
        return None, decision.headers()

    async def running_async(self) -> dict[str, int]:
        return {"tasks": 0, "inflight": 0, "queued": 0}


class _Client:
    """A synchronous face on httpx's in-process ASGI transport (no socket, no Ray)."""

    def __init__(self, app: Any) -> None:
        self._transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 5000))

    def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self._transport, base_url="http://t") as c:
                return await c.request(method, url, **kw)

        return asyncio.run(go())

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self._send("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self._send("POST", url, **kw)


@pytest.fixture
def app(tmp_path: Path) -> tuple[_Client, Settings, _Engine]:
    settings = Settings(state_dir=tmp_path)
    engine = _Engine()
    return _Client(create_app(settings, engine)), settings, engine


def _token(settings: Settings, scopes: str) -> str:
    key = load_signing_key(settings.auth, settings.state_dir, settings.env)
    return issue_token("alice", scopes.split(), "user", settings=settings.auth, key=key)


def test_errors_use_one_envelope_without_ray(app: tuple[_Client, Settings, _Engine]) -> None:
    client, settings, engine = app
    assert client.get("/v1/health").json()["status"] == "ok"
    unauthorized = client.get("/v1/tasks/t-1")
    assert unauthorized.status_code == 401
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(unauthorized.json()) == {"error", "requestId"}
    token = _token(settings, "rlm:execute")
    forbidden = client.get("/v1/tasks/t-1", headers={"Authorization": f"Bearer {token}"})
    assert forbidden.status_code == 403
    reader = _token(settings, "rlm:read")
    missing = client.get("/v1/tasks/t-1", headers={"Authorization": f"Bearer {reader}"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "TASK_NOT_FOUND"
    assert missing.headers["RateLimit"].startswith("limit=60")
    bad = client.post(
        "/v1/execute", json={"type": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["details"]["field"] == "type"
    assert engine.calls.count("status") == 1


def test_requests_without_a_token_cost_the_engine_nothing(
    app: tuple[_Client, Settings, _Engine],
) -> None:
    client, settings, engine = app
    codes = [client.get("/v1/tasks/t-1").status_code for _ in range(11)]
    assert codes == [401] * 11  # refused before the rate limiter: never 429
    reader = _token(settings, "rlm:read")
    no_scope = client.post("/v1/execute", json={}, headers={"Authorization": f"Bearer {reader}"})
    assert no_scope.status_code == 403
    assert engine.calls == []


def test_health_is_never_rate_limited(app: tuple[_Client, Settings, _Engine]) -> None:
    client, _, engine = app
    codes = {client.get("/v1/health").status_code for _ in range(100)}
    assert codes == {200}
    assert "admit" not in engine.calls  # not even counted
    # A bad token does not matter to a probe either: health reads none.
    probe = client.get("/v1/health", headers={"Authorization": "Bearer not-a-token"})
    assert probe.status_code == 200 and "RateLimit" not in probe.headers


def test_engine_load_is_asked_at_most_once_per_ttl() -> None:
    now = [100.0]
    load = EngineLoad(ttl_s=1.0, clock=lambda: now[0])
    asked: list[int] = []

    async def ask() -> dict[str, int]:
        asked.append(1)
        return {"tasks": len(asked)}

    async def probes() -> list[dict[str, int]]:
        first = await asyncio.gather(*(load.get(ask) for _ in range(50)))
        now[0] += 0.5
        fresh = await load.get(ask)
        now[0] += 0.6
        return [*first, fresh, await load.get(ask)]

    answers = asyncio.run(probes())
    assert len(asked) == 2
    assert answers[:51] == [{"tasks": 1}] * 51 and answers[51] == {"tasks": 2}


def test_every_answer_carries_its_request_id(app: tuple[_Client, Settings, _Engine]) -> None:
    client, _, _ = app
    ok = client.get("/v1/health")
    assert ok.headers["x-request-id"].startswith("req-")
    refused = client.get("/v1/tasks/t-1")  # no token: 401 in the envelope
    rid = refused.headers["x-request-id"]
    assert refused.json()["requestId"] == rid != ok.headers["x-request-id"]
    too_big = client.post("/v1/execute", content=b"x" * (64 * 2**20 + 1))
    assert too_big.status_code == 413
    assert too_big.json()["requestId"] == too_big.headers["x-request-id"]
    # A caller's own id (as Serve's proxy sends) is used, and not answered twice.
    given = client.get("/v1/tasks/t-1", headers={"X-Request-ID": "trace-42"})
    assert given.json()["requestId"] == "trace-42"
    assert "x-request-id" not in given.headers

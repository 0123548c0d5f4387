"""Every error code from a real request, in the one envelope; JWT negatives; tiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.api.conftest import Api

pytestmark = pytest.mark.integration

SUM = {
    "type": "recursive",
    "description": "sum",
    "input": {"items": [1, 2, 3], "operation": "sum"},
}


def _envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "requestId"}, body
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["requestId"]
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**SUM, "type": "diagonal"}, "type"),
        ({**SUM, "options": {"maxDepth": 99}}, "options.maxDepth"),
        ({**SUM, "options": {"leafSize": 0}}, "options.leafSize"),
        ({**SUM, "input": {"items": ["a"], "operation": "sum"}}, "input.items[0]"),
        ({**SUM, "input": {"items": [1], "operation": "no_such"}}, "input.operation"),
        ({"description": "no type", "input": {}}, "type"),
    ],
)
def test_invalid_input_names_the_field(
    user: Callable[..., httpx.Client], body: dict[str, Any], field: str
) -> None:
    with user() as client:
        envelope = _envelope(client.post("/execute", json=body), 400, "INVALID_INPUT")
        assert envelope["error"]["details"]["field"] == field


def test_malformed_json_is_400_not_422(user: Callable[..., httpx.Client]) -> None:
    with user() as client:
        response = client.post(
            "/execute",
            content=b'{"type": "recursive",\n {nope',
            headers={"Content-Type": "application/json"},
        )
        body = _envelope(response, 400, "INVALID_INPUT")
    # The message says where the JSON broke, as a person looking at the file counts.
    assert body["error"]["message"] == (
        "body: not valid JSON: Expecting property name enclosed in double quotes "
        "at line 2, column 2"
    )


def test_oversized_body_is_refused(api: Api) -> None:
    big = b"x" * (api.settings.server.max_body_bytes + 1)
    with api.client(api.token()) as client:
        response = client.post(
            "/execute", content=big, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "INVALID_INPUT"


def test_unknown_route_uses_the_envelope(api: Api) -> None:
    response = httpx.get(f"{api.base_url}/no/such/route")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "requestId"}


def test_unauthorized_without_or_with_a_bad_token(api: Api) -> None:
    response = httpx.post(f"{api.base_url}/execute", json=SUM)
    _envelope(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = httpx.post(
        f"{api.base_url}/execute", json=SUM, headers={"Authorization": "Bearer not.a.jwt"}
    )
    _envelope(bad, 401, "UNAUTHORIZED")
    assert "not.a.jwt" not in bad.text


def test_forbidden_without_the_scope(api: Api) -> None:
    with api.client(api.token(scopes="rlm:read")) as client:
        envelope = _envelope(client.post("/execute", json=SUM), 403, "FORBIDDEN")
        assert envelope["error"]["details"]["requiredScope"] == "rlm:execute"


def test_task_not_found(user: Callable[..., httpx.Client]) -> None:
    with user() as client:
        _envelope(client.get("/tasks/task-nope"), 404, "TASK_NOT_FOUND")
        _envelope(client.post("/tasks/task-nope/cancel"), 404, "TASK_NOT_FOUND")


def test_timeout_is_408_with_the_result(user: Callable[..., httpx.Client]) -> None:
    body = {
        "type": "parallel",
        "description": "slow",
        "input": {"items": [1, 2], "operation": "slow_sum", "params": {"seconds": 5}},
        "options": {"leafSize": 1, "timeoutMs": 300},
    }
    with user() as client:
        envelope = _envelope(client.post("/execute", json=body), 408, "TIMEOUT")
        details = envelope["error"]["details"]
        assert details["result"]["status"] == "failed"
        assert client.get(f"/tasks/{details['taskId']}").json()["status"] == "failed"


def test_operation_errors_and_crashes(user: Callable[..., httpx.Client]) -> None:
    with user() as client:
        explode = {**SUM, "input": {"items": [1, 2], "operation": "explode"}}
        _envelope(client.post("/execute", json=explode), 400, "INVALID_INPUT")
        crash = {**SUM, "input": {"items": [1, 2], "operation": "crash"}}
        envelope = _envelope(client.post("/execute", json=crash), 500, "INTERNAL_ERROR")
        assert "Traceback" not in json.dumps(envelope)


def test_requests_without_a_token_are_refused_and_never_counted(api: Api) -> None:
    # A loopback address of its own: anything counted would show in its anonymous allowance
    # (10 a minute).
    transport = httpx.HTTPTransport(local_address="127.0.0.77")
    with httpx.Client(transport=transport, base_url=api.base_url) as anon:
        codes = [anon.get("/tasks").status_code for _ in range(15)]
        codes += [anon.post("/execute", json={}).status_code for _ in range(5)]
        assert codes == [401] * 20  # never 429: refused before the rate limiter
        last = _envelope(anon.get("/tasks"), 401, "UNAUTHORIZED")
        assert last["error"]["details"]["requiredScope"] == "rlm:read"
    # A token holder is rate-limited as its tier says (an anonymous-tier token: 10 a minute).
    with api.client(api.token(tier="anonymous")) as slow:
        codes = [slow.get("/tasks").status_code for _ in range(10)]
        assert codes == [200] * 10
        eleventh = slow.get("/tasks")
        _envelope(eleventh, 429, "RATE_LIMITED")
        retry = int(eleventh.headers["Retry-After"])
        assert 1 <= retry <= 60
        assert "RateLimit-Policy" in eleventh.headers


def test_health_answers_a_probe_every_time(api: Api) -> None:
    # One address probing like a load balancer: far past the anonymous 10 a minute.
    transport = httpx.HTTPTransport(local_address="127.0.0.78")
    with httpx.Client(transport=transport, base_url=api.base_url) as probe:
        codes = [probe.get("/health").status_code for _ in range(100)]
        assert codes == [200] * 100
        last = probe.get("/health")
        assert last.status_code == 200 and last.json()["status"] == "ok"
        assert "RateLimit" not in last.headers
        # And health took nothing of the address's anonymous allowance.
        assert probe.get("/tasks").status_code == 401
    doc = httpx.get(api.base_url.removesuffix("/v1") + "/openapi.json").json()
    assert set(doc["paths"]["/v1/health"]["get"]["responses"]) == {"200", "500"}


def test_a_user_cannot_exceed_five_concurrent_agents(api: Api) -> None:
    slow = {
        "type": "parallel",
        "description": "hold an agent",
        "input": {"items": [1], "operation": "slow_sum", "params": {"seconds": 3}},
        "options": {"async": True, "priority": "low"},
    }
    with api.client(api.token(tier="user")) as client:
        ids = []
        for _ in range(5):
            response = client.post("/execute", json=slow)
            assert response.status_code == 202, response.text
            ids.append(response.json()["taskId"])
        sixth = client.post("/execute", json=slow)
        envelope = _envelope(sixth, 429, "RATE_LIMITED")
        assert envelope["error"]["details"]["limit"] == 5
        for task_id in ids:
            assert client.post(f"/tasks/{task_id}/cancel").status_code == 200
        # Cancelled tasks gave their agents back.
        again = client.post("/execute", json=slow)
        assert again.status_code == 202
        client.post(f"/tasks/{again.json()['taskId']}/cancel")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(api: Api, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "mallory",
        "scope": "rlm:execute rlm:read",
        "tier": "user",
        "iss": api.settings.auth.issuer,
        "aud": api.settings.auth.audience,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _secret(api: Api) -> bytes:
    return (api.settings.state_dir / "jwt-secret").read_bytes().strip()


def test_jwt_negatives(api: Api) -> None:
    secret = _secret(api)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    good = jwt.encode(_claims(api), secret, algorithm="HS256")
    header, payload, signature = good.split(".")
    tampered_payload = _b64(json.dumps(_claims(api, sub="admin", tier="enterprise")).encode())
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    confusion = f"{hs_header}.{_b64(json.dumps(_claims(api)).encode())}"
    confusion_sig = _b64(hmac.new(rsa_public_pem, confusion.encode(), hashlib.sha256).digest())
    tokens = {
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}.",
        "RS256 signed by a stranger": jwt.encode(_claims(api), rsa_key, algorithm="RS256"),
        "HS256 keyed with an RSA public key": f"{confusion}.{confusion_sig}",
        "expired": jwt.encode(_claims(api, exp=int(time.time()) - 3600), secret, algorithm="HS256"),
        "wrong audience": jwt.encode(_claims(api, aud="someone-else"), secret, algorithm="HS256"),
        "wrong issuer": jwt.encode(_claims(api, iss="evil"), secret, algorithm="HS256"),
        "no exp": jwt.encode(_claims(api, exp=None), secret, algorithm="HS256"),
        "tampered payload": f"{header}.{tampered_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "wrong secret": jwt.encode(_claims(api), b"x" * 32, algorithm="HS256"),
    }
    assert (
        httpx.post(
            f"{api.base_url}/execute", json=SUM, headers={"Authorization": f"Bearer {good}"}
        ).status_code
        == 200
    )
    for name, token in tokens.items():
        response = httpx.post(
            f"{api.base_url}/execute", json=SUM, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "UNAUTHORIZED", name

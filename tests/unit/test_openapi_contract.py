"""The OpenAPI document says what the server accepts (without Ray): no null input, integral
floats for integers, the connectors named, no 429 on health, the execute body described."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from rlm.config import Settings
from rlm.errors import InvalidInput
from rlm.inputs import prepare_input
from rlm.models.base import parse_model
from rlm.models.tasks import ExecuteRequest
from rlm.operations.registry import default_registry
from serve_app import create_app


class _Engine:
    async def ask(self, method: str, *args: Any) -> tuple[Any, dict[str, str]]:
        return None, {}

    async def running_async(self) -> dict[str, int]:
        return {"tasks": 0, "inflight": 0, "queued": 0}


@pytest.fixture
def doc(tmp_path: Path) -> dict[str, Any]:
    app = create_app(Settings(state_dir=tmp_path), _Engine())
    document: dict[str, Any] = app.openapi()
    return document


def _validator(doc: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    )


def _accepts(doc: dict[str, Any], name: str, body: Any) -> bool:
    return _validator(doc, name).is_valid(body)


GOOD = {
    "type": "recursive",
    "description": "Sum",
    "input": {"items": [1, 2, 3], "operation": "sum"},
}


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        (GOOD, True),
        ({**GOOD, "input": None}, False),
        ({**GOOD, "input": 5}, False),
        ({**GOOD, "input": {"items": [1], "operation": "no_such_op"}}, False),
        ({**GOOD, "input": {"items": ["a"], "operation": "sum"}}, False),
        ({**GOOD, "input": {"items": [1], "text": "x", "operation": "line_count"}}, False),
        ({**GOOD, "input": {"text": "a\nb", "operation": "line_count"}}, True),
        ({**GOOD, "input": {"items": [], "operation": "mean"}}, False),
        ({**GOOD, "input": {"items": [3, 1], "operation": "top_k"}}, False),  # k is required
        ({**GOOD, "input": {"items": [3, 1], "operation": "top_k", "params": {"k": 1.0}}}, True),
        ({**GOOD, "options": {"maxDepth": 22.0}}, True),
        ({**GOOD, "options": {"maxDepth": 22.5}}, False),
        ({**GOOD, "options": {"maxDepth": "22"}}, False),
    ],
)
def test_the_execute_body_is_what_the_server_accepts(
    doc: dict[str, Any], body: dict[str, Any], valid: bool
) -> None:
    assert _accepts(doc, "ExecuteRequest", body) is valid
    if not valid:
        return
    request = parse_model(ExecuteRequest, body)
    prepare_input(request.input, default_registry(), wire=True)  # accepted all the way


def test_the_server_refuses_a_null_input() -> None:
    with pytest.raises(InvalidInput):
        prepare_input(None, default_registry())


def test_connectors_are_named_and_health_promises_no_429(doc: dict[str, Any]) -> None:
    read = doc["components"]["schemas"]["StorageReadRequest"]["properties"]["connector"]
    assert read["enum"] == ["local"]
    assert set(doc["paths"]["/v1/health"]["get"]["responses"]) == {"200", "500"}
    execute = doc["paths"]["/v1/execute"]["post"]
    assert execute["requestBody"]["required"] is True
    assert execute["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ExecuteRequest"
    }
    for path in ("/v1/quotas/team", "/v1/quotas/enterprise/org"):
        assert "409" in doc["paths"][path]["post"]["responses"]


def test_an_unsupported_method_says_what_is_allowed(tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path), _Engine())

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.delete("/v1/execute")

    answer = asyncio.run(go())
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"

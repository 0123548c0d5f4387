"""Interactive docs that work offline, and an OpenAPI document that tells the truth."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.integration


def _root(api: Api) -> str:
    return api.base_url.removesuffix("/v1")


@pytest.mark.parametrize(
    ("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_docs_pages_load_every_asset_from_this_server(api: Api, page: str, script: str) -> None:
    root = _root(api)
    html = httpx.get(root + page, timeout=10)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    urls += re.findall(r"""url: ?["']([^"']+)["']""", html.text)
    assert urls, html.text
    # Nothing is fetched from another host: every asset is a path on this server.
    assert all(u.startswith("/") for u in urls), urls
    assert any(u.endswith(script) for u in urls), urls
    for url in urls:
        asset = httpx.get(root + url, timeout=10)
        assert asset.status_code == 200, url
    js = httpx.get(root + f"/docs-static/{script}", timeout=10)
    assert len(js.content) > 100_000  # the real bundle, not a placeholder


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def test_openapi_declares_the_bearer_scheme_and_the_statuses_really_answered(api: Api) -> None:
    doc = httpx.get(api.base_url.removesuffix("/v1") + "/openapi.json", timeout=10).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"error", "requestId"}
    for method, path, op in _operations(doc):
        assert "422" not in op["responses"], (method, path)
        if path != "/v1/health":
            assert op.get("security") == [{"bearerAuth": []}], (method, path)
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
    execute = doc["paths"]["/v1/execute"]["post"]["responses"]["400"]
    assert execute["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorEnvelope"
    }


def test_an_invalid_body_answers_the_documented_400_not_422(
    api: Api, user: Callable[..., httpx.Client]
) -> None:
    with user() as client:
        r = client.post("/execute", json={"type": "recursive"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_INPUT"

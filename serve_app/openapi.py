"""The OpenAPI document as the server really answers: 400 (not 422), the error envelope, bearer.

FastAPI documents a ``422`` with its own validation-error shape for every route with a body or
parameters; this service answers ``400 INVALID_INPUT`` in the one error envelope instead
(``serve_app.context``). The document is rewritten once, when first asked for, so the
interactive docs and generated clients see the real statuses.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from rlm.models.errors import ErrorEnvelope
from rlm.operations.registry import OperationRegistry, default_registry
from rlm.operations.schema import SchemaContext, input_schema

__all__ = [
    "BEARER_SCHEME",
    "ROUTE_ERRORS",
    "UNTHROTTLED",
    "error_responses",
    "install_openapi",
    "json_body",
]

#: The name of the bearer-token security scheme in the document.
BEARER_SCHEME = "bearerAuth"

#: Marks an operation of the OpenAPI document that is never rate-limited (no 429 answer).
UNTHROTTLED = "x-rlm-unthrottled"

#: The error statuses a route with a token and input answers (its own extra ones go after).
ROUTE_ERRORS = (400, 401, 403, 429, 500)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: each of ``codes``, in order, answered in the error envelope."""
    return {code: {"model": ErrorEnvelope} for code in codes}


#: Marks an operation that reads its JSON body itself (after admission): the body's model.
_JSON_BODY = "x-rlm-json-body"
_BODIES: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads and validates its body itself: the document
    still describes the body as ``model`` (required, ``application/json``)."""
    _BODIES[model.__name__] = model
    return {_JSON_BODY: model.__name__}


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}

#: The error statuses any route may answer, beside its own success status.
_COMMON = {
    "429": "Rate limited (`RATE_LIMITED`); `Retry-After` says when to retry.",
    "500": "Internal error (`INTERNAL_ERROR`); quote the `requestId`.",
}
_AUTHENTICATED = {
    "401": "Missing, invalid or expired bearer token (`UNAUTHORIZED`).",
    "403": "The token lacks the route's scope (`FORBIDDEN`).",
}
_INVALID = {"400": "Invalid input (`INVALID_INPUT`), with the offending field in `details`."}
_WITH_BODY = {"413": "The request body is larger than the server accepts (`PAYLOAD_TOO_LARGE`)."}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ENVELOPE_REF}}}


def _not_null(parameter: dict[str, Any]) -> None:
    """A query, header or path parameter is a string on the wire: it can be omitted (its
    default applies), never ``null``. pydantic documents ``int | None`` as ``anyOf`` with
    ``null``; keep only what can be sent."""
    schema = parameter.get("schema", {})
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return
    kept = [o for o in options if o.get("type") != "null"]
    if len(kept) == len(options):
        return
    if len(kept) == 1:
        del schema["anyOf"]
        schema.update(kept[0])
    else:
        schema["anyOf"] = kept


def _rewrite(doc: dict[str, Any]) -> dict[str, Any]:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    _add_model(schemas, ErrorEnvelope)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            body_model = operation.pop(_JSON_BODY, None)
            if body_model is not None:
                ref = _add_model(schemas, _BODIES[body_model])
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref}},
                }
            for parameter in operation.get("parameters", []):
                if not parameter.get("required"):
                    _not_null(parameter)
            responses = operation.setdefault("responses", {})
            validated = responses.pop("422", None) is not None
            statuses = dict(_COMMON)
            if operation.pop(UNTHROTTLED, False):
                del statuses["429"]  # never rate-limited: the document must not promise a 429
            if validated or operation.get("parameters") or "requestBody" in operation:
                statuses |= _INVALID
            if operation.get("security"):
                statuses |= _AUTHENTICATED
            if "requestBody" in operation:
                statuses |= _WITH_BODY
            for status, description in statuses.items():
                responses.setdefault(status, _error(description))
    return doc


def _schema_context(app: FastAPI) -> SchemaContext:
    """The connectors and LM providers this server offers (the first provider: the default)."""
    storage = getattr(app.state, "storage", None)
    connectors = storage.connector_names if storage is not None else []
    settings = getattr(app.state, "settings", None)
    providers = settings.lm.providers() if settings is not None else {}
    order = sorted(providers, key=lambda name: (name != "default", list(providers).index(name)))
    lm_models = {name: providers[name].public()["models"] for name in order}
    return SchemaContext(connectors=connectors, lm_models=lm_models)


def _describe_input(app: FastAPI, doc: dict[str, Any]) -> None:
    """``ExecuteRequest.input``: exactly the operations (and their params and items) this
    server offers, instead of pydantic's "anything"."""
    schema = doc.get("components", {}).get("schemas", {}).get("ExecuteRequest")
    if schema is None:
        return
    hv = getattr(app.state, "hv", None)
    registry = getattr(hv, "registry", None)
    if not isinstance(registry, OperationRegistry):
        registry = default_registry()
    schema["properties"]["input"] = input_schema(registry, _schema_context(app))
    # model, subModel and maxIterations are RLM options: any other task refuses them.
    rlm_only = [{"required": [name]} for name in ("model", "subModel", "maxIterations")]
    schema["allOf"] = [
        {
            "if": {
                "properties": {"input": {"properties": {"operation": {"const": "rlm"}}}},
                "required": ["input"],
            },
            "else": {"properties": {"options": {"not": {"anyOf": rlm_only}}}},
        }
    ]


def _enumerate_connectors(doc: dict[str, Any], names: list[str]) -> None:
    """Name the configured connectors in every ``connector`` field: the server refuses
    any other, so the document must not promise it."""
    for schema in doc.get("components", {}).get("schemas", {}).values():
        connector = schema.get("properties", {}).get("connector")
        if isinstance(connector, dict) and names:
            connector["enum"] = list(names)


def _scheme_pattern(schemes: list[str]) -> str:
    """An ECMA-262 pattern (no inline flags) for URLs of ``schemes``, any letter case."""
    cased = ["".join(f"[{c.lower()}{c.upper()}]" for c in scheme) for scheme in schemes]
    return "^(" + "|".join(cased) + ")://[^/?#@\\s]+"


def _describe_webhook_urls(app: FastAPI, doc: dict[str, Any]) -> None:
    """``url`` of a webhook: the schemes this server accepts (``http`` only where an operator
    allows it). Whether its host resolves, and to an address webhooks may call, is checked
    when it is registered and at every delivery: no schema can say that."""
    settings = getattr(app.state, "settings", None)
    allow_http = bool(settings is not None and settings.webhooks.allow_http)
    schemes = ["https", "http"] if allow_http else ["https"]
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("WebhookCreate", "WebhookUpdate"):
        url = schemas.get(name, {}).get("properties", {}).get("url")
        if not isinstance(url, dict):
            continue
        target = next((o for o in url.get("anyOf", []) if o.get("type") == "string"), url)
        target["format"] = "rlm-webhook-url"
        target["pattern"] = _scheme_pattern(schemes)


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` answer the rewritten document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            doc = _rewrite(doc)
            _describe_input(app, doc)
            _describe_webhook_urls(app, doc)
            storage = getattr(app.state, "storage", None)
            if storage is not None:
                _enumerate_connectors(doc, storage.connector_names)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override

"""Wire models: camelCase on the wire, strict validation, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from rlm.errors import InvalidInput
from rlm.models import (
    CancelResponse,
    ExecuteRequest,
    ExecuteResponse,
    OrgQuotaUpdate,
    QuotaConfig,
    StorageReadRequest,
    parse_model,
)

DOC_EXAMPLE = {
    "type": "recursive",
    "description": "Sum large dataset",
    "input": {"items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "operation": "sum"},
    "options": {"timeoutMs": 30000, "priority": "normal"},
}


def test_document_example_parses_and_round_trips() -> None:
    req = parse_model(ExecuteRequest, DOC_EXAMPLE)
    assert req.options.timeout_ms == 30000
    assert req.complexity == "linear"
    wire = req.to_wire()
    assert wire["options"] == {"timeoutMs": 30000, "priority": "normal", "async": False}
    assert parse_model(ExecuteRequest, wire) == req


def test_response_is_camel_case() -> None:
    resp = ExecuteResponse(
        task_id="t",
        status="completed",
        output=55,
        execution_time_ms=1.0,
        agent_calls=1,
        decomposition_depth=0,
        success=True,
    )
    assert set(resp.to_wire()) == {
        "taskId",
        "status",
        "output",
        "executionTimeMs",
        "agentCalls",
        "decompositionDepth",
        "success",
    }


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"type": "diagonal"}, "type"),
        ({"complexity": "cubic"}, "complexity"),
        ({"options": {"maxDepth": 33}}, "options.maxDepth"),
        ({"options": {"maxDepth": -1}}, "options.maxDepth"),
        ({"options": {"timeoutMs": 0}}, "options.timeoutMs"),
        ({"options": {"priority": "urgent"}}, "options.priority"),
        ({"options": {"fanout": 1}}, "options.fanout"),
        ({"options": {"leafSize": 0}}, "options.leafSize"),
        ({"options": {"maxDepth": "8"}}, "options.maxDepth"),
        ({"options": {"bogus": 1}}, "options.bogus"),
        ({"extra": 1}, "extra"),
        ({"description": 5}, "description"),
    ],
)
def test_bad_fields_are_named(patch: dict[str, Any], field: str) -> None:
    body = {**DOC_EXAMPLE, **patch}
    with pytest.raises(InvalidInput) as info:
        parse_model(ExecuteRequest, body)
    assert info.value.details["field"] == field
    assert info.value.code == "INVALID_INPUT"


def test_missing_required_field() -> None:
    body = dict(DOC_EXAMPLE)
    del body["type"]
    with pytest.raises(InvalidInput) as info:
        parse_model(ExecuteRequest, body)
    assert info.value.details["field"] == "type"


def test_json_text_is_accepted_and_bad_json_refused() -> None:
    import json

    assert parse_model(ExecuteRequest, json.dumps(DOC_EXAMPLE)).type == "recursive"
    with pytest.raises(InvalidInput):
        parse_model(ExecuteRequest, "{not json")


def test_other_shapes_use_the_document_names() -> None:
    cfg = QuotaConfig(
        user_id="u",
        daily_agent_limit=1,
        weekly_agent_limit=2,
        monthly_agent_limit=3,
        daily_compute_hours=1.5,
        max_concurrent_agents=5,
        max_storage_gb=10,
    )
    assert {"dailyAgentLimit", "maxStorageGB"} <= set(cfg.to_wire())
    assert parse_model(OrgQuotaUpdate, {"storageGB": 5}).storage_gb == 5
    assert CancelResponse(task_id="t", status="not_found", message="m").to_wire()["taskId"] == "t"
    with pytest.raises(InvalidInput) as info:
        parse_model(StorageReadRequest, {"connector": "local", "key": "k", "start": -1, "end": 1})
    assert info.value.details["field"] == "start"

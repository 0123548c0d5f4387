"""schemathesis against /openapi.json with a valid token: no 5xx, answers match the schema.

schemathesis' pytest plugin does not run on pytest 9 yet, so the operations are driven with its
hypothesis strategies directly.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import Api

pytestmark = pytest.mark.integration


def test_no_server_errors_and_answers_match_the_schema(api: Api, fuzz_root: str) -> None:
    root = fuzz_root
    schema = schemathesis.openapi.from_url(f"{root}/openapi.json")
    # An admin token of an org that exists: every route is reachable, so the fuzzer reaches
    # handlers, not just 403s.
    token = api.token(sub="fuzzer", scopes="rlm:admin", tier="enterprise", org="fuzz-org")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{root}/v1", headers=headers, timeout=60) as admin:
        made = admin.post(
            "/quotas/enterprise/org",
            json={"orgId": "fuzz-org", "agents": 10**6, "computeHours": 10**3},
        )
        assert made.status_code in (201, 409), made.text  # 409: made by an earlier test
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: list[int] = []
    assert len(operations) >= 6
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=int(os.environ.get("RLM_FUZZ_EXAMPLES", "20")),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=os.environ.get("RLM_FUZZ_EXAMPLES") is None,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=root, headers=headers, checks=checks)
            statuses.append(response.status_code)

        check()
    # The fuzzer reached the handlers: successes and refusals both came back.
    assert len(statuses) >= 40
    assert any(s < 300 for s in statuses) and any(s == 400 for s in statuses)

"""schemathesis against /openapi.json with a valid token: no 5xx, answers match the schema.

schemathesis' pytest plugin does not run on pytest 9 yet, so the operations are driven with its
hypothesis strategies directly.
"""

from __future__ import annotations

import itertools
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
    # Admin tokens of an org that exists: every route is reachable, so the fuzzer reaches
    # handlers, not just 403s; several users, each with its own rate limits, so a thousand
    # requests are not answered 429. The security policies are changed by another org's
    # admin: set to anything the document allows, they would refuse fuzz-org's tasks.
    tokens = itertools.cycle(
        api.token(sub=f"schema-fuzzer-{i}", scopes="rlm:admin", tier="enterprise", org="fuzz-org")
        for i in range(8)
    )
    policy_token = api.token(
        sub="schema-fuzzer-policies", scopes="rlm:admin", tier="enterprise", org="fuzz-policy"
    )
    token = next(tokens)
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
            policy = case.operation.path.startswith("/v1/security/policies/")
            bearer = policy_token if policy else next(tokens)
            response = case.call_and_validate(
                base_url=root, headers={"Authorization": f"Bearer {bearer}"}, checks=checks
            )
            statuses.append(response.status_code)

        check()
    # The fuzzer reached the handlers: successes and the handlers' own refusals (not the
    # token checks' or the rate limiter's) both came back, and rate limits hid little.
    assert len(statuses) >= 40
    assert any(s < 300 for s in statuses)
    assert any(400 <= s < 500 and s not in (401, 403, 429) for s in statuses)
    assert statuses.count(429) < len(statuses) // 10, statuses

"""The service answers what its OpenAPI document says, and the document says what the service
accepts: schemathesis' own CLI, against the live service, with the checks
``positive_data_acceptance``, ``negative_data_rejection``, ``status_code_conformance``,
``ignored_auth`` and ``unsupported_method`` (examples, coverage, fuzzing and stateful phases;
deterministic and bounded, so the run is the same every time and takes about a minute).

The fuzzed app is ``fuzz_root`` (see ``conftest.py``): the built-in operations only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.integration

CHECKS = (
    "positive_data_acceptance",
    "negative_data_rejection",
    "status_code_conformance",
    "ignored_auth",
    "unsupported_method",
)
HOOKS = Path(__file__).with_name("fuzz_hooks.py")

#: ``POST /execute`` runs the task it accepted; one that runs past its ``timeoutMs`` answers
#: 408 ``TIMEOUT`` (the API document's code for it): the outcome of an accepted request, not a
#: refusal of its data. Every other status is schemathesis' own default.
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "408", "409", "429", "5xx"]
"""


def test_the_live_service_and_its_document_agree(api: Api, fuzz_root: str, tmp_path: Path) -> None:
    # Enterprise admins of an org that exists: every route is reachable, so the fuzzer reaches
    # handlers, not only refusals. Several of them, each with its own rate limits.
    tokens = [
        api.token(sub=f"fuzzer-{i}", scopes="rlm:admin", tier="enterprise", org="fuzz-org")
        for i in range(24)
    ]
    policy_tokens = [
        api.token(sub=f"fuzz-policy-{i}", scopes="rlm:admin", tier="enterprise", org="fuzz-policy")
        for i in range(4)
    ]
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    with httpx.Client(base_url=f"{fuzz_root}/v1", headers=auth) as client:
        made = client.post("/quotas/enterprise/org", json={"orgId": "fuzz-org", "agents": 10**9})
        assert made.status_code in (201, 409), made.text
    examples = os.environ.get("RLM_FUZZ_EXAMPLES", "10")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{fuzz_root}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        examples,
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "120",
        "--suppress-health-check",
        "all",
        "--continue-on-failure",
        "--no-color",
    ]
    run = subprocess.run(
        command,
        cwd=tmp_path,  # schemathesis keeps its own files there
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "RLM_FUZZ_TOKENS": ",".join(tokens),
            "RLM_FUZZ_POLICY_TOKENS": ",".join(policy_tokens),
        },
        capture_output=True,
        text=True,
        timeout=1500,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-20_000:]
    # It reached the handlers: cases were run for every operation, and none of them was
    # mostly answered 429 (the warning schemathesis gives when rate limits hid the logic).
    assert "Tested: 58" in report, report[-3000:]
    assert "Rate limited" not in report, report[-6000:]

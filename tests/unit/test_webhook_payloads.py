"""Payloads as the API document shows them, stable event ids, and signatures that
``standardwebhooks`` verifies (rotation included)."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from rlm.models import ExecuteResponse, WebhookEvent
from rlm.models.tasks import ErrorInfo
from rlm.quotas.alerts import alert_event
from rlm.tasks.record import TaskRecord
from rlm.webhooks.payloads import (
    encode,
    event_id,
    ping_payload,
    quota_alert_id,
    task_completed,
)
from rlm.webhooks.signing import (
    SECRET_PREFIX,
    SigningSecret,
    active_secrets,
    generate_secret,
    signed_headers,
)

ENDED = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)


def _record(status: str, output: object = 55, error: ErrorInfo | None = None) -> TaskRecord:
    result = ExecuteResponse(
        task_id="task-123",
        status=status,  # type: ignore[arg-type]
        output=output if status == "completed" else None,
        execution_time_ms=12.5,
        agent_calls=3,
        decomposition_depth=1,
        success=status == "completed",
        error=error,
    )
    return TaskRecord(
        task_id="task-123",
        status=status,  # type: ignore[arg-type]
        created_at=ENDED,
        type="recursive",
        description="d",
        priority="normal",
        owner_id="alice",
        completed_at=ENDED,
        result=result,
    )


def test_task_completed_is_the_documents_payload() -> None:
    msg_id, body = task_completed(_record("completed"), max_result_bytes=1 << 20)
    payload = WebhookEvent.model_validate_json(body, strict=False).to_wire()
    assert payload == {
        "event": "task.completed",
        "timestamp": "2024-01-15T10:30:00Z",
        "data": {
            "taskId": "task-123",
            "status": "completed",
            "result": {
                "taskId": "task-123",
                "status": "completed",
                "output": 55,
                "executionTimeMs": 12.5,
                "agentCalls": 3,
                "decompositionDepth": 1,
                "success": True,
            },
        },
    }
    assert msg_id == event_id("task.completed", "task-123")
    assert msg_id.startswith("msg_") and len(msg_id) == 36
    assert task_completed(_record("completed"), max_result_bytes=1 << 20)[0] == msg_id


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_every_terminal_status_has_its_event(status: str) -> None:
    error = (
        ErrorInfo(code="TIMEOUT", message="ran past its timeout") if status == "failed" else None
    )
    _, body = task_completed(_record(status, error=error), max_result_bytes=1 << 20)
    data = json.loads(body)["data"]
    assert data["status"] == status
    assert data["result"]["status"] == status and data["result"]["output"] is None
    assert data["result"]["success"] is False
    if error is not None:
        assert data["result"]["error"]["code"] == "TIMEOUT"


def test_a_task_that_has_not_ended_has_no_event() -> None:
    running = _record("completed").evolve(status="running")
    with pytest.raises(ValueError, match="has not ended"):
        task_completed(running, max_result_bytes=1024)


def test_a_large_output_is_left_out_and_said_so() -> None:
    _, body = task_completed(_record("completed", output=list(range(5000))), max_result_bytes=2048)
    data = json.loads(body)["data"]
    assert data["outputOmitted"] is True and data["result"]["output"] is None
    assert data["result"]["agentCalls"] == 3
    assert len(body) < 2048


def test_quota_alert_ids_depend_on_key_and_content() -> None:
    from rlm.models.quotas import QuotaPeriod, UserQuotaStatus

    period = QuotaPeriod(
        agents_used=8,
        agents_limit=10,
        agents_remaining=2,
        compute_hours_used=0.0,
        compute_hours_limit=1.0,
        reset_time=ENDED,
        exceeded=False,
    )
    usage = UserQuotaStatus(
        user_id="alice",
        daily=period,
        weekly=period,
        monthly=period,
        current_concurrent_agents=0,
        max_concurrent_agents=5,
    )
    alert = alert_event("alice", 80, "daily", usage, ENDED)
    assert quota_alert_id("0000000000000001", alert) == quota_alert_id("0000000000000001", alert)
    assert quota_alert_id("0000000000000001", alert) != quota_alert_id("0000000000000002", alert)
    other = alert_event("alice", 100, "daily", usage, ENDED)
    assert quota_alert_id("0000000000000001", alert) != quota_alert_id("0000000000000001", other)
    parsed = WebhookEvent.model_validate_json(encode(alert), strict=False)
    assert parsed.event == "quota.threshold_exceeded"


def test_the_ping_payload() -> None:
    ping = WebhookEvent.model_validate(ping_payload("wh_1", ENDED), strict=False)
    assert ping.event == "webhook.test" and ping.data.webhook_id == "wh_1"  # type: ignore[union-attr]


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = generate_secret()
    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.b64decode(secret[len(SECRET_PREFIX) :])) == 32
    assert generate_secret() != secret


def test_signatures_verify_with_standardwebhooks() -> None:
    secret = generate_secret()
    body = b'{"event":"task.completed","timestamp":"2024-01-15T10:30:00Z","data":{}}'
    now = int(time.time())
    headers = signed_headers("msg_abc", now, body, [secret])
    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-timestamp"] == str(now)
    assert Webhook(secret).verify(body, headers) == {
        "event": "task.completed",
        "timestamp": "2024-01-15T10:30:00Z",
        "data": {},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)  # one byte changed
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)  # another secret
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": "msg_other"})


def test_during_a_rotation_both_secrets_sign() -> None:
    old, new = generate_secret(), generate_secret()
    secrets = [SigningSecret(new), SigningSecret(old, expires_at=1000.0)]
    assert active_secrets(secrets, 999.0) == [new, old]
    assert active_secrets(secrets, 1000.0) == [new]
    body = b"{}"
    now = int(time.time())
    headers = signed_headers("msg_1", now, body, active_secrets(secrets, 999.0))
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    after = signed_headers("msg_1", now, body, active_secrets(secrets, 1001.0))
    Webhook(new).verify(body, after)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, after)
    with pytest.raises(ValueError, match="at least one"):
        signed_headers("msg_1", now, body, [])

"""What a webhook receives: the API document's payloads, their ids and their exact bytes.

Every payload is ``{"event", "timestamp", "data"}``:

- ``task.completed`` — sent for every terminal state: ``data`` = ``{taskId, status, result}``
  with ``status`` ``completed``, ``failed`` (a timeout is ``failed`` with ``result.error.code``
  ``TIMEOUT``) or ``cancelled``, and ``result`` the task's ``ExecuteResponse`` (the document's
  ``OOLONGResult`` fields and the extensions ``status``, ``error``, ``score``, ``usage``). A
  result whose JSON is larger than ``max_result_bytes`` is sent without ``output``, and
  ``data.outputOmitted`` is ``true`` (read it with ``GET /v1/tasks/{taskId}``).
- ``quota.threshold_exceeded`` — ``data`` = ``{userId, threshold, period, usage}`` as the quota
  ledger wrote it (:func:`rlm.quotas.alerts.alert_event`); for a team's pool ``{teamId, orgId?,
  threshold, period: "monthly", usage}`` and an org's caps ``{orgId, ...}`` (extensions).
- ``webhook.test`` (extension) — the ping ``POST /v1/webhooks/{webhookId}/test`` sends:
  ``data`` = ``{webhookId, message}``.

An event's id (the ``webhook-id`` header) is derived from what it announces, so writing the same
event twice (a retried transfer from the quota ledger, a record written again) yields one id
and one delivery per webhook.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import orjson

from rlm.quotas.alerts import THRESHOLD_EVENT
from rlm.quotas.windows import iso_z
from rlm.tasks.record import TaskRecord

__all__ = [
    "EVENT_TYPES",
    "QUOTA_THRESHOLD",
    "TASK_COMPLETED",
    "TEST_EVENT",
    "encode",
    "event_id",
    "ping_payload",
    "quota_alert_id",
    "task_completed",
]

TASK_COMPLETED = "task.completed"
QUOTA_THRESHOLD = THRESHOLD_EVENT
TEST_EVENT = "webhook.test"

#: The events a webhook may subscribe to.
EVENT_TYPES: tuple[str, ...] = (TASK_COMPLETED, QUOTA_THRESHOLD)


def event_id(kind: str, key: str) -> str:
    """A stable event id (``msg_`` + 32 hex digits) for the ``kind`` event about ``key``."""
    digest = hashlib.sha256(f"{kind}\x00{key}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def encode(payload: dict[str, Any]) -> bytes:
    """The payload's bytes as sent (and signed): compact JSON."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        # orjson refuses integers beyond 64 bits (exact sums and products can be larger).
        return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def task_completed(record: TaskRecord, max_result_bytes: int) -> tuple[str, bytes]:
    """The ``task.completed`` event of an ended task: its id and its body.

    Args:
        record: The task's record; it must have ended (a result and ``completed_at``).
        max_result_bytes: Larger results are sent without their ``output``.

    Raises:
        ValueError: The task has not ended.
    """
    if record.result is None or record.completed_at is None or not record.terminal:
        raise ValueError(f"task {record.task_id} has not ended")
    result = record.result.to_wire()
    result.setdefault("output", None)  # the document's OOLONGResult always has one
    payload: dict[str, Any] = {
        "event": TASK_COMPLETED,
        "timestamp": iso_z(record.completed_at),
        "data": {"taskId": record.task_id, "status": record.status, "result": result},
    }
    body = encode(payload)
    if len(body) > max_result_bytes:
        result["output"] = None
        payload["data"]["outputOmitted"] = True
        body = encode(payload)
    return event_id(TASK_COMPLETED, record.task_id), body


def quota_alert_id(ledger_key: str, payload: dict[str, Any]) -> str:
    """The id of a threshold event the quota ledger queued under ``ledger_key``.

    The payload is part of the key: a ledger rebuilt from scratch numbers its events from 0
    again, and a new event must not be taken for an old one.
    """
    return event_id(QUOTA_THRESHOLD, ledger_key + "\x00" + encode(payload).decode())


def ping_payload(webhook_id: str, at: datetime) -> dict[str, Any]:
    """The ``webhook.test`` payload."""
    return {
        "event": TEST_EVENT,
        "timestamp": iso_z(at),
        "data": {
            "webhookId": webhook_id,
            "message": "a test event from RLM Hypervisor: this endpoint receives webhooks",
        },
    }

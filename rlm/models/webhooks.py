"""Webhook payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from rlm.models.base import WireModel
from rlm.models.tasks import OOLONGResult

__all__ = ["QuotaAlertData", "TaskCompletedData", "WebhookEvent"]


class TaskCompletedData(WireModel):
    """``task.completed``'s data."""

    task_id: str
    status: str
    result: OOLONGResult | None = None


class QuotaAlertData(WireModel):
    """``quota.threshold_exceeded``'s data."""

    user_id: str
    threshold: int
    period: Literal["daily", "weekly", "monthly"]
    usage: Any = None


class WebhookEvent(WireModel):
    """One event as delivered."""

    event: Literal["task.completed", "quota.threshold_exceeded"]
    timestamp: datetime
    data: TaskCompletedData | QuotaAlertData

"""The one JSON envelope every error answer has."""

from __future__ import annotations

from rlm.models.base import WireModel
from rlm.models.tasks import ErrorInfo

__all__ = ["ErrorEnvelope"]


class ErrorEnvelope(WireModel):
    """``{"error": {"code", "message", "details"}, "requestId"}``."""

    error: ErrorInfo
    request_id: str

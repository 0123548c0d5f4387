"""Wire models shared by the server and the SDK: one shape per direction, camelCase on the wire."""

from __future__ import annotations

from rlm.models.base import WireModel, parse_model
from rlm.models.errors import ErrorEnvelope
from rlm.models.events import ProgressEventData, TaskEventMessage, Trajectory
from rlm.models.quotas import (
    AllocationCheck,
    AllocationDecision,
    Organization,
    OrganizationHierarchy,
    OrgQuotaUpdate,
    ProjectAllocation,
    QuotaConfig,
    QuotaPeriod,
    QuotaTransfer,
    TeamConfig,
    TeamMember,
    TeamQuotaStatus,
    TeamUsage,
    UserQuotaStatus,
)
from rlm.models.security import (
    SecurityContext,
    SecurityEvent,
    SecurityPolicy,
    SecurityValidateRequest,
    SecurityValidateResponse,
    Violation,
)
from rlm.models.storage import StorageReadRequest, StorageReadResponse
from rlm.models.tasks import (
    CancelResponse,
    ErrorInfo,
    ExecuteOptions,
    ExecuteRequest,
    ExecuteResponse,
    OOLONGResult,
    OOLONGTask,
    Progress,
    TaskStatus,
)
from rlm.models.webhooks import QuotaAlertData, TaskCompletedData, WebhookEvent

__all__ = [
    "AllocationCheck",
    "AllocationDecision",
    "CancelResponse",
    "ErrorEnvelope",
    "ErrorInfo",
    "ExecuteOptions",
    "ExecuteRequest",
    "ExecuteResponse",
    "OOLONGResult",
    "OOLONGTask",
    "OrgQuotaUpdate",
    "Organization",
    "OrganizationHierarchy",
    "Progress",
    "ProgressEventData",
    "ProjectAllocation",
    "QuotaAlertData",
    "QuotaConfig",
    "QuotaPeriod",
    "QuotaTransfer",
    "SecurityContext",
    "SecurityEvent",
    "SecurityPolicy",
    "SecurityValidateRequest",
    "SecurityValidateResponse",
    "StorageReadRequest",
    "StorageReadResponse",
    "TaskCompletedData",
    "TaskEventMessage",
    "TaskStatus",
    "TeamConfig",
    "TeamMember",
    "TeamQuotaStatus",
    "TeamUsage",
    "Trajectory",
    "UserQuotaStatus",
    "Violation",
    "WebhookEvent",
    "WireModel",
    "parse_model",
]

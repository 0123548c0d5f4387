"""The Python SDK of the RLM Hypervisor API.

Example:
    >>> from rlm_hypervisor import RLMClient
    >>> client = RLMClient(api_key="your-api-key")  # doctest: +SKIP
    >>> result = client.execute({
    ...     "type": "recursive",
    ...     "description": "Process items",
    ...     "input": {"items": [1, 2, 3, 4, 5], "operation": "sum"},
    ... })  # doctest: +SKIP
    >>> print(f"Result: {result.output}")  # doctest: +SKIP
    Result: 15

``client.tasks.events(task_id)`` yields :class:`TaskEventMessage` objects (the same wire models
the server sends) until ``task.completed``; ``client.tasks.trajectory(task_id)`` returns a
:class:`Trajectory`.

Errors are the server's own classes from :mod:`rlm.errors` (re-exported here), with
``request_id`` and ``status_code`` set on each raised instance. The SDK needs httpx and
pydantic, never Ray. Receivers of webhooks check deliveries with
:func:`rlm_hypervisor.webhooks.verify`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm.errors import (
    EvaluationNotFound,
    Forbidden,
    InternalError,
    InvalidInput,
    QuotaExceeded,
    RateLimited,
    RLMError,
    TaskNotFound,
    TaskTimeout,
    Unauthorized,
    WebhookNotFound,
)
from rlm.models import ProgressEventData, TaskEventMessage, Trajectory
from rlm_hypervisor._version import __version__
from rlm_hypervisor.client import AsyncRLMClient, RLMClient
from rlm_hypervisor.result import ExecuteResult

if TYPE_CHECKING:
    from rlm_hypervisor import webhooks

__all__ = [
    "AsyncRLMClient",
    "EvaluationNotFound",
    "ExecuteResult",
    "Forbidden",
    "InternalError",
    "InvalidInput",
    "ProgressEventData",
    "QuotaExceeded",
    "RLMClient",
    "RLMError",
    "RateLimited",
    "TaskEventMessage",
    "TaskNotFound",
    "TaskTimeout",
    "Trajectory",
    "Unauthorized",
    "WebhookNotFound",
    "__version__",
    "webhooks",
]


def __getattr__(name: str) -> Any:
    # ``rlm_hypervisor.webhooks`` (and standardwebhooks under it) loads on first use: a client
    # that never receives webhooks does not pay for it at import.
    if name == "webhooks":
        import importlib

        return importlib.import_module("rlm_hypervisor.webhooks")
    raise AttributeError(f"module 'rlm_hypervisor' has no attribute {name!r}")

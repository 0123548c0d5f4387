"""RLM Hypervisor: recursive language-model workloads on Ray.

Example:
    >>> import rlm
    >>> hv = rlm.connect()                                          # doctest: +SKIP
    >>> hv.execute({"type": "recursive", "description": "Sum",
    ...             "input": {"items": [1, 2, 3], "operation": "sum"}}).output  # doctest: +SKIP
    6

``connect`` and ``Hypervisor`` import Ray on first use, so the pure modules stay importable
(and testable) without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm.config import Settings, get_settings
from rlm.errors import (
    Forbidden,
    InternalError,
    InvalidInput,
    QuotaExceeded,
    RateLimited,
    RLMError,
    TaskNotFound,
    TaskTimeout,
    Unauthorized,
)
from rlm.models import CancelResponse, ExecuteRequest, ExecuteResponse, TaskStatus
from rlm.operations import FunctionOperation, Operation, OperationRegistry, check_cancelled

if TYPE_CHECKING:
    from rlm.runtime import Hypervisor, connect

__all__ = [
    "CancelResponse",
    "ExecuteRequest",
    "ExecuteResponse",
    "Forbidden",
    "FunctionOperation",
    "Hypervisor",
    "InternalError",
    "InvalidInput",
    "Operation",
    "OperationRegistry",
    "QuotaExceeded",
    "RLMError",
    "RateLimited",
    "Settings",
    "TaskNotFound",
    "TaskStatus",
    "TaskTimeout",
    "Unauthorized",
    "__version__",
    "check_cancelled",
    "connect",
    "get_settings",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("connect", "Hypervisor"):
        from rlm import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'rlm' has no attribute {name!r}")

"""RLM Hypervisor: recursive language-model workloads on Ray.

Example:
    >>> import rlm
    >>> hv = rlm.connect()                                          # doctest: +SKIP
    >>> hv.execute({"type": "recursive", "description": "Sum",
    ...             "input": {"items": [1, 2, 3], "operation": "sum"}}).output  # doctest: +SKIP
    6

Every name here is imported on first use (PEP 562). The SDK (:mod:`rlm_hypervisor`) shares
this package's wire models and errors, and ``pip install rlm-hypervisor`` without the
``server`` extra has none of the service's dependencies: importing ``rlm.errors`` must not
drag in the settings (pydantic-settings, JWT keys), the operations or Ray. ``connect`` and
``Hypervisor`` import Ray; the rest needs the ``server`` extra's packages only where noted.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Where each public name lives; imported when first asked for.
_HOMES = {
    "Settings": "rlm.config",
    "get_settings": "rlm.config",
    "CancelResponse": "rlm.models",
    "ExecuteRequest": "rlm.models",
    "ExecuteResponse": "rlm.models",
    "TaskStatus": "rlm.models",
    "FunctionOperation": "rlm.operations",
    "Operation": "rlm.operations",
    "OperationRegistry": "rlm.operations",
    "check_cancelled": "rlm.operations",
    "Hypervisor": "rlm.runtime",
    "connect": "rlm.runtime",
    **dict.fromkeys(
        (
            "Forbidden",
            "InternalError",
            "InvalidInput",
            "QuotaExceeded",
            "RLMError",
            "RateLimited",
            "TaskNotFound",
            "TaskTimeout",
            "Unauthorized",
        ),
        "rlm.errors",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'rlm' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next access is a plain lookup
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

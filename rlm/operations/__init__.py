"""Operations: monoids over chunks of a task's input, and the registry that names them."""

from __future__ import annotations

from rlm.operations.base import Chunk, FunctionOperation, InputKind, Operation
from rlm.operations.context import CallCancelled, check_cancelled, is_cancelled
from rlm.operations.registry import OperationRegistry, default_registry

__all__ = [
    "CallCancelled",
    "Chunk",
    "FunctionOperation",
    "InputKind",
    "Operation",
    "OperationRegistry",
    "check_cancelled",
    "default_registry",
    "is_cancelled",
]

"""Every built-in operation (placeholder: sum only until the catalogue lands)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlm.operations.base import Operation

__all__ = ["builtin_operations"]


class _Sum(Operation):
    name = "sum"
    input_kind = "numbers"

    def leaf(self, chunk: Any, params: Any) -> Any:
        return chunk.sum() if len(chunk) else 0

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return sum(partials)

    def finish(self, partial: Any, params: Any) -> Any:
        return partial.item() if isinstance(partial, np.generic) else partial


def builtin_operations() -> list[Operation]:
    """One instance of each built-in operation."""
    return [_Sum()]

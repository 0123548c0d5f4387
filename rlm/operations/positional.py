"""Operations whose partials hold global item indices.

A leaf sees only its chunk, so an operation that reports positions (``pairs``) or names the
offending item in an error (``filter``, ``sort``) needs to know where the chunk starts. Such an
operation sets :attr:`~rlm.operations.base.Operation.needs_offset` and implements
:meth:`leaf_at`; the engine passes the chunk's start through ``run_call``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

from rlm.operations.base import Chunk, Operation

__all__ = ["PositionalOperation"]


class PositionalOperation(Operation):
    """An operation whose leaf knows the chunk's offset in the whole input."""

    needs_offset: ClassVar[bool] = True

    @abstractmethod
    def leaf_at(self, chunk: Chunk, start: int, params: Any) -> Any:
        """The partial of ``chunk``, whose first item is item ``start`` of the input."""

    def leaf(self, chunk: Chunk, params: Any) -> Any:
        """The partial of ``chunk`` taken as the start of the input (offset 0)."""
        return self.leaf_at(chunk, 0, params)

"""A storage source seen as a sequence of leaf ranges: what an agent slices.

The planner cuts a source into ranges (:func:`~rlm.storage.inputs.split_source`); plan node
``[start, end)`` covers ranges ``start`` to ``end - 1``, which are contiguous, so a leaf reads
one byte range and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlm.models.storage import SourceSpec
from rlm.storage.inputs import read_source_chunk
from rlm.storage.service import StorageService

__all__ = ["SourceItems"]

_EMPTY: dict[str, Any] = {"int64": np.int64, "float64": np.float64}


class SourceItems:
    """The leaves' view of a source.

    Args:
        service: The agent's storage service.
        spec: The source.
        ranges: The planner's ranges, in order.
        as_list: Give numbers as Python lists (for operations over any items).
    """

    def __init__(
        self,
        service: StorageService,
        spec: SourceSpec,
        ranges: Sequence[tuple[int, int]],
        *,
        as_list: bool = False,
    ) -> None:
        self._service = service
        self._spec = spec
        self._ranges = list(ranges)
        self._as_list = as_list

    def __len__(self) -> int:
        return len(self._ranges)

    def __getitem__(self, index: slice) -> Any:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("a source is read by contiguous slices only")
        start, stop, _ = index.indices(len(self._ranges))
        if stop <= start:
            chunk: Any = (
                np.empty(0, dtype=_EMPTY[self._spec.format])
                if self._spec.format in _EMPTY
                else ([] if self._spec.format == "lines" else b"")
            )
        else:
            first, last = self._ranges[start][0], self._ranges[stop - 1][1]
            chunk = read_source_chunk(self._service, self._spec, first, last)
        if self._as_list and isinstance(chunk, np.ndarray):
            return chunk.tolist()
        return chunk

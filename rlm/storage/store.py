"""The seam between the storage service and one connector's backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rlm.models.storage import ReadMethod
from rlm.storage.ranges import ByteRange

__all__ = ["METHODS", "Store", "StoreRead"]

METHODS: tuple[ReadMethod, ...] = ("mmap", "direct", "async", "standard")
"""Every read method, in the API document's order."""


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which cost a
# sixth of the whole mmap read step (issue 18). Nothing keeps or hashes one; treat it as read-only.
@dataclass(slots=True)
class StoreRead:
    """What a store returns for one range.

    Attributes:
        data: The bytes; a read-only zero-copy ``memoryview`` for ``mmap``.
        method: The method that actually served the read (``mmap`` may fall back to
            ``direct``).
        range: The range read, clamped to the object.
        size: The object's size when it was read.
    """

    data: memoryview | bytes
    method: ReadMethod
    range: ByteRange
    size: int


class Store(Protocol):
    """One connector's backend: local disk, S3 or GCS."""

    methods: frozenset[ReadMethod]
    """The methods this store serves."""

    default_method: ReadMethod
    """What ``auto`` means here."""

    def size(self, key: str) -> int:
        """The object's size in bytes."""
        ...

    def read(self, key: str, rng: ByteRange, method: ReadMethod) -> StoreRead:
        """Read a validated (unclamped) range; clamps it to the object first."""
        ...

    def open_input_file(self, key: str) -> Any:
        """A random-access ``pyarrow.NativeFile`` over the object (for Arrow IPC files)."""
        ...

    def close(self) -> None:
        """Release descriptors, maps and sessions."""
        ...

"""Storage shapes: byte-range reads, and files in storage as task inputs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from rlm.models.base import INTEGRAL, WireModel

__all__ = [
    "ReadMethod",
    "SourceFormat",
    "SourceSpec",
    "StorageReadRequest",
    "StorageReadResponse",
]

#: The largest byte offset a request may name (2**53: exact in every JSON implementation).
MAX_OFFSET = 2**53

ReadMethod = Literal["mmap", "direct", "async", "standard"]

SourceFormat = Literal["lines", "int64", "float64", "arrow", "bytes"]
"""How a file in storage is cut into items: text lines, little-endian 8-byte numbers, the
record batches of an Arrow IPC file, or raw bytes."""


class StorageReadRequest(WireModel):
    """``POST /storage/read``'s body: ``start`` inclusive, ``end`` exclusive."""

    connector: Annotated[str, Field(min_length=1, max_length=64)]
    key: Annotated[str, Field(min_length=1, max_length=4096)]
    start: Annotated[int, Field(ge=0, le=MAX_OFFSET), INTEGRAL]
    end: Annotated[int, Field(gt=0, le=MAX_OFFSET), INTEGRAL]
    method: ReadMethod | Literal["auto"] = "auto"


class StorageReadResponse(WireModel):
    """The bytes read (base64) and how.

    ``objectSize`` (an extension) is the object's whole size, so a client can page through
    it; the range actually read is ``start`` to ``start + len(data)``.
    """

    data: str
    latency_ms: float
    method: ReadMethod
    object_size: Annotated[int, Field(ge=0)] | None = None


class SourceSpec(WireModel):
    """``input.source`` of a task: a file in storage, read range by range by the leaves.

    ``start`` / ``end`` (bytes, ``end`` exclusive) select part of the file; for ``lines`` a
    line belongs to the range it starts in. ``arrow`` files are split by record batch and
    take no byte range.
    """

    connector: Annotated[str, Field(min_length=1, max_length=64)]
    key: Annotated[str, Field(min_length=1, max_length=4096)]
    start: Annotated[int, Field(ge=0, le=MAX_OFFSET), INTEGRAL] | None = None
    end: Annotated[int, Field(gt=0, le=MAX_OFFSET), INTEGRAL] | None = None
    format: SourceFormat

    @model_validator(mode="after")
    def _check_range(self) -> SourceSpec:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be greater than start")
        if self.format == "arrow" and (self.start is not None or self.end is not None):
            raise ValueError("arrow sources are split by record batch and take no start/end")
        return self

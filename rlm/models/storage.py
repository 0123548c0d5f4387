"""Storage shapes: byte-range reads."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from rlm.models.base import WireModel

__all__ = ["ReadMethod", "StorageReadRequest", "StorageReadResponse"]

ReadMethod = Literal["mmap", "direct", "async", "standard"]


class StorageReadRequest(WireModel):
    """``POST /storage/read``'s body: ``start`` inclusive, ``end`` exclusive."""

    connector: Annotated[str, Field(min_length=1, max_length=64)]
    key: Annotated[str, Field(min_length=1, max_length=4096)]
    start: Annotated[int, Field(ge=0)]
    end: Annotated[int, Field(gt=0)]
    method: ReadMethod | Literal["auto"] = "auto"


class StorageReadResponse(WireModel):
    """The bytes read (base64) and how."""

    data: str
    latency_ms: float
    method: ReadMethod

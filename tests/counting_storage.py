"""A storage service that counts the bytes its reads return, for tests that prove a reader
never reads more than it needs (a file is never read whole, a scan stops at its budget)."""

from __future__ import annotations

from typing import Any

from rlm.storage import ReadResult, StorageService

__all__ = ["CountingService"]


class CountingService(StorageService):
    """A :class:`~rlm.storage.StorageService` that adds up the bytes every read returns."""

    bytes_read = 0

    def read(self, *args: Any, **kwargs: Any) -> ReadResult:
        result = super().read(*args, **kwargs)
        self.bytes_read += len(result.data)
        return result

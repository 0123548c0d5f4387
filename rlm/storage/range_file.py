"""A storage object as a read-only file whose reads are ranged reads, with a byte budget.

pyarrow's IPC file reader needs a random-access file; the reader of a source scan must also
never read more than its budget, whatever the file holds. :class:`RangeFile` serves each
``read`` with one :meth:`~rlm.storage.service.StorageService.read` of exactly that range
(so only the footer and the buffers asked for are fetched) and refuses a read that would go
past the budget. pyarrow turns a Python exception in a read into its own ``OSError``:
:attr:`RangeFile.failure` keeps the original, and :attr:`RangeFile.exhausted` says whether it
was the budget.

Example:
    >>> import pyarrow as pa
    >>> file = RangeFile(service, "local", "table.arrow", budget=1 << 20)  # doctest: +SKIP
    >>> reader = pa.ipc.open_file(pa.PythonFile(file, mode="r"))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os

from rlm.storage.service import StorageService

__all__ = ["BudgetExhausted", "RangeFile"]


class BudgetExhausted(OSError):
    """A read would have gone past the file's byte budget."""


class RangeFile(io.RawIOBase):
    """``[0, size)`` of an object, read range by range through the storage service.

    Args:
        service: The storage service.
        connector: The object's connector.
        key: The object's key.
        budget: The most bytes all reads together may return.
    """

    def __init__(self, service: StorageService, connector: str, key: str, *, budget: int) -> None:
        super().__init__()
        self._service = service
        self._connector = connector
        self._key = key
        self._size = service.size(connector, key)
        self._pos = 0
        self.budget = budget
        self.bytes_read = 0
        self.failure: Exception | None = None

    @property
    def exhausted(self) -> bool:
        """Whether a read was refused for the budget."""
        return isinstance(self.failure, BudgetExhausted)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        want = self._size - self._pos if size is None or size < 0 else size
        want = max(0, min(want, self._size - self._pos))
        if want == 0:
            return b""
        try:
            if self.bytes_read + want > self.budget:
                # Refused whole: a part of an Arrow buffer is of no use to the reader.
                raise BudgetExhausted(f"reading {want} more bytes would pass the scan's budget")
            got = self._service.read(
                self._connector, self._key, self._pos, self._pos + want, max_bytes=want
            )
        except Exception as err:
            self.failure = err
            raise
        data = bytes(got.data)
        self._pos += len(data)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)

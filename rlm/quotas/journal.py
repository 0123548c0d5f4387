"""An append-only file of change sets: the cheap durable write behind every quota call.

Each record is framed as ``length (4 bytes) | CRC-32 (4 bytes) | payload``. Appending is one
``write`` system call with no fsync, the guarantee of SQLite's WAL with ``synchronous=NORMAL``:
a record survives a crash of the process at once, and a power loss may drop the latest records.
Reading stops at the first frame that is short or fails its checksum, and cuts the file there,
so a torn tail is never replayed and never followed by new records.

Only one process may write a journal; :class:`~rlm.quotas.store.QuotaStore` guarantees it by
holding its SQLite file's exclusive lock for as long as the journal is open.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from rlm.errors import InternalError

__all__ = ["ChangeJournal"]

_HEADER = struct.Struct("<II")


class ChangeJournal:
    """One journal file, opened for appending.

    Args:
        path: The file (created if missing).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        # O_APPEND: every write lands at the current end, even after a truncation.
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        self._records = 0
        self._broken = False

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._path

    @property
    def records(self) -> int:
        """Records in the journal."""
        return self._records

    def read(self) -> list[bytes]:
        """Every valid record from the start, oldest first; a bad tail is cut off the file."""
        with open(self._path, "rb") as f:
            data = f.read()
        out: list[bytes] = []
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, pos)
            start, end = pos + _HEADER.size, pos + _HEADER.size + length
            if end > len(data) or zlib.crc32(data[start:end]) != crc:
                break
            out.append(data[start:end])
            pos = end
        if pos != len(data):
            os.ftruncate(self._fd, pos)
            os.fsync(self._fd)
        self._size, self._records = pos, len(out)
        return out

    def append(self, payload: bytes) -> None:
        """Add one record (no fsync).

        Raises:
            OSError: The write failed; the file is cut back to its last whole record.
            InternalError: An earlier failure could not be cut back; reopen the store.
        """
        if self._broken:
            raise InternalError(f"quota journal {self._path} is damaged; reopen the store")
        frame = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            done = os.write(self._fd, frame)
            while done < len(frame):
                done += os.write(self._fd, frame[done:])
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                # A partial frame stays in the file: replay would stop there and drop every
                # later record, so refuse further appends instead.
                self._broken = True
            raise
        self._size += len(frame)
        self._records += 1

    def reset(self) -> None:
        """Empty the journal durably (its records are safely stored elsewhere)."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._size = self._records = 0
        self._broken = False

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)

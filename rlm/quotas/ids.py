"""Unguessable ids for reservations and token holds, drawn from a buffer of OS randomness.

``secrets.token_hex(16)`` asks the kernel for 16 bytes on each call; at tens of thousands of
admissions a second that system call (and its Python layers) was a twentieth of the
accountant's time. The same kernel randomness (``os.urandom``) is read 4 KiB at a time here
and handed out 16 bytes per id, so ids stay as unguessable as before. A child process made
by ``fork`` drops the buffer it inherited, so parent and child never hand out the same id.
"""

from __future__ import annotations

import os
import threading

__all__ = ["random_hex"]

_ID_BYTES = 16
_BUFFER_BYTES = 4096

_lock = threading.Lock()
_buffer = b""
_offset = 0


def random_hex() -> str:
    """32 hex digits (128 bits) of OS randomness, as ``secrets.token_hex(16)`` gives."""
    global _buffer, _offset
    with _lock:
        if _offset + _ID_BYTES > len(_buffer):
            _buffer, _offset = os.urandom(_BUFFER_BYTES), 0
        start = _offset
        _offset = start + _ID_BYTES
        return _buffer[start : start + _ID_BYTES].hex()


def _forget() -> None:
    global _buffer, _offset
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_forget)

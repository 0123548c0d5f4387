"""The sandbox's internal wire format: length-prefixed JSON frames over a pair of pipes.

This is a stop-gap until the project's JSON-lines message protocol lands; everything that knows
the byte layout lives here, so swapping it touches this module only. The module must stay
standard-library only: its source is also sent to the sandboxed child, which cannot import
``rlm`` (it runs ``python -I -S`` as another uid).

A frame is a 4-byte big-endian unsigned length followed by that many bytes of UTF-8 JSON whose
top level is an object with an ``"op"`` key. Messages, host to child:

- ``{"op": "run", "code": str, "cpu_s": int}`` runs a cell; ``{"op": "context", "value": ...}``
  binds ``context``; ``{"op": "reply", "results": [str, ...]}`` answers a ``call``;
  ``{"op": "var", "name": str, "cpu_s": int}`` asks for ``str()`` of a variable.

Child to host:

- ``{"op": "ready", "confined": bool, "error": str | None}`` once, after start-up;
  ``{"op": "call", "kind": str, "prompts": [str, ...], "model": str | None}`` while a cell runs;
  ``{"op": "result", "stdout", "stderr", "new_vars", "error", "killed_reason", "answer"}`` ends
  a cell; ``{"op": "ok"}`` acknowledges ``context``; ``{"op": "var", "value", "names",
  "error"}`` answers ``var``.

The host treats every frame from the child as untrusted: :class:`FrameDecoder` refuses frames
longer than its limit and anything that is not a JSON object with a string ``op``.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

__all__ = ["FrameDecoder", "FrameError", "encode", "read_message"]

_HEADER = struct.Struct(">I")


class FrameError(ValueError):
    """A frame that is too long or is not a JSON object with an ``op``."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame holding ``message`` (JSON, UTF-8, no NaN)."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(len(body)) + body


def _decode_body(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise FrameError("frame is not an object with a string 'op'")
    return message


class FrameDecoder:
    """Incremental decoder for a non-blocking reader (the host side).

    Args:
        max_frame_bytes: Longest body accepted; a longer header raises :class:`FrameError`
            before the body is buffered.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._max = max_frame_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add bytes; return every message they complete, in order."""
        self._buffer += data
        messages: list[dict[str, Any]] = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self._max:
                raise FrameError(f"frame of {length} bytes exceeds {self._max}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            messages.append(_decode_body(body))
        return messages


def read_message(stream: BinaryIO) -> dict[str, Any] | None:
    """Read one frame from a blocking stream (the child side); ``None`` at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return _decode_body(body)

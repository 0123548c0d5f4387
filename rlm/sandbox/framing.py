"""The one wire between an RLM's host and its sandboxed REPL: length-prefixed JSON frames.

Every byte layout and message shape of the host ↔ sandbox protocol lives here and only here
(an earlier JSON-lines codec, ``rlm.rlmmode.messages``, that nothing spoke was folded into it).
The module must stay standard-library only: its source is also sent to the sandboxed child,
which cannot import ``rlm`` (it runs ``python -I -S`` as another uid).

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
longer than its limit, JSON with duplicate keys or ``NaN``/``Infinity``, anything that is not
an object with a string ``op``, and (:func:`check_child_message`) an ``op`` the child may not
send, a missing or unknown field, or a field of the wrong type (:data:`CHILD_MESSAGES`). The
child trusts the host's frames (:func:`read_message` only parses them).
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

__all__ = [
    "CHILD_MESSAGES",
    "FrameDecoder",
    "FrameError",
    "check_child_message",
    "encode",
    "read_message",
]

_HEADER = struct.Struct(">I")

# Field kinds of :data:`CHILD_MESSAGES`.
_STR, _OPT_STR, _BOOL, _STRS = "str", "str|None", "bool", "list[str]"

#: What the child may send: each ``op`` and its fields (all required, no others).
CHILD_MESSAGES: dict[str, dict[str, str]] = {
    "ready": {"confined": _BOOL, "error": _OPT_STR},
    "call": {"kind": _STR, "prompts": _STRS, "model": _OPT_STR},
    "result": {
        "stdout": _STR,
        "stderr": _STR,
        "new_vars": _STRS,
        "error": _OPT_STR,
        "killed_reason": _OPT_STR,
        "answer": _OPT_STR,
    },
    "ok": {},
    "var": {"value": _OPT_STR, "names": _STRS, "error": _OPT_STR},
}


class FrameError(ValueError):
    """A frame that is too long or is not a JSON object with an ``op``."""


def encode(message: dict[str, Any]) -> bytes:
    """One frame holding ``message`` (JSON, UTF-8, no NaN)."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    return _HEADER.pack(len(body)) + body


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FrameError(f"duplicate key {key!r:.80}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise FrameError(f"{name} is not a JSON number")


def _decode_body(body: bytes, *, strict: bool = False) -> dict[str, Any]:
    try:
        if strict:
            message = json.loads(
                body, object_pairs_hook=_no_duplicates, parse_constant=_no_constant
            )
        else:
            message = json.loads(body)
    except FrameError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"frame is not JSON: {exc}"[:300]) from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise FrameError("frame is not an object with a string 'op'")
    return message


def _fits(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _OPT_STR:
        return value is None or isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_child_message(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` if it is one the child may send (:data:`CHILD_MESSAGES`), exactly.

    Raises:
        FrameError: An unknown ``op``, a missing or unknown field, or a wrong type.
    """
    op = message["op"]
    fields = CHILD_MESSAGES.get(op)
    if fields is None:
        raise FrameError(f"the sandbox may not send {op!r:.40}")
    missing = fields.keys() - message.keys()
    unknown = message.keys() - fields.keys() - {"op"}
    if missing or unknown:
        raise FrameError(f"{op} message: missing {sorted(missing)}, unknown {sorted(unknown)[:5]}")
    for name, kind in fields.items():
        if not _fits(message[name], kind):
            raise FrameError(f"{op} message: {name} must be {kind}")
    return message


class FrameDecoder:
    """Incremental decoder of the child's frames for a non-blocking reader (the host side):
    strict JSON, and only the messages of :data:`CHILD_MESSAGES`.

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
            messages.append(check_child_message(_decode_body(body, strict=True)))
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

"""The wire between the host (the session actor) and an RLM's sandboxed REPL process.

One JSON object per line (UTF-8, ``\\n``-terminated) on a pipe each way. The sandbox is
untrusted, so everything it sends is checked here before the host acts on it: the host never
evaluates a message, it only reads fields of the types below.

Host → sandbox (:data:`HostMessage`, read with :func:`decode_from_host`)::

    {"type": "exec", "id": "c1", "code": "print(len(context))"}
    {"type": "result", "id": "q7", "value": "the answer"}          # or a list of strings
    {"type": "shutdown"}

Sandbox → host (:data:`SandboxMessage`, read with :func:`decode_from_sandbox`)::

    {"type": "call", "id": "q7", "kind": "llm_query", "prompts": ["..."], "model": null}
    {"type": "done", "id": "c1", "stdout": "...", "stderr": "", "newVars": ["n"],
     "answer": "42", "error": "ZeroDivisionError: division by zero", "durationMs": 3.1}

``answer`` and ``error`` are left out (or ``null``) when there is none. A ``call`` of kind
``llm_query`` or ``rlm_query`` carries exactly one prompt, a batched kind any number; its
``result`` carries a string or a list of strings respectively (a failed sub-call answers
``"Error: ..."``, as in the reference). Ids are short tokens of letters, digits and ``_.:-``.

Every refusal is a :class:`~rlm.errors.ProtocolError` (``reason``: ``oversized``,
``malformed``, ``invalid`` or ``truncated``): unknown types or fields, missing fields, wrong
types, duplicate keys, ``NaN``, lone surrogates, a message longer than the cap (64 MiB by
default) or a message meant for the other direction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, get_args

from rlm.errors import ProtocolError

__all__ = [
    "BATCHED_KINDS",
    "CALL_KINDS",
    "Call",
    "CallKind",
    "Done",
    "Exec",
    "HostMessage",
    "LineSource",
    "MAX_MESSAGE_BYTES",
    "Message",
    "Result",
    "SandboxMessage",
    "Shutdown",
    "decode_from_host",
    "decode_from_sandbox",
    "encode_message",
    "read_line",
]

#: The largest message (bytes of JSON, without the line break) either side accepts by default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CallKind: TypeAlias = Literal["llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched"]
#: Every sub-call kind the sandbox may ask for.
CALL_KINDS: frozenset[str] = frozenset(get_args(CallKind))
#: The kinds that take a list of prompts and answer a list.
BATCHED_KINDS: frozenset[str] = frozenset({"llm_query_batched", "rlm_query_batched"})

_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(message, reason="invalid")


def _check_id(value: object, where: str) -> None:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise _invalid(f"{where}: id must be 1-64 letters, digits or _.:- (got {value!r:.80})")


def _check_text(value: object, where: str) -> None:
    if not isinstance(value, str):
        raise _invalid(f"{where} must be a string, got {type(value).__name__}")
    if _SURROGATE.search(value) is not None:
        raise _invalid(f"{where} holds a lone surrogate (not valid Unicode)")


def _check_texts(value: object, where: str) -> None:
    if not isinstance(value, tuple):
        raise _invalid(f"{where} must be a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        _check_text(item, f"{where}[{i}]")


def _check_optional_text(value: object, where: str) -> None:
    if value is not None:
        _check_text(value, where)


@dataclass(frozen=True, slots=True)
class Exec:
    """Host → sandbox: run ``code`` as the next cell.

    Attributes:
        id: The cell's id, echoed by its :class:`Done`.
        code: The cell's source.
    """

    type: ClassVar[str] = "exec"
    id: str
    code: str

    def __post_init__(self) -> None:
        _check_id(self.id, "exec")
        _check_text(self.code, "exec.code")


@dataclass(frozen=True, slots=True)
class Result:
    """Host → sandbox: the answer to the sub-call :class:`Call` ``id``.

    Attributes:
        id: The call's id.
        value: The answer (a list of answers, in prompt order, for a batched call).
    """

    type: ClassVar[str] = "result"
    id: str
    value: str | tuple[str, ...]

    def __post_init__(self) -> None:
        _check_id(self.id, "result")
        if isinstance(self.value, tuple):
            _check_texts(self.value, "result.value")
        else:
            _check_text(self.value, "result.value")


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Host → sandbox: finish and exit."""

    type: ClassVar[str] = "shutdown"


@dataclass(frozen=True, slots=True)
class Call:
    """Sandbox → host: a sub-call the running cell waits on.

    Attributes:
        id: The call's id, echoed by its :class:`Result`.
        kind: Which function the code called.
        prompts: The prompts (exactly one for ``llm_query``/``rlm_query``).
        model: The ``model=`` the code asked for, ``None`` for the task's default.
    """

    type: ClassVar[str] = "call"
    id: str
    kind: CallKind
    prompts: tuple[str, ...]
    model: str | None = None

    def __post_init__(self) -> None:
        _check_id(self.id, "call")
        if not isinstance(self.kind, str) or self.kind not in CALL_KINDS:
            raise _invalid(f"call.kind must be one of {sorted(CALL_KINDS)}, got {self.kind!r:.80}")
        _check_texts(self.prompts, "call.prompts")
        if self.kind not in BATCHED_KINDS and len(self.prompts) != 1:
            raise _invalid(f"call.prompts: {self.kind} takes exactly one prompt")
        _check_optional_text(self.model, "call.model")


@dataclass(frozen=True, slots=True)
class Done:
    """Sandbox → host: the cell ``id`` has finished.

    Attributes:
        id: The cell's id.
        stdout: What the cell printed (the sandbox caps it).
        stderr: What it wrote to stderr.
        new_vars: Names of the variables it created (``newVars``), in creation order.
        answer: ``str(answer["content"])`` when the cell ended with ``answer["ready"]``
            truthy (:func:`rlm.rlmmode.answer.answer_from_dict`), else ``None``.
        error: ``"TypeName: message"`` when the cell raised, else ``None``.
        duration_ms: The cell's wall time (``durationMs``).
    """

    type: ClassVar[str] = "done"
    id: str
    stdout: str
    stderr: str
    new_vars: tuple[str, ...]
    answer: str | None = None
    error: str | None = None
    duration_ms: float = 0.0

    def __post_init__(self) -> None:
        _check_id(self.id, "done")
        _check_text(self.stdout, "done.stdout")
        _check_text(self.stderr, "done.stderr")
        _check_texts(self.new_vars, "done.newVars")
        for name in self.new_vars:
            if not name.isidentifier():
                raise _invalid(f"done.newVars: {name!r:.80} is not a Python identifier")
        _check_optional_text(self.answer, "done.answer")
        _check_optional_text(self.error, "done.error")
        duration = self.duration_ms
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise _invalid(f"done.durationMs must be a number, got {type(duration).__name__}")
        if not 0 <= duration < float("inf"):
            raise _invalid(f"done.durationMs must be finite and >= 0, got {duration!r}")


HostMessage: TypeAlias = Exec | Result | Shutdown
SandboxMessage: TypeAlias = Call | Done
Message: TypeAlias = HostMessage | SandboxMessage


def _payload(message: Message) -> dict[str, Any]:
    if isinstance(message, Exec):
        return {"type": "exec", "id": message.id, "code": message.code}
    if isinstance(message, Result):
        value = list(message.value) if isinstance(message.value, tuple) else message.value
        return {"type": "result", "id": message.id, "value": value}
    if isinstance(message, Shutdown):
        return {"type": "shutdown"}
    if isinstance(message, Call):
        return {
            "type": "call",
            "id": message.id,
            "kind": message.kind,
            "prompts": list(message.prompts),
            "model": message.model,
        }
    payload: dict[str, Any] = {
        "type": "done",
        "id": message.id,
        "stdout": message.stdout,
        "stderr": message.stderr,
        "newVars": list(message.new_vars),
        "durationMs": message.duration_ms,
    }
    if message.answer is not None:
        payload["answer"] = message.answer
    if message.error is not None:
        payload["error"] = message.error
    return payload


def encode_message(message: Message, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """One message as a JSON line.

    Args:
        message: The message.
        max_bytes: The largest JSON text allowed (the line break not counted).

    Returns:
        Compact UTF-8 JSON ending in ``\\n`` (JSON escapes every line break inside strings,
        so the line holds exactly one message).

    Raises:
        ProtocolError: When the message is larger than ``max_bytes`` (``oversized``).

    Example:
        >>> encode_message(Exec(id="c1", code="x = 1"))
        b'{"type":"exec","id":"c1","code":"x = 1"}\\n'
    """
    body = json.dumps(
        _payload(message), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")
    if len(body) > max_bytes:
        raise ProtocolError(
            f"{message.type} message of {len(body):,} bytes exceeds the {max_bytes:,}-byte cap",
            reason="oversized",
        )
    return body + b"\n"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _invalid(f"duplicate key {key!r:.80}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _invalid(f"{name} is not a JSON number")


def _parse(line: bytes | str, max_bytes: int) -> dict[str, Any]:
    if isinstance(line, str):
        if len(line) > max_bytes + 1:  # a character is at least one byte
            raise ProtocolError(f"message exceeds the {max_bytes:,}-byte cap", reason="oversized")
        try:
            line = line.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("message is not valid Unicode", reason="malformed") from None
    body = line[:-1] if line.endswith(b"\n") else line
    if len(body) > max_bytes:
        raise ProtocolError(
            f"message of {len(body):,} bytes exceeds the {max_bytes:,}-byte cap",
            reason="oversized",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"message is not UTF-8: {exc}", reason="malformed") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"message is not JSON: {exc}"[:300], reason="malformed") from None
    if not isinstance(data, dict):
        raise _invalid(f"message must be a JSON object, got {type(data).__name__}")
    return data


def _fields(
    data: Mapping[str, Any], required: AbstractSet[str], optional: AbstractSet[str] = frozenset()
) -> None:
    kind = data.get("type")
    missing = required - data.keys()
    if missing:
        raise _invalid(f"{kind} message lacks {sorted(missing)}")
    unknown = data.keys() - required - optional - {"type"}
    if unknown:
        shown = sorted(unknown)[:5]
        raise _invalid(f"{kind} message has unknown fields {[f[:40] for f in shown]}")


def _texts(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a list of strings, got {type(value).__name__}")
    return tuple(value)  # the dataclass checks every item


def _exec(data: Mapping[str, Any]) -> Exec:
    _fields(data, {"id", "code"})
    return Exec(id=data["id"], code=data["code"])


def _result(data: Mapping[str, Any]) -> Result:
    _fields(data, {"id", "value"})
    value = data["value"]
    return Result(
        id=data["id"], value=_texts(value, "result.value") if isinstance(value, list) else value
    )


def _shutdown(data: Mapping[str, Any]) -> Shutdown:
    _fields(data, set())
    return Shutdown()


def _call(data: Mapping[str, Any]) -> Call:
    _fields(data, {"id", "kind", "prompts"}, {"model"})
    return Call(
        id=data["id"],
        kind=data["kind"],
        prompts=_texts(data["prompts"], "call.prompts"),
        model=data.get("model"),
    )


def _done(data: Mapping[str, Any]) -> Done:
    _fields(data, {"id", "stdout", "stderr", "newVars", "durationMs"}, {"answer", "error"})
    return Done(
        id=data["id"],
        stdout=data["stdout"],
        stderr=data["stderr"],
        new_vars=_texts(data["newVars"], "done.newVars"),
        answer=data.get("answer"),
        error=data.get("error"),
        duration_ms=data["durationMs"],
    )


_FROM_HOST: dict[str, Callable[[Mapping[str, Any]], HostMessage]] = {
    "exec": _exec,
    "result": _result,
    "shutdown": _shutdown,
}
_FROM_SANDBOX: dict[str, Callable[[Mapping[str, Any]], SandboxMessage]] = {
    "call": _call,
    "done": _done,
}


def _type_of(data: Mapping[str, Any], allowed: Mapping[str, object], sender: str) -> str:
    kind = data.get("type")
    if not isinstance(kind, str):
        raise _invalid("message lacks a string 'type'")
    if kind not in allowed:
        raise _invalid(
            f"unknown message type {kind[:40]!r} from the {sender} (expected one of "
            f"{sorted(allowed)})"
        )
    return kind


def decode_from_host(line: bytes | str, max_bytes: int = MAX_MESSAGE_BYTES) -> HostMessage:
    """Read one line the host sent (the sandbox's side).

    Args:
        line: One line, with or without its ``\\n``.
        max_bytes: The largest JSON text accepted.

    Returns:
        The :class:`Exec`, :class:`Result` or :class:`Shutdown` it holds.

    Raises:
        ProtocolError: When the line is not exactly one valid host message.
    """
    data = _parse(line, max_bytes)
    return _FROM_HOST[_type_of(data, _FROM_HOST, "host")](data)


def decode_from_sandbox(line: bytes | str, max_bytes: int = MAX_MESSAGE_BYTES) -> SandboxMessage:
    """Read one line a sandbox sent (the host's side; the sender is untrusted).

    Args:
        line: One line, with or without its ``\\n``.
        max_bytes: The largest JSON text accepted.

    Returns:
        The :class:`Call` or :class:`Done` it holds.

    Raises:
        ProtocolError: When the line is not exactly one valid sandbox message.

    Example:
        >>> decode_from_sandbox(b'{"type":"call","id":"q1","kind":"llm_query","prompts":["hi"]}')
        Call(id='q1', kind='llm_query', prompts=('hi',), model=None)
    """
    data = _parse(line, max_bytes)
    return _FROM_SANDBOX[_type_of(data, _FROM_SANDBOX, "sandbox")](data)


class LineSource(Protocol):
    """What :func:`read_line` reads from: a binary stream (a pipe's reading end)."""

    def readline(self, size: int = -1, /) -> bytes: ...


def read_line(stream: LineSource, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes | None:
    """The next line of a stream, never reading more than one message's worth.

    A line longer than the cap is refused after reading ``max_bytes + 1`` bytes, so a
    misbehaving sandbox cannot make the host buffer an unbounded line. After a refusal the
    stream is out of step: stop the sandbox.

    Args:
        stream: The pipe.
        max_bytes: The largest JSON text accepted.

    Returns:
        The line with its ``\\n``, or ``None`` at the end of the stream.

    Raises:
        ProtocolError: ``oversized`` past the cap; ``truncated`` when the stream ends
            mid-line.
    """
    line = stream.readline(max_bytes + 1)
    if not line:
        return None
    if line.endswith(b"\n"):
        return line
    if len(line) > max_bytes:
        raise ProtocolError(
            f"a line longer than the {max_bytes:,}-byte cap arrived", reason="oversized"
        )
    raise ProtocolError("the stream ended in the middle of a message", reason="truncated")

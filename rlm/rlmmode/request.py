"""An RLM task's request, validated: the query, the context (or a file), and the options.

``POST /v1/execute`` with ``input.operation: "rlm"``::

    {"type": "recursive", "description": "...",
     "input": {"operation": "rlm", "query": "How many ...?",
               "context": "<string | list | object>"},        # or "source": {connector, key, ...}
     "options": {"model"?, "subModel"?, "maxIterations"? (30), "maxDepth"? (1),
                 "budget"?, "timeoutMs"?, "memo"?, "priority"?}}

Every refusal is :class:`~rlm.errors.InvalidInput` naming the field (``input.query``,
``input.context``, ``input.source.format``, ``options.maxIterations``...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from rlm.errors import InvalidInput
from rlm.models.base import parse_model
from rlm.models.storage import SourceSpec
from rlm.models.tasks import ExecuteOptions
from rlm.rlmmode.settings import RLMSettings
from rlm.storage.inputs import read_source_chunk, split_source
from rlm.storage.service import StorageService

__all__ = [
    "CONTEXT_FORMATS",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITERATIONS",
    "MAX_QUERY_CHARS",
    "RLM_OPERATION",
    "RLMInput",
    "RLMParams",
    "check_not_rlm_options",
    "is_rlm_input",
    "parse_rlm_input",
    "read_context",
]

#: ``input.operation`` of an RLM task.
RLM_OPERATION = "rlm"
#: ``options.maxIterations`` when the request names none (the reference's default).
DEFAULT_MAX_ITERATIONS = 30
#: ``options.maxDepth`` of an RLM task when the request names none (the reference's default).
DEFAULT_MAX_DEPTH = 1
#: The longest query.
MAX_QUERY_CHARS = 100_000
#: Source formats an RLM context may be read from: ``lines`` gives a list of strings,
#: ``bytes`` one string (UTF-8), ``int64`` / ``float64`` a list of numbers.
CONTEXT_FORMATS = ("lines", "bytes", "int64", "float64")

_INPUT_KEYS = ("operation", "query", "context", "source")
#: Options that shape a plan of agent calls: an RLM task has none.
_PLAN_OPTIONS = {"leaf_size": "leafSize", "fanout": "fanout"}
#: Options only RLM tasks take.
_RLM_OPTIONS = {"model": "model", "sub_model": "subModel", "max_iterations": "maxIterations"}


@dataclass(frozen=True, slots=True)
class RLMParams:
    """What the session needs besides the context.

    Attributes:
        query: The question the root answers.
        max_iterations: Root turns before the last call asks for the answer.
        max_depth: ``rlm_query`` nesting: a sub-call of the root is at depth 1; an RLM may
            start a child RLM while its own depth + 1 is below ``max_depth``, else
            ``rlm_query`` answers as ``llm_query`` does (the reference's rule).
        model: The root's model (and child RLMs'); ``None``: the provider's ``model``.
        sub_model: Sub-calls' model; ``None``: the provider's ``subModel`` (else ``model``).
        max_tokens: ``max_tokens`` of every call (``None``: the provider's default).
    """

    query: str
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    max_depth: int = DEFAULT_MAX_DEPTH
    model: str | None = None
    sub_model: str | None = None
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class RLMInput:
    """A validated RLM request.

    Attributes:
        params: The session's parameters.
        context: The context given inline (``None`` when it comes from ``source``).
        source: The file the context is read from, if any.
        context_bytes: Size of the inline context's JSON (0 for a source).
    """

    params: RLMParams
    context: Any = None
    source: SourceSpec | None = None
    context_bytes: int = 0


def is_rlm_input(raw: Any) -> bool:
    """Whether a request's ``input`` names the RLM operation."""
    return isinstance(raw, Mapping) and raw.get("operation") == RLM_OPERATION


def check_not_rlm_options(options: ExecuteOptions) -> None:
    """Refuse RLM-only options on a task that is not an RLM task.

    Raises:
        InvalidInput: naming the option.
    """
    for name, wire in _RLM_OPTIONS.items():
        if getattr(options, name) is not None:
            raise InvalidInput(
                f'options.{wire} applies to RLM tasks only (input.operation "rlm")',
                field=f"options.{wire}",
            )


def _bounded(value: int | None, default: int, hi: int, wire: str) -> int:
    chosen = default if value is None else value
    if not 1 <= chosen <= hi:
        raise InvalidInput(
            f"options.{wire} of an RLM task must be between 1 and {hi}; got {chosen}",
            {"max": hi},
            field=f"options.{wire}",
        )
    return chosen


def _json_size(context: Any) -> int:
    """Bytes of ``context`` as compact UTF-8 JSON, or ``INVALID_INPUT`` if it is not JSON.

    orjson first (fast); it stops at integers past 64 bits, which are valid JSON and which the
    sandbox's wire (the standard library's ``json``) carries exactly, so those are measured by
    the standard library. Lone surrogates, sets, objects and non-finite floats stay refused.
    """
    try:
        return len(orjson.dumps(context))
    except TypeError:
        pass
    try:
        text = json.dumps(context, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return len(text.encode())
    except (TypeError, ValueError) as err:  # UnicodeEncodeError: a lone surrogate
        raise InvalidInput(f"input.context is not JSON: {err}", field="input.context") from None


def parse_rlm_input(
    raw: Mapping[str, Any], options: ExecuteOptions, settings: RLMSettings
) -> RLMInput:
    """Validate an RLM task's ``input`` and ``options``.

    Args:
        raw: The request's ``input`` (``operation`` is ``"rlm"``).
        options: The request's options.
        settings: The service's bounds (``RLM_RLM__*``).

    Returns:
        The validated request.

    Raises:
        InvalidInput: naming the first bad field.

    Example:
        >>> raw = {"operation": "rlm", "query": "q", "context": "abc"}
        >>> parse_rlm_input(raw, ExecuteOptions(), RLMSettings()).params.max_iterations
        30
    """
    unknown = sorted(set(raw) - set(_INPUT_KEYS))
    if unknown:
        raise InvalidInput(
            f"unknown input field {unknown[0]!r} for an RLM task (it takes query, and context "
            "or source)",
            field=f"input.{unknown[0]}",
        )
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("input.query must be a non-empty string", field="input.query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(
            f"input.query is longer than {MAX_QUERY_CHARS:,} characters; put long text in "
            "input.context",
            field="input.query",
        )
    given = [k for k in ("context", "source") if k in raw]
    if len(given) != 1:
        raise InvalidInput(
            "give exactly one of input.context or input.source", field="input.context"
        )
    for name, wire in _PLAN_OPTIONS.items():
        if getattr(options, name) is not None:
            raise InvalidInput(
                f"options.{wire} does not apply to an RLM task (its root decides how to split "
                "the work)",
                field=f"options.{wire}",
            )
    params = RLMParams(
        query=query,
        max_iterations=_bounded(
            options.max_iterations, DEFAULT_MAX_ITERATIONS, settings.max_iterations, "maxIterations"
        ),
        max_depth=_bounded(options.max_depth, DEFAULT_MAX_DEPTH, settings.max_depth, "maxDepth"),
        model=options.model,
        sub_model=options.sub_model,
        max_tokens=settings.max_reply_tokens,
    )
    if given == ["source"]:
        spec = parse_model(SourceSpec, raw["source"], prefix="input.source")
        if spec.format not in CONTEXT_FORMATS:
            raise InvalidInput(
                f"an RLM context cannot be read from a {spec.format!r} source",
                {"formats": list(CONTEXT_FORMATS)},
                field="input.source.format",
            )
        return RLMInput(params=params, source=spec)
    context = raw["context"]
    if not isinstance(context, str | list | dict):
        raise InvalidInput(
            "input.context must be a string, a list or an object", field="input.context"
        )
    size = _json_size(context)
    if size > settings.max_context_bytes:
        raise InvalidInput(
            f"input.context is {size:,} bytes of JSON; at most {settings.max_context_bytes:,} "
            "are allowed (RLM_RLM__MAX_CONTEXT_BYTES)",
            {"maxContextBytes": settings.max_context_bytes},
            field="input.context",
        )
    return RLMInput(params=params, context=context, context_bytes=size)


def read_context(service: StorageService, spec: SourceSpec, max_bytes: int) -> Any:
    """Read an RLM task's context from storage, whole.

    Args:
        service: The storage service.
        spec: The source (a format of :data:`CONTEXT_FORMATS`).
        max_bytes: The largest span read.

    Returns:
        ``lines``: a list of strings; ``bytes``: one string (UTF-8, undecodable bytes
        replaced); ``int64`` / ``float64``: a list of numbers.

    Raises:
        InvalidInput: the file is missing, larger than ``max_bytes``, or the range is bad.
        Forbidden: the key would leave the connector's root.
    """
    ranges = split_source(service, spec, 1)
    if not ranges:
        return "" if spec.format == "bytes" else []
    start, end = ranges[0][0], ranges[-1][1]
    if end - start > max_bytes:
        raise InvalidInput(
            f"the context file is {end - start:,} bytes; at most {max_bytes:,} are allowed "
            "(RLM_RLM__MAX_CONTEXT_BYTES)",
            {"maxContextBytes": max_bytes},
            field="input.source",
        )
    chunk = read_source_chunk(service, spec, start, end)
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk).decode("utf-8", errors="replace")
    if isinstance(chunk, list):
        return chunk
    return chunk.tolist()

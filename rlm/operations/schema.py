"""What a task's ``input`` may be, as JSON Schema: one branch per operation a server offers.

The API document describes ``ExecuteRequest.input`` with :func:`input_schema`, so a client
(or a fuzzer) learns exactly what the server accepts: the operation names, each operation's
``params``, which of ``items``, ``text`` and ``source`` it takes and what its items are.
Operations declare their part in class attributes (:attr:`Operation.params_schema`,
:attr:`Operation.items_schema`); the helpers here build them.

Two things JSON Schema cannot say are named by formats instead: an expression of the
small language of ``filter``, ``map`` (over ``x``) and ``pairs`` (over ``a``, ``b``)
(``rlm-expression``, ``rlm-pair-expression``), and a pattern of ``grep``'s regular
expressions (``rlm-regex``).

Numbers in ``items`` and in numeric parameters are JSON numbers within ±2**53 (exact in every
JSON implementation); the HTTP API refuses others, so no arithmetic of a numeric operation can
overflow a float.

Example:
    >>> from rlm.operations.registry import default_registry
    >>> schema = input_schema(default_registry(), SchemaContext(connectors=["local"]))
    >>> sorted({b["properties"]["operation"]["const"] for b in schema["anyOf"]})[:3]
    ['concat', 'count', 'count_by']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm.operations.base import Operation
    from rlm.operations.registry import OperationRegistry

__all__ = [
    "ANY_OBJECT",
    "MAX_WIRE_NUMBER",
    "NO_PARAMS",
    "NUMBER",
    "SchemaContext",
    "branch",
    "flag",
    "input_schema",
    "integer",
    "nullable",
    "params",
    "string",
]

#: The largest magnitude of a number in ``items`` or a numeric parameter over the wire.
MAX_WIRE_NUMBER = 2**53

Schema = dict[str, Any]

NUMBER: Schema = {"type": "number", "minimum": -MAX_WIRE_NUMBER, "maximum": MAX_WIRE_NUMBER}
"""A JSON number within ±2**53."""

ANY_OBJECT: Schema = {"type": "object"}
"""Any parameters (an operation that validates its own, undescribed)."""


def nullable(schema: Schema) -> Schema:
    """``schema`` or ``null`` (an optional parameter given as ``null`` counts as absent)."""
    return {"anyOf": [schema, {"type": "null"}]}


def integer(lo: int, hi: int) -> Schema:
    """An integer in ``[lo, hi]``."""
    return {"type": "integer", "minimum": lo, "maximum": hi}


def string(max_len: int = 1000, *, min_len: int = 0, **extra: Any) -> Schema:
    """A string of at most ``max_len`` characters (``extra``: ``format``, ``enum``...)."""
    schema: Schema = {"type": "string", "maxLength": max_len, **extra}
    if min_len:
        schema["minLength"] = min_len
    return schema


def flag() -> Schema:
    """An optional boolean."""
    return nullable({"type": "boolean"})


def params(required: Mapping[str, Schema] | None = None, **optional: Schema) -> Schema:
    """The schema of ``input.params``: these names only, ``required`` ones non-null."""
    required = dict(required or {})
    properties = {**required, **optional}
    schema: Schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = sorted(required)
    return schema


NO_PARAMS: Schema = params()
"""No parameters at all."""


@dataclass(frozen=True)
class SchemaContext:
    """What the schema of an input depends on beyond the operations themselves.

    Attributes:
        connectors: The storage connectors a source may name.
        lm_models: The language-model providers configured, each with the models it offers;
            the first is the one a request naming none goes to. Empty: LM operations cannot
            run, and are not offered.
    """

    connectors: Sequence[str] = ()
    lm_models: Mapping[str, Sequence[str]] = field(default_factory=dict)


def _items_for(op: Operation) -> Schema:
    if op.items_schema is not None:
        return dict(op.items_schema)
    item: Schema = {
        "numbers": NUMBER,
        "text": {"type": "string"},
        "any": {},
    }[op.input_kind]
    return {"type": "array", "items": item}


def _source(op: Operation, connectors: Sequence[str]) -> Schema | None:
    """The ``input.source`` an operation reads, or ``None`` when it takes items only."""
    from rlm.inputs import SOURCE_FORMATS

    if op.needs_offset:
        return None
    offset = {"type": "integer", "minimum": 0, "maximum": 2**53}
    connector: Schema = {"type": "string", "minLength": 1, "maxLength": 64}
    if connectors:
        connector = {"type": "string", "enum": list(connectors)}
    formats = sorted(SOURCE_FORMATS[op.input_kind])
    ranged = [f for f in formats if f != "arrow"]
    variants: list[Schema] = []
    base = {"connector": connector, "key": {"type": "string", "minLength": 1, "maxLength": 4096}}
    if ranged:
        variants.append(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["connector", "key", "format"],
                "properties": {
                    **base,
                    "format": {"enum": ranged},
                    "start": nullable(offset),
                    "end": nullable({**offset, "minimum": 1}),
                },
            }
        )
    if "arrow" in formats:
        variants.append(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["connector", "key", "format"],
                "properties": {
                    **base,
                    "format": {"const": "arrow"},
                    "start": {"type": "null"},
                    "end": {"type": "null"},
                },
            }
        )
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def branch(
    op: Operation,
    context: SchemaContext,
    *,
    params_schema: Schema | None = None,
    items_schema: Schema | None = None,
) -> Schema:
    """The ``input`` of one operation: its name, params, and one of items, text or source.

    Args:
        op: The operation.
        context: The connectors (and LM providers) of the server.
        params_schema: Instead of the operation's own.
        items_schema: Instead of the operation's own.
    """
    given: dict[str, Schema] = {
        "items": items_schema if items_schema is not None else _items_for(op)
    }
    if op.input_kind != "numbers":
        given["text"] = {"type": "string"}  # split into lines: strings for every other kind
    source = _source(op, context.connectors)
    if source is not None:
        given["source"] = source
    taken = params_schema if params_schema is not None else op.params_schema
    # Absent or null params mean {}: only an operation that needs some must be given them.
    needed = bool(taken.get("required")) or "anyOf" in taken
    schema: Schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["operation", "params"] if needed else ["operation"],
        "properties": {
            "operation": {"const": op.name},
            "params": taken if needed else nullable(taken),
            **given,
        },
    }
    if len(given) == 1:
        schema["required"].append(next(iter(given)))
    else:
        schema["oneOf"] = [{"required": [name]} for name in given]
    return schema


def input_schema(registry: OperationRegistry, context: SchemaContext | None = None) -> Schema:
    """``ExecuteRequest.input`` for the operations of ``registry``.

    Args:
        registry: The operations a request may name.
        context: The server's connectors and LM providers (none by default).

    Returns:
        ``{"anyOf": [...]}``, one or more branches per operation (their ``operation`` consts
        tell them apart).
    """
    context = context or SchemaContext()
    branches: list[Schema] = []
    for name in sorted(registry.names()):
        branches.extend(registry.get(name).input_schemas(context))
    return {
        "description": "The task's input: an operation, its params, and its items (or text, "
        "or a file in storage).",
        "anyOf": branches,
    }

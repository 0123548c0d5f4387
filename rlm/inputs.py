"""Reading a task's ``input``: which operation, with which parameters, over which items.

``input`` is ``{"items": [...], "operation": "sum", "params": {...}}``. ``text`` (a string,
split into lines) may stand in for ``items``, and so may ``source``: a file in storage
(``{connector, key, start?, end?, format}``) that each leaf reads its own range of. From
Python, ``items`` may be a numpy or Arrow array; numeric arrays are used as they are, without a
conversion to a list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from rlm.errors import InvalidInput
from rlm.models.base import parse_model
from rlm.models.storage import SourceSpec
from rlm.operations.base import InputKind, Operation
from rlm.operations.registry import OperationRegistry
from rlm.operations.schema import MAX_WIRE_NUMBER

__all__ = [
    "SOURCE_FORMATS",
    "Items",
    "PreparedInput",
    "prepare_input",
    "prepare_items",
    "slice_items",
]

#: Items as operations see them: a 1-D numpy array for numbers, a list otherwise.
Items = np.ndarray[Any, Any] | list[Any]

_INPUT_KEYS = {"items", "text", "source", "operation", "params"}


@dataclass(frozen=True)
class PreparedInput:
    """A validated input: the operation, its parameters, and the items or a storage source."""

    operation: Operation
    params: Any
    items: Items
    source: SourceSpec | None = None

    @property
    def n_items(self) -> int:
        """How many items the input holds (0 for a source, whose size the engine reads)."""
        return len(self.items)


#: Which source formats each kind of operation reads.
SOURCE_FORMATS: dict[str, frozenset[str]] = {
    "numbers": frozenset({"int64", "float64"}),
    "text": frozenset({"lines"}),
    "any": frozenset({"lines", "int64", "float64", "bytes", "arrow"}),
}


def _prepare_source(raw: Any, op: Operation) -> SourceSpec:
    spec = parse_model(SourceSpec, raw, prefix="input.source")
    if spec.format not in SOURCE_FORMATS[op.input_kind]:
        raise InvalidInput(
            f"operation {op.name!r} cannot read a {spec.format!r} source",
            {"formats": sorted(SOURCE_FORMATS[op.input_kind])},
            field="input.source.format",
        )
    if getattr(op, "needs_offset", False):
        raise InvalidInput(
            f"operation {op.name!r} reports item positions and needs items, not a source",
            field="input.source",
        )
    return spec


def _numeric_array(items: Any, wire: bool = False) -> np.ndarray[Any, Any]:
    if isinstance(items, pa.ChunkedArray):
        items = items.combine_chunks()
    if isinstance(items, pa.Array):
        if not (pa.types.is_integer(items.type) or pa.types.is_floating(items.type)):
            raise InvalidInput(
                f"this operation needs numbers; the Arrow array holds {items.type}",
                field="input.items",
            )
        if items.null_count:
            raise InvalidInput("the items hold nulls", field="input.items")
        # Zero-copy where Arrow's layout allows it (no nulls, primitive type).
        items = items.to_numpy(zero_copy_only=False)
    if isinstance(items, np.ndarray):
        if items.ndim != 1:
            raise InvalidInput("items must be one-dimensional", field="input.items")
        if items.dtype.kind in "iu" or items.dtype.kind == "f":
            return items
        if items.dtype.kind == "b":
            return items.astype(np.int64)
        raise InvalidInput(
            f"this operation needs numbers; the array holds {items.dtype}", field="input.items"
        )
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise InvalidInput("items must be a list", field="input.items")
    is_int = True
    for i, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise InvalidInput(
                f"this operation needs numbers; item {i} is {type(x).__name__}",
                {"index": i},
                field=f"input.items[{i}]",
            )
        if wire and not -MAX_WIRE_NUMBER <= x <= MAX_WIRE_NUMBER:
            raise InvalidInput(
                f"numbers over the API are within ±2**53; item {i} is not",
                {"index": i, "max": MAX_WIRE_NUMBER},
                field=f"input.items[{i}]",
            )
        if not isinstance(x, int):
            is_int = False
    if is_int:
        try:
            return np.asarray(items, dtype=np.int64)
        except OverflowError:
            pass  # beyond int64: float64 keeps the magnitude
    try:
        arr = np.asarray(items, dtype=np.float64)
    except OverflowError:
        raise InvalidInput("items must be finite numbers", field="input.items") from None
    if not np.all(np.isfinite(arr)):
        raise InvalidInput("items must be finite numbers", field="input.items")
    return arr


def prepare_items(items: Any, kind: InputKind, *, wire: bool = False) -> Items:
    """Shape ``items`` the way an operation of ``kind`` expects.

    Args:
        items: The items.
        kind: The operation's input kind.
        wire: The items came over the API: numbers for a numeric operation must be within
            ±2**53 (as the API document says), so its arithmetic cannot overflow.

    Raises:
        InvalidInput: the items do not fit the operation.
    """
    if kind == "numbers":
        return _numeric_array(items, wire)
    if isinstance(items, pa.ChunkedArray | pa.Array):
        items = items.to_pylist()
    elif isinstance(items, np.ndarray):
        items = items.tolist()
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise InvalidInput("items must be a list", field="input.items")
    out = list(items)
    if kind == "text":
        for i, x in enumerate(out):
            if not isinstance(x, str):
                raise InvalidInput(
                    f"this operation needs strings; item {i} is {type(x).__name__}",
                    {"index": i},
                    field=f"input.items[{i}]",
                )
    return out


def prepare_input(raw: Any, registry: OperationRegistry, *, wire: bool = False) -> PreparedInput:
    """Validate a task's ``input`` against the registry.

    Args:
        raw: The request's ``input``.
        registry: Operations that may be named.
        wire: It came over the API (see :func:`prepare_items`).

    Raises:
        InvalidInput: naming the bad field (``input.operation``, ``input.items``...).
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            'input must be an object like {"items": [...], "operation": "sum"}', field="input"
        )
    unknown = set(raw) - _INPUT_KEYS
    if unknown:
        raise InvalidInput(
            f"unknown input field {sorted(unknown)[0]!r}", field=f"input.{sorted(unknown)[0]}"
        )
    if "operation" not in raw:
        raise InvalidInput("input.operation is required", field="input.operation")
    op = registry.get(raw["operation"])
    params_raw = raw.get("params")
    if params_raw is None:
        params_raw = {}
    if not isinstance(params_raw, Mapping):
        raise InvalidInput("params must be an object", field="input.params")
    params = op.parse_params(params_raw)
    given = [k for k in ("items", "text", "source") if k in raw]
    if len(given) != 1:
        raise InvalidInput(
            "give exactly one of input.items, input.text or input.source", field="input.items"
        )
    if given == ["source"]:
        return PreparedInput(op, params, [], _prepare_source(raw["source"], op))
    has_text = given == ["text"]
    if has_text:
        text = raw["text"]
        if not isinstance(text, str):
            raise InvalidInput("text must be a string", field="input.text")
        items: Any = text.splitlines()
    else:
        items = raw["items"]
    return PreparedInput(op, params, prepare_items(items, op.input_kind, wire=wire))


def slice_items(items: Items, start: int, end: int) -> Items:
    """Items ``[start, end)``: a view for numpy arrays, a list slice otherwise."""
    return items[start:end]

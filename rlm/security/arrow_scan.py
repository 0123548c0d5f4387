"""The text in an Arrow IPC source: its string and binary values, as a source scan reads them.

An operation given a ``pyarrow.Table`` can read any string in it, so the scan reads what the
leaves get: the record batches of the task's ranges, one at a time, and of each only its
columns that hold text (``string``, ``large_string``, ``string_view``, a dictionary of them,
or strings nested in lists, structs and maps), or bytes (``binary``, ``large_binary``,
``binary_view``, ``fixed_size_binary``: decoded as UTF-8 with bad bytes replaced, which is
how an LM operation's prompt shows them, :func:`rlm.operations.lm._line`). The reader asks
pyarrow for those columns alone (``IpcReadOptions.included_fields``), so the bytes of the
other columns are never fetched; every read goes through a
:class:`~rlm.storage.range_file.RangeFile`, whose byte budget bounds the whole scan.

Each value is one text, named ``input.source.arrow.<column>[<row>]`` (``row`` counts from the
first batch read, the file's first: an ``arrow`` source is read whole); a nested value's
strings are one text, one per line. Nulls and empty strings are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from rlm.models.storage import SourceSpec
from rlm.storage.range_file import RangeFile
from rlm.storage.reasons import Reason, invalid

__all__ = ["arrow_texts", "holds_text"]

# Rows turned into Python strings at a time: a batch can be large, the scan stops early.
_ROWS = 4096


def _is_text(type_: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_string_view(type_)
        or pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_binary_view(type_)
        or pa.types.is_fixed_size_binary(type_)
    )


def _decoded(value: Any) -> Any:
    """A string as it is; bytes as the UTF-8 text they hold (bad bytes replaced)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def holds_text(type_: pa.DataType) -> bool:
    """Whether values of ``type_`` are, or hold, strings or bytes."""
    if _is_text(type_):
        return True
    if pa.types.is_dictionary(type_):
        return holds_text(type_.value_type)
    if pa.types.is_map(type_):
        return holds_text(type_.key_type) or holds_text(type_.item_type)
    if (
        pa.types.is_list(type_)
        or pa.types.is_large_list(type_)
        or pa.types.is_fixed_size_list(type_)
        or pa.types.is_list_view(type_)
        or pa.types.is_large_list_view(type_)
    ):
        return holds_text(type_.value_type)
    if pa.types.is_struct(type_):
        return any(holds_text(type_.field(i).type) for i in range(type_.num_fields))
    return False


def _strings(value: Any) -> Iterator[str]:
    """The strings (and bytes, decoded) inside a nested value as ``to_pylist`` gives it."""
    if isinstance(value, str | bytes):
        yield _decoded(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _column_texts(column: pa.Array, name: str, row0: int) -> Iterator[tuple[str, str]]:
    type_ = column.type
    direct = _is_text(type_) or (pa.types.is_dictionary(type_) and _is_text(type_.value_type))
    for at in range(0, len(column), _ROWS):
        for j, value in enumerate(column.slice(at, _ROWS).to_pylist()):
            text = _decoded(value) if direct else "\n".join(_strings(value))
            if isinstance(text, str) and text:
                yield f"input.source.arrow.{name}[{row0 + at + j}]", text


def _failed(file: RangeFile, err: Exception, what: str, spec: SourceSpec) -> Exception | None:
    """The error to raise for a failed read (``None``: the budget ran out, stop quietly)."""
    if file.exhausted:
        return None
    if file.failure is not None:
        return file.failure  # the storage's own error (a missing object, a refused key)
    return invalid(Reason.INVALID_FORMAT, f"{spec.key!r} {what}: {err}", field="source")


def arrow_texts(
    file: RangeFile, spec: SourceSpec, first: int, end: int
) -> Iterator[tuple[str, str]]:
    """The string values of record batches ``[first, end)``, read lazily, batch by batch.

    Args:
        file: The source's object (its budget bounds every read; when it runs out the texts
            end early and ``file.exhausted`` says so).
        spec: The source (named in errors).
        first: The first record batch.
        end: One past the last record batch.

    Yields:
        ``(field, text)`` pairs.

    Raises:
        InvalidInput: the file, or one of its batches, is not valid Arrow.
    """
    source = pa.PythonFile(file, mode="r")
    try:
        schema = pa.ipc.open_file(source).schema
        fields = [i for i, f in enumerate(schema) if holds_text(f.type)]
        if not fields:
            return
        options = pa.ipc.IpcReadOptions(included_fields=fields)
        reader = pa.ipc.open_file(source, options=options)
    except (pa.ArrowInvalid, OSError) as err:
        error = _failed(file, err, "is not an Arrow IPC file", spec)
        if error is None:
            return
        raise error from None
    row0 = 0
    for index in range(first, end):
        try:
            batch = reader.get_batch(index)
        except (pa.ArrowInvalid, OSError) as err:
            error = _failed(file, err, f"record batch {index} is not valid Arrow", spec)
            if error is None:
                return
            raise error from None
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            yield from _column_texts(column, name, row0)
        row0 += batch.num_rows

"""Files in storage as task inputs: split on the driver, read range by range in the leaves.

A task's ``input.source`` (:class:`~rlm.models.storage.SourceSpec`) names a file and a
format. The planner calls :func:`split_source` on the driver, which returns one range per
leaf without reading the file (``lines`` reads a small window around each cut to find a
line break); each leaf then calls :func:`read_source_chunk` for its own range only.

Formats:

* ``bytes``: raw bytes, cut anywhere.
* ``int64`` / ``float64``: little-endian 8-byte numbers, cut on 8-byte boundaries; a chunk
  is a read-only numpy array, a zero-copy view of the memory map on local connectors.
* ``lines``: UTF-8 text (undecodable bytes replaced), cut after a ``\\n``; a line belongs to
  the range it starts in, so adjacent ranges never share or lose a line.
* ``arrow``: an Arrow IPC file; ranges are record-batch indices ``[first, end)`` and a chunk
  is a ``pyarrow.Table`` (zero-copy over the memory map on local connectors).

Chunk reads are not subject to ``max_read_bytes`` (that caps one HTTP response): their size
is the planner's choice.
"""

from __future__ import annotations

import itertools
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from rlm.models.storage import SourceFormat, SourceSpec
from rlm.storage.ranges import ByteRange, clamp_range
from rlm.storage.reasons import Reason, invalid
from rlm.storage.service import StorageService

__all__ = [
    "DEFAULT_LINE_WINDOW",
    "SourceChunk",
    "SourceFormat",
    "SourceSpec",
    "read_source_chunk",
    "split_source",
]

DEFAULT_LINE_WINDOW = 64 * 1024
"""Bytes read at a time while looking for the line break after a cut."""

SourceChunk: TypeAlias = np.ndarray[Any, Any] | list[str] | bytes | pa.Table
"""What a leaf gets: a numpy array, a list of lines, bytes, or a pyarrow Table."""

_ITEM_DTYPES: dict[str, np.dtype[Any]] = {
    "int64": np.dtype("<i8"),
    "float64": np.dtype("<f8"),
}
_ITEM_BYTES = 8


def _even(lo: int, hi: int, parts: int, step: int) -> list[tuple[int, int]]:
    """Cut ``[lo, hi)`` into at most ``parts`` near-equal ranges on ``step`` boundaries."""
    items = (hi - lo) // step
    count = min(parts, items)
    if count <= 0:
        return []
    bounds = [lo + step * ((items * i) // count) for i in range(count + 1)]
    return list(itertools.pairwise(bounds))


def _span(service: StorageService, spec: SourceSpec) -> tuple[ByteRange | None, int]:
    """The spec's byte range clamped to the object (``None`` for an empty object)."""
    size = service.size(spec.connector, spec.key)
    if size == 0 and spec.start is None:
        return None, 0
    start = spec.start or 0
    end = spec.end if spec.end is not None else max(size, start + 1)
    return clamp_range(ByteRange(start, end), size), size


def _check_items(spec: SourceSpec, start: int, end: int) -> None:
    if start % _ITEM_BYTES or (end - start) % _ITEM_BYTES:
        raise invalid(
            Reason.MISALIGNED,
            f"{spec.format} data needs a byte range on 8-byte boundaries, got [{start}, {end})",
            field="source",
            start=start,
            end=end,
        )


class _LineStarts:
    """Finds the first line start at or after an offset, reading small windows only."""

    def __init__(
        self, service: StorageService, spec: SourceSpec, size: int, window: int, limit: int
    ) -> None:
        self._service = service
        self._spec = spec
        self._size = size
        self._window = window
        self._limit = limit

    def at_or_after(self, pos: int) -> int:
        if pos <= 0:
            return 0
        if pos >= self._size:
            return self._size
        at = pos - 1  # A line starts at pos when the byte before it is a line break.
        while at < self._size:
            if at - pos > self._limit:
                raise invalid(
                    Reason.INVALID_FORMAT,
                    f"no line break within {self._limit} bytes after offset {pos}",
                    field="source",
                    offset=pos,
                )
            got = self._service.read(
                self._spec.connector,
                self._spec.key,
                at,
                min(at + self._window, self._size),
                max_bytes=self._window,
            )
            found = bytes(got.data).find(b"\n")
            if found >= 0:
                return at + found + 1
            if not got.data:
                break
            at += len(got.data)
        return self._size


def split_source(
    service: StorageService,
    spec: SourceSpec,
    parts: int,
    *,
    window: int = DEFAULT_LINE_WINDOW,
    max_line_bytes: int | None = None,
) -> list[tuple[int, int]]:
    """Cut a source into at most ``parts`` ranges, one per leaf, without reading it whole.

    Args:
        service: The storage service.
        spec: The source.
        parts: How many ranges are wanted (fewer come back when there are fewer items).
        window: For ``lines``: bytes read at a time while looking for a line break.
        max_line_bytes: For ``lines``: the longest line looked through before giving up
            (default ``settings.max_read_bytes``).

    Returns:
        Ranges in order, covering the source exactly: byte offsets ``[start, end)``, or
        record-batch indices for ``arrow``. Empty for an empty object.

    Raises:
        InvalidInput: a bad source (missing object, misaligned numbers, not an Arrow IPC
            file, a line longer than ``max_line_bytes``).
        Forbidden: the key would leave the connector's root.
        ValueError: ``parts < 1``.
    """
    if parts < 1:
        raise ValueError("parts must be >= 1")
    if spec.format == "arrow":
        reader = _ipc_reader(service, spec)
        return _even(0, reader.num_record_batches, parts, 1)
    span, size = _span(service, spec)
    if span is None:
        return []
    if spec.format in _ITEM_DTYPES:
        _check_items(spec, span.start, span.end)
        return _even(span.start, span.end, parts, _ITEM_BYTES)
    if spec.format == "bytes":
        return _even(span.start, span.end, parts, 1)
    limit = service.settings.max_read_bytes if max_line_bytes is None else max_line_bytes
    starts = _LineStarts(service, spec, size, window, limit)
    lo = starts.at_or_after(span.start)
    hi = starts.at_or_after(span.end)
    cuts = [lo]
    for i in range(1, parts):
        cut = span.start + (span.length * i) // parts
        # Cuts only grow and no line starts between the previous cut and cuts[-1], so a cut
        # at or before cuts[-1] lands on it: no need to read that window again.
        found = cuts[-1] if cut <= cuts[-1] else starts.at_or_after(cut)
        cuts.append(min(found, hi))
    cuts.append(hi)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _ipc_reader(service: StorageService, spec: SourceSpec) -> Any:
    source = service.open_input_file(spec.connector, spec.key)
    try:
        return pa.ipc.open_file(source)
    except (pa.ArrowInvalid, OSError) as err:
        raise invalid(
            Reason.INVALID_FORMAT,
            f"{spec.key!r} is not an Arrow IPC file: {err}",
            field="source",
        ) from None


def _lines(data: memoryview | bytes) -> list[str]:
    text = str(data, "utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_source_chunk(
    service: StorageService,
    spec: SourceSpec,
    start: int,
    end: int,
    *,
    method: str = "auto",
) -> SourceChunk:
    """Read one leaf's range of a source (a range from :func:`split_source`).

    Args:
        service: The storage service (the leaf's own).
        spec: The source.
        start: First byte (or record batch for ``arrow``).
        end: One past the last byte (or record batch).
        method: The read method (``auto``: ``mmap`` locally, so numbers are zero-copy).

    Returns:
        ``int64`` / ``float64``: a read-only 1-D numpy array (a view of the map for
        ``mmap``); ``lines``: the lines, without their line breaks; ``bytes``: the bytes;
        ``arrow``: a ``pyarrow.Table`` of the batches.

    Raises:
        InvalidInput: a bad range or source.
        Forbidden: the key would leave the connector's root.
    """
    if spec.format == "arrow":
        reader = _ipc_reader(service, spec)
        count = reader.num_record_batches
        if not 0 <= start < end <= count:
            raise invalid(
                Reason.BAD_RANGE,
                f"record batches [{start}, {end}) are not within [0, {count})",
                field="source",
                start=start,
                end=end,
                batches=count,
            )
        batches = [reader.get_batch(i) for i in range(start, end)]
        return pa.Table.from_batches(batches, schema=reader.schema)
    dtype = _ITEM_DTYPES.get(spec.format)
    if dtype is not None:
        _check_items(spec, start, end)
    got = service.read(spec.connector, spec.key, start, end, method, max_bytes=max(end - start, 1))
    if dtype is not None:
        _check_items(spec, got.start, got.end)
        return np.frombuffer(got.data, dtype=dtype)
    if spec.format == "lines":
        return _lines(got.data)
    return bytes(got.data)

"""Byte ranges: validated and clamped before any backend sees them.

Backends disagree at the edges (s3fs returns the whole object for an empty range, past-EOF
ranges differ between s3fs, gcsfs and the local disk), so no backend is ever asked for a
range that has not passed :func:`validate_range` and then :func:`clamp_range`.

Semantics: ``start`` inclusive, ``end`` exclusive, ``0 <= start < end``, at most
``max_bytes`` asked for; ``end`` is clamped to the object's size; a ``start`` at or past
the end of the object is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlm.storage.reasons import Reason, invalid

__all__ = ["ByteRange", "clamp_range", "split_range", "validate_range"]


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A half-open byte range ``[start, end)``.

    Attributes:
        start: First byte (inclusive).
        end: One past the last byte (exclusive).
    """

    start: int
    end: int

    @property
    def length(self) -> int:
        """How many bytes the range covers."""
        return self.end - self.start


def _is_int(value: object) -> bool:
    # bool is an int subclass; True as an offset is a client bug, not 1.
    return isinstance(value, int) and not isinstance(value, bool)


def validate_range(start: int, end: int, *, max_bytes: int) -> ByteRange:
    """Check a requested range before the object's size is known.

    Args:
        start: First byte (inclusive), ``>= 0``.
        end: One past the last byte (exclusive), ``> start``.
        max_bytes: The largest length that may be asked for.

    Returns:
        The range, unclamped.

    Raises:
        InvalidInput: ``reason`` ``bad_range`` or ``range_too_large``.
    """
    if not _is_int(start) or not _is_int(end):
        raise invalid(Reason.BAD_RANGE, "start and end must be integers", field="start")
    if start < 0:
        raise invalid(Reason.BAD_RANGE, f"start must be >= 0, got {start}", field="start")
    if end <= start:
        raise invalid(
            Reason.BAD_RANGE,
            f"end must be greater than start, got start={start} end={end}",
            field="end",
            start=start,
            end=end,
        )
    if end - start > max_bytes:
        raise invalid(
            Reason.RANGE_TOO_LARGE,
            f"a read may cover at most {max_bytes} bytes, asked for {end - start}",
            field="end",
            maxBytes=max_bytes,
            length=end - start,
        )
    return ByteRange(start, end)


def clamp_range(rng: ByteRange, size: int) -> ByteRange:
    """Clamp a validated range to an object of ``size`` bytes.

    Args:
        rng: A range that passed :func:`validate_range`.
        size: The object's size in bytes.

    Returns:
        ``[start, min(end, size))``, never empty.

    Raises:
        InvalidInput: ``reason`` ``start_past_eof`` when ``start >= size`` (this includes
            every range of an empty object).
    """
    if rng.start >= size:
        raise invalid(
            Reason.START_PAST_EOF,
            f"start {rng.start} is at or past the end of the object ({size} bytes)",
            field="start",
            start=rng.start,
            size=size,
        )
    if rng.end <= size:
        return rng
    return ByteRange(rng.start, size)


def split_range(rng: ByteRange, part_bytes: int) -> list[ByteRange]:
    """Cut a range into consecutive parts of at most ``part_bytes`` bytes.

    Args:
        rng: A non-empty range.
        part_bytes: The largest part, ``>= 1``.

    Returns:
        Parts in order that cover ``rng`` exactly; one part when it is small enough.
    """
    if part_bytes < 1:
        raise ValueError("part_bytes must be >= 1")
    return [
        ByteRange(lo, min(lo + part_bytes, rng.end)) for lo in range(rng.start, rng.end, part_bytes)
    ]

"""Numeric reductions: sum, product, min, max, mean, count, variance.

Items arrive as a 1-D numpy array (``input_kind = "numbers"``). Outputs are plain Python
numbers: ``int`` for integer input to sum/product/min/max and for count, ``float`` for mean and
variance and for float input.

Exactness is what makes these monoids tree-shape independent:

- Integer sums, sums of squares and products are exact Python ints. numpy is used while a
  bound proves int64 cannot overflow; past it the work moves to Python ints.
- Float sums are exact too: every float is ``m * 2**e`` with a 53-bit integer ``m``, so a sum
  (or a sum of squares) is an integer multiple of ``2**-1126`` (``2**-2252``). Leaves bin the
  mantissas by exponent with ``np.bincount`` in blocks small enough that every bin total is an
  exact float, and the partial is that Python int. ``sum``, ``mean`` and ``variance`` are then
  *correctly rounded* and identical for every tree — no ``(n, mean, M2)`` rounding drift.
- Float ``product`` cannot be exact cheaply; its partial is ``(mantissa, exponent)`` so it
  never overflows midway, and trees agree to within a few ulps.

Example:
    >>> import numpy as np
    >>> op = Variance()
    >>> parts = [op.leaf(np.array([1, 2]), {}), op.leaf(np.array([3, 4]), {})]
    >>> op.finish(op.combine(parts, {}), {})
    1.25
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rlm.errors import InvalidInput
from rlm.operations.base import Operation
from rlm.operations.schema import NUMBER

__all__ = [
    "MAX_PRODUCT_BITS",
    "Count",
    "ExactSum",
    "Max",
    "Mean",
    "Min",
    "Product",
    "Sum",
    "Variance",
]

#: The largest integer ``product`` returned, in bits: 14,000 bits is about 4,200 decimal
#: digits, under Python's default limit (4,300) for turning an int into text or JSON.
MAX_PRODUCT_BITS = 14_000

_I64_MAX = (1 << 63) - 1
_ISQRT_I64_MAX = math.isqrt(_I64_MAX)
# A finite float64 is m * 2**(e - 53) with |m| < 2**53 and e - 53 >= -1126 (subnormals), so
# bin k = e - 53 + 1126 holds values that are multiples of 2**(k - 1126); k < 2098.
_K0 = 1126
_NBINS = 2098
_CACHE_SLICE = 1 << 16  # int64 items per slice of an exact sum: 512 KiB, stays in L2
_SUM_BLOCK = 1 << 25  # 2**25 parts below 2**27 sum below 2**52: exact in float64
_SQ_BLOCK = 1 << 15  # 2**15 parts below 2**37 sum below 2**52
_FLUSH_BLOCKS = 512  # int64 bin accumulators take 512 block totals below 2**53
_M18 = (1 << 18) - 1
_M26 = (1 << 26) - 1
_MANTISSA_BLOCK = 512  # 512 factors in [0.5, 1) multiply to >= 2**-512: no underflow

Array = np.ndarray[Any, Any]


def _is_float(chunk: Array) -> bool:
    return bool(chunk.dtype.kind == "f")


def _as_int64(chunk: Array) -> Array | None:
    """``chunk`` as int64, or None when it holds uint64 values past the int64 range."""
    if chunk.dtype == np.uint64 and chunk.size and int(chunk.max()) > _I64_MAX:
        return None
    return chunk.astype(np.int64, copy=False)


def _peak(a: Array) -> int:
    # Python ints: abs() of int64's minimum would overflow in numpy.
    return max(-int(a.min()), int(a.max())) if a.size else 0


def _int_sum(chunk: Array) -> int:
    """The exact sum of an integer array.

    Works slice by slice so that the three passes each slice needs (min and max to bound its
    sum, then the sum) read it from the CPU cache: memory is read once, not three times.
    """
    a = _as_int64(chunk)
    if a is None:
        return sum(chunk.tolist())
    total = 0
    for start in range(0, a.size, _CACHE_SLICE):
        part = a[start : start + _CACHE_SLICE]
        peak = _peak(part)
        if peak == 0:
            continue
        block = max(1, _I64_MAX // peak)  # int64 min has peak 2**63: one item per block
        if block >= part.size:
            total += int(part.sum())
        else:
            total += sum(np.add.reduceat(part, np.arange(0, part.size, block)).tolist())
    return total


def _int_sum_squares(chunk: Array) -> int:
    """The exact sum of squares of an integer array."""
    a = _as_int64(chunk)
    if a is None or _peak(a) > _ISQRT_I64_MAX:
        return sum(v * v for v in chunk.tolist())
    return _int_sum(a * a)


def _decompose(chunk: Array) -> tuple[Array, Array]:
    """Integer mantissas and bin indices with ``x == m * 2**(k - 1126)`` exactly."""
    frac, exp = np.frexp(chunk.astype(np.float64, copy=False))
    mant = np.ldexp(frac, 53).astype(np.int64)
    return mant, exp.astype(np.int64) + (_K0 - 53)


def _binned_total(idx: Array, terms: Sequence[tuple[Array, int]], block: int, scale: int) -> int:
    """``sum(w[i] << (shift + scale * idx[i]))`` over every term ``(w, shift)``, exactly."""
    total = 0
    accs = [np.zeros(_NBINS, dtype=np.int64) for _ in terms]
    for count, start in enumerate(range(0, idx.size, block), start=1):
        part = slice(start, start + block)
        for acc, (weights, _) in zip(accs, terms, strict=True):
            acc += np.bincount(idx[part], weights=weights[part], minlength=_NBINS).astype(np.int64)
        if count % _FLUSH_BLOCKS == 0:
            total += _drain(accs, terms, scale)
    return total + _drain(accs, terms, scale)


def _drain(accs: list[Array], terms: Sequence[tuple[Array, int]], scale: int) -> int:
    total = 0
    for k in np.flatnonzero(np.any(np.stack(accs) != 0, axis=0)).tolist():
        value = 0
        for acc, (_, shift) in zip(accs, terms, strict=True):
            value += int(acc[k]) << shift
        total += value << (scale * k)
    for acc in accs:
        acc[:] = 0
    return total


def _float_sum_scaled(chunk: Array) -> int:
    """The exact sum of a float array, times ``2**1126``."""
    if not chunk.size:
        return 0
    mant, idx = _decompose(chunk)
    terms = [(mant >> 26, 26), (mant & _M26, 0)]
    return _binned_total(idx, terms, _SUM_BLOCK, 1)


def _float_sum_squares_scaled(chunk: Array) -> int:
    """The exact sum of squares of a float array, times ``2**2252``."""
    if not chunk.size:
        return 0
    mant, idx = _decompose(chunk)
    mant = np.abs(mant)
    # m = a*2**36 + b*2**18 + c, so m*m is five products of at most 37 bits each.
    a, b, c = mant >> 36, (mant >> 18) & _M18, mant & _M18
    terms = [(a * a, 72), (2 * a * b, 54), (2 * a * c + b * b, 36), (2 * b * c, 18), (c * c, 0)]
    return _binned_total(idx, terms, _SQ_BLOCK, 2)


def _ratio(numerator: int, denominator: int, what: str) -> float:
    """``numerator / denominator`` correctly rounded (Python's int division is)."""
    try:
        return numerator / denominator
    except OverflowError:
        raise InvalidInput(f"the {what} is too large for a 64-bit float") from None


def _empty(name: str) -> InvalidInput:
    return InvalidInput(
        f"{name} of no numbers is undefined: the input is empty", field="input.items"
    )


class _Numeric(Operation):
    input_kind = "numbers"


#: The items of an operation that has no answer for none (min, max, mean, variance).
_SOME_NUMBERS: dict[str, Any] = {"type": "array", "items": NUMBER, "minItems": 1}


class Sum(_Numeric):
    """The sum of the items: exact for integers; numpy's pairwise sum for floats.

    Float sums are as accurate as numpy's (the error is within ``n * eps * sum(|x|)``) and run
    at memory speed; the result may differ in the last bits between tree shapes. ``fsum`` is
    the correctly rounded (and shape-independent) alternative, many times slower.

    Partial: ``(is_float, total)``. Empty input sums to ``0``.
    """

    name = "sum"
    leaf_item_s = 2e-9  # numpy at memory speed: under 1 ns an item measured
    description = "Sum of the numbers (exact for integers, numpy's pairwise sum for floats)."

    def leaf(self, chunk: Array, params: Any) -> tuple[bool, int | float]:
        if _is_float(chunk):
            with np.errstate(over="ignore", invalid="ignore"):  # finish refuses a non-finite sum
                return True, float(np.sum(chunk, dtype=np.float64))
        return False, _int_sum(chunk)

    def combine(
        self, partials: Sequence[tuple[bool, int | float]], params: Any
    ) -> tuple[bool, int | float]:
        if any(p[0] for p in partials):
            return True, math.fsum(float(p[1]) for p in partials)
        return False, sum(int(p[1]) for p in partials)

    def finish(self, partial: tuple[bool, int | float], params: Any) -> int | float:
        is_float, total = partial
        if is_float and not math.isfinite(total):
            raise InvalidInput("the sum is too large for float64", field="input.items")
        return total


class ExactSum(_Numeric):
    """The sum of the items; exact for integers, correctly rounded for floats.

    Partial: ``(is_float, total)`` with ``total`` an exact int (scaled by ``2**1126`` for
    floats), so every tree shape gives the same bits. Empty input sums to ``0``.
    """

    name = "fsum"
    leaf_item_s = 60e-9  # binned float mantissas; ~40 ns an item measured
    description = "Sum of the numbers, correctly rounded (exact for integers)."

    def leaf(self, chunk: Array, params: Any) -> tuple[bool, int]:
        if _is_float(chunk):
            return True, _float_sum_scaled(chunk)
        return False, _int_sum(chunk)

    def combine(self, partials: Sequence[tuple[bool, int]], params: Any) -> tuple[bool, int]:
        return any(p[0] for p in partials), sum(p[1] for p in partials)

    def finish(self, partial: tuple[bool, int], params: Any) -> int | float:
        is_float, total = partial
        return _ratio(total, 1 << _K0, "sum") if is_float else total


class Count(_Numeric):
    """How many numbers the input holds. Partial: the count."""

    name = "count"
    leaf_item_s = 1e-9
    description = "How many numbers there are."

    def leaf(self, chunk: Array, params: Any) -> int:
        return len(chunk)

    def combine(self, partials: Sequence[int], params: Any) -> int:
        return sum(partials)


class _Extreme(_Numeric):
    _largest: ClassVar[bool] = False
    items_schema = _SOME_NUMBERS

    def leaf(self, chunk: Array, params: Any) -> int | float | None:
        if not chunk.size:
            return None
        value: int | float = (chunk.max() if self._largest else chunk.min()).item()
        return value

    def combine(self, partials: Sequence[int | float | None], params: Any) -> int | float | None:
        present = [p for p in partials if p is not None]
        if not present:
            return None
        return max(present) if self._largest else min(present)

    def finish(self, partial: int | float | None, params: Any) -> int | float:
        if partial is None:
            raise _empty(self.name)
        return partial


class Min(_Extreme):
    """The smallest number. Partial: the chunk's minimum, or None for an empty chunk.

    Raises (from ``finish``):
        InvalidInput: the input is empty.
    """

    name = "min"
    leaf_item_s = 2e-9
    description = "Smallest number."


class Max(_Extreme):
    """The largest number. Partial: the chunk's maximum, or None for an empty chunk.

    Raises (from ``finish``):
        InvalidInput: the input is empty.
    """

    name = "max"
    leaf_item_s = 2e-9
    description = "Largest number."
    _largest = True


class Mean(_Numeric):
    """The arithmetic mean, correctly rounded to a float.

    Partial: ``(is_float, n, exact scaled sum)``.

    Raises (from ``finish``):
        InvalidInput: the input is empty.
    """

    items_schema = _SOME_NUMBERS

    name = "mean"
    leaf_item_s = 35e-9  # the exact float sum; ~22 ns an item measured
    description = "Arithmetic mean (correctly rounded)."

    def leaf(self, chunk: Array, params: Any) -> tuple[bool, int, int]:
        if _is_float(chunk):
            return True, len(chunk), _float_sum_scaled(chunk)
        return False, len(chunk), _int_sum(chunk)

    def combine(
        self, partials: Sequence[tuple[bool, int, int]], params: Any
    ) -> tuple[bool, int, int]:
        return (
            any(p[0] for p in partials),
            sum(p[1] for p in partials),
            sum(p[2] for p in partials),
        )

    def finish(self, partial: tuple[bool, int, int], params: Any) -> float:
        is_float, n, total = partial
        if n == 0:
            raise _empty(self.name)
        return _ratio(total, n << _K0 if is_float else n, "mean")


class Variance(_Numeric):
    """The population variance, ``sum((x - mean)**2) / n``, correctly rounded.

    Partial: ``(is_float, n, S1, S2)`` with the exact sum and sum of squares (scaled by
    ``2**1126`` and ``2**2252`` for floats). These merge by addition, so unlike Chan's
    ``(n, mean, M2)`` update the result does not depend on the tree at all, and
    ``(n*S2 - S1**2) / n**2`` is evaluated exactly before one rounding.

    Raises (from ``finish``):
        InvalidInput: the input is empty, or the variance overflows a float.
    """

    items_schema = _SOME_NUMBERS

    name = "variance"
    leaf_item_s = 200e-9  # five binned products a float; ~140 ns an item measured
    description = "Population variance (exact partials, correctly rounded)."

    def leaf(self, chunk: Array, params: Any) -> tuple[bool, int, int, int]:
        if _is_float(chunk):
            return (
                True,
                len(chunk),
                _float_sum_scaled(chunk),
                _float_sum_squares_scaled(chunk),
            )
        return False, len(chunk), _int_sum(chunk), _int_sum_squares(chunk)

    def combine(
        self, partials: Sequence[tuple[bool, int, int, int]], params: Any
    ) -> tuple[bool, int, int, int]:
        return (
            any(p[0] for p in partials),
            sum(p[1] for p in partials),
            sum(p[2] for p in partials),
            sum(p[3] for p in partials),
        )

    def finish(self, partial: tuple[bool, int, int, int], params: Any) -> float:
        is_float, n, s1, s2 = partial
        if n == 0:
            raise _empty(self.name)
        scale = 1 << (2 * _K0) if is_float else 1
        return _ratio(n * s2 - s1 * s1, n * n * scale, "variance")


#: An integer product's partial: the exact product, or None once it needs more than
#: MAX_PRODUCT_BITS bits (zero still wins in combine, so every tree agrees).
_IntProduct = int | None


def _int_product(chunk: Array) -> _IntProduct:
    if not chunk.size:
        return 1
    if not np.all(chunk):
        return 0
    a = _as_int64(chunk)
    if a is not None and a.size * _peak(a).bit_length() <= 62:
        return int(np.prod(a))
    magnitudes = np.abs(chunk.astype(np.float64))
    if float(np.sum(np.log2(magnitudes))) > MAX_PRODUCT_BITS + 1:
        return None
    # ±1 factors only flip the sign; what is left has at most ~MAX_PRODUCT_BITS factors.
    ones = magnitudes == 1.0
    sign = -1 if int(np.count_nonzero(chunk[ones] < 0)) % 2 else 1
    product = sign * math.prod(chunk[~ones].tolist())
    return product if product.bit_length() <= MAX_PRODUCT_BITS else None


def _mantissa_product(chunk: Array) -> tuple[float, int]:
    """``(m, e)`` with ``prod(chunk) ~= m * 2**e`` and ``0.5 <= |m| < 1`` (or ``m == 0``)."""
    frac, exp = np.frexp(chunk.astype(np.float64, copy=False))
    if not np.all(frac):
        return 0.0, 0
    m, e = 1.0, int(exp.sum())
    for start in range(0, frac.size, _MANTISSA_BLOCK):
        part_m, part_e = math.frexp(float(np.prod(frac[start : start + _MANTISSA_BLOCK])))
        m, e = m * part_m, e + part_e
        m, shift = math.frexp(m)
        e += shift
    return m, e


class Product(_Numeric):
    """The product of the items; an exact Python int for integer input.

    Integer partial: ``(False, exact int | None)`` where None marks "more than
    :data:`MAX_PRODUCT_BITS` bits". Float partial: ``(True, mantissa, exponent)``, so no
    intermediate overflows. Empty input gives ``1``.

    Raises (from ``finish``):
        InvalidInput: the product is too large to return.
    """

    name = "product"
    description = "Product of the numbers (exact for integers)."

    def leaf(self, chunk: Array, params: Any) -> tuple[Any, ...]:
        if _is_float(chunk):
            return (True, *_mantissa_product(chunk))
        return False, _int_product(chunk)

    def combine(self, partials: Sequence[tuple[Any, ...]], params: Any) -> tuple[Any, ...]:
        if any(p[0] for p in partials):
            m, e = 1.0, 0
            for _, pm, pe in partials:
                m, shift = math.frexp(m * pm)
                e += pe + shift
            return (True, m, e) if m else (True, 0.0, 0)
        values: list[_IntProduct] = [p[1] for p in partials]
        if any(v == 0 for v in values):
            return False, 0
        product = 1
        for v in values:
            if v is None:
                return False, None
            product *= v
            if product.bit_length() > MAX_PRODUCT_BITS:
                return False, None
        return False, product

    def finish(self, partial: tuple[Any, ...], params: Any) -> int | float:
        if partial[0]:
            try:
                return math.ldexp(partial[1], partial[2])
            except OverflowError:
                raise InvalidInput("the product is too large for a 64-bit float") from None
        if partial[1] is None:
            raise InvalidInput(
                f"the product has more than {MAX_PRODUCT_BITS} bits; "
                "it is too large to return exactly",
                {"maxBits": MAX_PRODUCT_BITS},
            )
        value: int = partial[1]
        return value

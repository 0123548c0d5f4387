"""Numeric reductions: exact results, output types, overflow and empty input."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.execution import execute_direct, run_plan_locally
from rlm.inputs import prepare_input
from rlm.operations import default_registry, numeric
from rlm.operations.numeric import MAX_PRODUCT_BITS
from rlm.planning import plan_task

REGISTRY = default_registry()


def direct(name: str, items: Any) -> Any:
    return execute_direct(prepare_input({"items": items, "operation": name}, REGISTRY))


def tree(name: str, items: Any, leaf_size: int = 2) -> Any:
    prepared = prepare_input({"items": items, "operation": name}, REGISTRY)
    plan = plan_task("recursive", len(items), leaf_size=leaf_size, fanout=3, max_depth=8)
    return run_plan_locally(plan, prepared)


@pytest.mark.parametrize(
    ("name", "items", "expected"),
    [
        ("sum", [1, 2, 3], 6),
        ("sum", [], 0),
        ("product", [2, 3, 4], 24),
        ("product", [], 1),
        ("count", [], 0),
        ("count", [5, 5, 5], 3),
        ("min", [3, -1, 2], -1),
        ("max", [3, -1, 2], 3),
        ("mean", [1, 2, 3, 4], 2.5),
        ("variance", [1, 2, 3, 4], 1.25),
        ("variance", [7], 0.0),
        ("sum", [0.5, 0.25], 0.75),
        ("min", [0.5, -2.5], -2.5),
    ],
)
def test_known_values_and_types(name: str, items: list[Any], expected: Any) -> None:
    got = direct(name, items)
    assert got == expected
    assert type(got) is type(expected)
    assert tree(name, items) == expected


@pytest.mark.parametrize("name", ["min", "max", "mean", "variance"])
def test_undefined_on_empty_input(name: str) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        direct(name, [])
    with pytest.raises(InvalidInput, match="empty"):
        tree(name, [])


def test_integer_sum_does_not_wrap_around() -> None:
    items = [2**63 - 1] * 5 + [-(2**63)] * 2
    assert direct("sum", items) == 5 * (2**63 - 1) - 2 * 2**63
    assert tree("sum", items, leaf_size=1) == direct("sum", items)


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(1, 3 * numeric._CACHE_SLICE + 7),
    bits=st.integers(0, 63),
    seed=st.integers(0, 2**32 - 1),
)
def test_integer_sum_is_exact_across_cache_slices(size: int, bits: int, seed: int) -> None:
    # Arrays larger than a slice, with magnitudes up to int64's edges: slices whose sum fits
    # in int64 and slices that need the blocked path, and every boundary between them.
    rng = np.random.default_rng(seed)
    bound = 2**bits
    a = rng.integers(-bound, bound, size=size, dtype=np.int64, endpoint=bits < 63)
    a[rng.integers(0, size, size=min(size, 5))] = rng.choice([2**63 - 1, -(2**63), 0], size=1)
    assert direct("sum", a) == sum(a.tolist())


def test_integer_product_is_exact_past_int64() -> None:
    items = [2**40, 3**20, -7, 1, -1, 11]
    assert direct("product", items) == math.prod(items)
    assert tree("product", items, leaf_size=1) == math.prod(items)
    assert isinstance(direct("product", items), int)


def test_product_with_a_zero_is_zero_even_past_the_size_limit() -> None:
    items = [2**62] * 300 + [0]
    assert direct("product", items) == 0
    assert tree("product", items, leaf_size=7) == 0


def test_product_too_large_is_refused_in_every_tree() -> None:
    items = [2**62] * (MAX_PRODUCT_BITS // 62 + 2)
    with pytest.raises(InvalidInput, match="bits"):
        direct("product", items)
    with pytest.raises(InvalidInput, match="bits"):
        tree("product", items, leaf_size=3)


def test_float_product_does_not_overflow_midway() -> None:
    items = [1e300, 1e300, 1e-300, 1e-300, 3.0]
    assert math.isclose(direct("product", items), 3.0, rel_tol=1e-12)
    assert math.isclose(tree("product", items, leaf_size=1), 3.0, rel_tol=1e-12)
    with pytest.raises(InvalidInput, match="too large"):
        direct("product", [1e300, 1e300])


@pytest.mark.parametrize("name", ["sum", "fsum"])
def test_float_sum_overflow_is_an_error_not_infinity(name: str) -> None:
    with pytest.raises(InvalidInput, match="too large"):
        direct(name, [1.7e308, 1.7e308])


def test_unsigned_and_small_dtypes_from_python_callers() -> None:
    big = np.array([2**64 - 1, 2**63], dtype=np.uint64)
    assert direct("sum", big) == 2**64 - 1 + 2**63
    assert direct("max", big) == 2**64 - 1
    assert direct("variance", np.array([1, 2, 3, 4], dtype=np.int8)) == 1.25
    assert direct("mean", np.array([1.5, 2.5], dtype=np.float32)) == 2.0


def exact_sum(xs: list[float]) -> Fraction:
    return sum((Fraction(x) for x in xs), Fraction(0))


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e150, max_value=1e150)
float_lists = st.lists(finite | st.floats(-1.0, 1.0) | st.sampled_from([5e-324, -0.0]), min_size=1)


@settings(max_examples=60, deadline=None)
@given(xs=float_lists, leaf_size=st.integers(1, 8))
def test_float_sum_mean_variance_are_correctly_rounded(xs: list[float], leaf_size: int) -> None:
    n = len(xs)
    total = exact_sum(xs)
    mean = total / n
    variance = sum(((Fraction(x) - mean) ** 2 for x in xs), Fraction(0)) / n
    assert direct("fsum", xs) == float(total)
    assert direct("mean", xs) == float(mean)
    assert direct("variance", xs) == float(variance)
    # Exact partials: trees give the very same float, not merely a close one.
    assert tree("variance", xs, leaf_size) == float(variance)
    assert tree("fsum", xs, leaf_size) == float(total)
    # The fast sum stays within the classic bound of a floating-point summation.
    bound = 2 * len(xs) * 2.0**-52 * sum(abs(x) for x in xs)
    assert abs(tree("sum", xs, leaf_size) - float(total)) <= bound
    assert abs(direct("sum", xs) - float(total)) <= bound


@settings(max_examples=60, deadline=None)
@given(xs=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1), leaf_size=st.integers(1, 8))
def test_integer_mean_and_variance_are_correctly_rounded(xs: list[int], leaf_size: int) -> None:
    n = len(xs)
    mean = Fraction(sum(xs), n)
    variance = sum((Fraction(x) - mean) ** 2 for x in xs) / n
    assert direct("mean", xs) == float(mean)
    assert tree("variance", xs, leaf_size) == float(variance)
    assert direct("sum", xs) == sum(xs)
    assert tree("product", xs[:20], leaf_size) == math.prod(xs[:20])


@settings(max_examples=30, deadline=None)
@given(xs=float_lists)
def test_block_and_flush_paths_stay_exact(xs: list[float]) -> None:
    # Real inputs need 2**15 (squares) or 2**25 (sums) items per block; shrink the blocks so
    # small lists cross block and flush boundaries.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numeric, "_SUM_BLOCK", 2)
        mp.setattr(numeric, "_SQ_BLOCK", 3)
        mp.setattr(numeric, "_FLUSH_BLOCKS", 2)
        n = len(xs)
        mean = exact_sum(xs) / n
        variance = sum(((Fraction(x) - mean) ** 2 for x in xs), Fraction(0)) / n
        assert direct("fsum", xs) == float(exact_sum(xs))
        assert direct("variance", xs) == float(variance)


def test_large_float_input() -> None:
    rng = np.random.default_rng(7)
    xs = rng.normal(size=100_000) * np.exp(rng.normal(size=100_000) * 5)
    expected = math.fsum(xs.tolist())  # fsum is correctly rounded too
    assert direct("fsum", xs) == expected
    assert tree("fsum", xs, leaf_size=30_000) == expected
    bound = 2 * len(xs) * 2.0**-52 * float(np.abs(xs).sum())
    assert abs(tree("sum", xs, leaf_size=30_000) - expected) <= bound
    assert math.isclose(tree("variance", xs, leaf_size=30_000), float(np.var(xs)), rel_tol=1e-9)


def test_fast_sum_of_many_floats_matches_numpy() -> None:
    xs = np.random.default_rng(3).random(100_000)
    assert tree("sum", xs, 7_000) == pytest.approx(float(np.sum(xs)), rel=1e-12)
    assert direct("sum", xs) == float(np.sum(xs))

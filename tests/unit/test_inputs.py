"""Reading a task's input: operation, params and items."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from rlm.errors import InvalidInput
from rlm.inputs import prepare_input
from rlm.operations import default_registry

REG = default_registry()


def test_integers_become_int64_and_floats_float64() -> None:
    assert prepare_input({"items": [1, 2], "operation": "sum"}, REG).items.dtype == np.int64  # type: ignore[union-attr]
    assert prepare_input({"items": [1, 2.5], "operation": "sum"}, REG).items.dtype == np.float64  # type: ignore[union-attr]


def test_numpy_and_arrow_arrays_are_used_without_copy() -> None:
    arr = np.arange(100, dtype=np.float64)
    got = prepare_input({"items": arr, "operation": "sum"}, REG).items
    assert got is arr
    pa_arr = pa.array(np.arange(100, dtype=np.int64))
    got2 = prepare_input({"items": pa_arr, "operation": "sum"}, REG).items
    assert isinstance(got2, np.ndarray)
    assert np.shares_memory(got2, np.frombuffer(pa_arr.buffers()[1], dtype=np.int64))


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([1, 2], "input"),
        ({"items": [1]}, "input.operation"),
        ({"items": [1], "operation": "no_such_op"}, "input.operation"),
        ({"items": ["a", "b"], "operation": "sum"}, "input.items[0]"),
        ({"items": [1, True], "operation": "sum"}, "input.items[1]"),
        ({"items": "12", "operation": "sum"}, "input.items"),
        ({"operation": "sum"}, "input.items"),
        ({"items": [1], "text": "x", "operation": "sum"}, "input.items"),
        ({"items": [1], "operation": "sum", "params": []}, "input.params"),
        ({"items": [1], "operation": "sum", "bogus": 1}, "input.bogus"),
        ({"items": [float("nan")], "operation": "sum"}, "input.items"),
        ({"items": np.zeros((2, 2)), "operation": "sum"}, "input.items"),
        ({"items": pa.array(["a"]), "operation": "sum"}, "input.items"),
    ],
)
def test_bad_inputs_name_the_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_input(raw, REG)
    assert info.value.details["field"] == field


def test_unknown_operation_lists_what_exists() -> None:
    with pytest.raises(InvalidInput) as info:
        prepare_input({"items": [1], "operation": "nope"}, REG)
    assert "sum" in info.value.details["available"]


def test_huge_integers_fall_back_to_float() -> None:
    got = prepare_input({"items": [2**70, 1], "operation": "sum"}, REG).items
    assert got.dtype == np.float64  # type: ignore[union-attr]

"""``rlm.jsonable.dumps``: orjson's output, and the same output for what orjson refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.jsonable import dumps

#: JSON values, with the two kinds orjson refuses: integers past 64 bits and lone surrogates.
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec=None)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(value=_json, sort_keys=st.booleans(), indent=st.booleans())
def test_every_json_value_is_written_and_reads_back_the_same(
    value: Any, sort_keys: bool, indent: bool
) -> None:
    assert json.loads(dumps(value, sort_keys=sort_keys, indent=indent)) == value


@given(value=_json)
def test_where_orjson_writes_a_value_the_fallback_means_the_same(value: Any) -> None:
    try:
        fast = orjson.loads(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    except orjson.JSONEncodeError:
        return
    assert json.loads(dumps(value, sort_keys=True)) == fast


def test_big_integers_numpy_and_non_finite_floats_together() -> None:
    value = {"sum": 2**70, "mean": np.float64("nan"), "xs": np.arange(3), "inf": math.inf}
    assert json.loads(dumps(value)) == {"sum": 2**70, "mean": None, "xs": [0, 1, 2], "inf": None}


def test_a_lone_surrogate_survives_as_an_escape() -> None:
    assert dumps({"s": "\ud800"}) == b'{"s":"\\ud800"}'


def test_sorted_keys_are_canonical_on_both_paths() -> None:
    assert dumps({"b": 1, "a": 2}, sort_keys=True) == b'{"a":2,"b":1}'
    assert dumps({"b": 2**70, "a": 2}, sort_keys=True) == b'{"a":2,"b":1180591620717411303424}'


@pytest.mark.parametrize("value", [{1, 2}, {"x": 2**70, "y": object()}, {1: "not a str key"}])
def test_what_is_not_json_is_refused_with_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        dumps(value)

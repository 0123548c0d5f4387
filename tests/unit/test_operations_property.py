"""The central property: every built-in operation gives the same output whatever the tree.

For each operation, random items and parameters, random leaf sizes, fanouts and depths:
``run_plan_locally`` under recursive, parallel and sequential plans equals ``execute_direct``
(exactly for ints and strings, ``math.isclose`` for floats). Errors must agree too: when the
direct run raises ``InvalidInput``, so does every tree.

``STRATEGIES`` has one entry per built-in; an operation added to the catalogue without one makes
``test_every_builtin_has_a_strategy`` (and its own parametrised case) fail. The language-model
operations have their own properties (``test_operations_lm.py``: one reply per chunk, counts
equal across shapes with an oracle model), listed in ``LM_OPERATIONS``.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import RLMError
from rlm.execution import execute_direct, run_plan_locally
from rlm.inputs import prepare_input
from rlm.operations import default_registry
from rlm.operations.catalog import builtin_operations
from rlm.planning import plan_task

REGISTRY = default_registry()
#: Tested in ``test_operations_lm.py``: their outputs depend on a model, not only on the items.
LM_OPERATIONS = {op.name for op in builtin_operations() if op.uses_lm}
BUILTIN_NAMES = [op.name for op in builtin_operations() if not op.uses_lm]
SHAPES = ("recursive", "parallel", "sequential")

Case = tuple[list[Any], dict[str, Any]]

# --- item strategies -------------------------------------------------------------------------

int64s = st.integers(-(2**63), 2**63 - 1)
small_ints = st.integers(-50, 50)
any_floats = st.floats(allow_nan=False, allow_infinity=False)
tame_floats = st.floats(-1e6, 1e6, allow_nan=False)
number_lists = st.one_of(
    st.lists(small_ints, max_size=40),
    st.lists(int64s, max_size=25),
    st.lists(tame_floats, max_size=40),
    st.lists(any_floats, max_size=25),
    st.lists(st.one_of(small_ints, tame_floats), max_size=30),
)
words = st.text(alphabet="abcAB", max_size=4)
ordered_lists = st.one_of(
    st.lists(st.one_of(small_ints, tame_floats), max_size=30), st.lists(words, max_size=30)
)
scalars = st.sampled_from([0, 1, 2, 1.0, 2.5, -3, "a", "b", "1", "", True, False, None])
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(words, inner, max_size=2)
)
records = st.fixed_dictionaries(
    {"a": st.integers(-5, 9), "s": words}, optional={"t": st.booleans()}
)
lines = st.text(alphabet="ab1 _\tc", max_size=12)
labelled = st.fixed_dictionaries(
    {"label": st.sampled_from(["spam", "ham", "eggs"]), "text": words},
    optional={"user": st.sampled_from([1, 2, "3"]), "date": st.just("2024-01-01")},
)


def _no_params(items: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[Case]:
    return st.tuples(items, st.just({}))


def _with(
    items: st.SearchStrategy[list[Any]], params: st.SearchStrategy[dict[str, Any]]
) -> st.SearchStrategy[Case]:
    return st.tuples(items, params)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


_histogram_range = st.tuples(st.integers(-60, 40), st.integers(1, 100)).map(
    lambda t: [t[0], t[0] + t[1]]
)
_label_questions = st.one_of(
    _optional(user=st.sampled_from([1, "2", "3"])).map(
        lambda p: {**p, "question": "most_frequent"}
    ),
    _optional(user=st.sampled_from([1, "2"])).map(lambda p: {**p, "question": "least_frequent"}),
    st.sampled_from(["spam", "ham", "nope"]).map(lambda x: {"question": "count", "label": x}),
    st.tuples(st.sampled_from(["spam", "ham"]), st.sampled_from(["eggs", "ham"])).map(
        lambda t: {"question": "compare", "label": t[0], "label_b": t[1]}
    ),
    _optional(user=st.sampled_from([1, "3"])).map(
        lambda p: {**p, "question": "per_user_most_frequent"}
    ),
)

#: Floats on a 1/1024 grid within ±1e6: every order of summation is exact in float64, so the
#: fast ``sum`` must agree across shapes to the bit (its rounding bound is tested elsewhere).
grid_floats = st.integers(-(2**30), 2**30).map(lambda k: k / 1024)

STRATEGIES: dict[str, st.SearchStrategy[Case]] = {
    "sum": _no_params(
        st.one_of(
            st.lists(small_ints, max_size=40),
            st.lists(int64s, max_size=25),
            st.lists(grid_floats, max_size=40),
        )
    ),
    "fsum": _no_params(number_lists),
    "product": _no_params(number_lists),
    "min": _no_params(number_lists),
    "max": _no_params(number_lists),
    "mean": _no_params(number_lists),
    "count": _no_params(number_lists),
    "variance": _no_params(number_lists),
    "sort": _with(ordered_lists, _optional(reverse=st.booleans())),
    "distinct": _no_params(st.lists(json_values, max_size=30)),
    "top_k": _with(
        ordered_lists,
        st.fixed_dictionaries({"k": st.integers(1, 12)}, optional={"largest": st.booleans()}),
    ),
    "count_by": _no_params(st.lists(scalars, max_size=40)),
    "histogram": _with(
        number_lists,
        st.fixed_dictionaries({"bins": st.integers(1, 12), "range": _histogram_range}),
    ),
    "concat": st.one_of(
        _no_params(st.lists(json_values, max_size=20)),
        _with(st.lists(words, max_size=20), st.fixed_dictionaries({"separator": words})),
    ),
    "filter": _with(
        st.lists(records, max_size=30),
        st.sampled_from(
            [
                "x.a > 2",
                "x.a % 2 == 0 and len(x.s) < 3",
                "startswith(lower(x.s), 'a') or x.a in [1, 2, 3]",
                "not (x.a * x.a >= 16)",
            ]
        ).map(lambda w: {"where": w}),
    ),
    "map": _with(
        st.lists(records, max_size=30),
        st.sampled_from(["x.a * 2 + 1", "upper(x.s) + str(x.a)", "x.a / 3", "x.a ** 2 - x.a"]).map(
            lambda e: {"expr": e}
        ),
    ),
    "word_count": _with(st.lists(lines, max_size=30), _optional(by_word=st.booleans())),
    "line_count": _no_params(st.lists(lines, max_size=30)),
    "grep": _with(
        st.lists(lines, max_size=30),
        st.fixed_dictionaries(
            {"pattern": st.sampled_from(["a+b", "^a", "c$", r"\d", "(ab|ba)+", "[^ ]{3}", r"\bb"])},
            optional={
                "ignore_case": st.booleans(),
                "invert": st.booleans(),
                "count_only": st.booleans(),
            },
        ),
    ),
    "pairs": _with(
        st.lists(st.integers(0, 10), max_size=24),
        st.fixed_dictionaries(
            {"where": st.sampled_from(["a + b == 10", "a < b", "a == b", "a * b % 3 == 1"])},
            optional={"count_only": st.booleans()},
        ),
    ),
    "label_counts": _no_params(st.lists(labelled, max_size=40)),
    "label_stats": _with(st.lists(labelled, max_size=40), _label_questions),
}

# --- comparing outcomes ----------------------------------------------------------------------


def _outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", run()
    except RLMError as err:
        # Which item is blamed may differ by tree (a leaf versus a combine sees the clash).
        return "error", type(err).__name__


def same(a: Any, b: Any) -> bool:
    """Equal, with floats compared by ``math.isclose(rel_tol=1e-9, abs_tol=1e-9)``."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool):
            return a is b
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and type(a) is type(b)
            and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def run_every_shape(
    name: str, items: list[Any], params: dict[str, Any], leaf_size: int, fanout: int, depth: int
) -> tuple[tuple[str, Any], list[tuple[str, Any]]]:
    """The direct outcome and the outcome of each tree shape."""
    prepared = prepare_input({"items": items, "operation": name, "params": params}, REGISTRY)
    direct = _outcome(lambda: execute_direct(prepared))
    trees = []
    for shape in SHAPES:
        plan = plan_task(shape, len(items), leaf_size=leaf_size, fanout=fanout, max_depth=depth)
        trees.append(_outcome(lambda plan=plan: run_plan_locally(plan, prepared)))
    return direct, trees


def test_every_builtin_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(BUILTIN_NAMES)
    assert {"llm_map", "llm_classify", "llm_summarize"} == LM_OPERATIONS
    assert len(BUILTIN_NAMES) == len(set(BUILTIN_NAMES))


@pytest.mark.parametrize("name", BUILTIN_NAMES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_tree_shape_agrees_with_direct(name: str, data: st.DataObject) -> None:
    items, params = data.draw(STRATEGIES[name], label="case")
    leaf_size = data.draw(st.integers(1, len(items) + 1), label="leaf_size")
    fanout = data.draw(st.integers(2, 6), label="fanout")
    depth = data.draw(st.integers(0, 5), label="max_depth")
    direct, trees = run_every_shape(name, items, params, leaf_size, fanout, depth)
    for shape, got in zip(SHAPES, trees, strict=True):
        assert got[0] == direct[0], (shape, got, direct)
        assert same(got[1], direct[1]), (shape, got, direct)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_operations_params_and_partials_pickle(name: str, data: st.DataObject) -> None:
    # Operations, parsed params and partials all travel between Ray workers.
    op = REGISTRY.get(name)
    copy = pickle.loads(pickle.dumps(op))
    assert type(copy) is type(op)
    assert copy.name == name
    assert op.description
    items, params = data.draw(STRATEGIES[name], label="case")
    prepared = prepare_input({"items": items, "operation": name, "params": params}, REGISTRY)
    params_copy = pickle.loads(pickle.dumps(prepared.params))
    partial = op.leaf_at(prepared.items, 0, params_copy)
    partial_copy = pickle.loads(pickle.dumps(partial))
    direct = _outcome(lambda: execute_direct(prepared))
    got = _outcome(lambda: op.finish(partial_copy, params_copy))
    assert got[0] == direct[0]
    assert same(got[1], direct[1])

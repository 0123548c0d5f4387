"""The planner's shapes and counts."""

from __future__ import annotations

import itertools
import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.planning import Plan, leaf_size_for, plan_task


def _check_tree(plan: Plan) -> None:
    """Every plan: dependency order, children cover their parent's range exactly."""
    for node in plan.nodes:
        for c in node.children:
            assert c < node.index
            assert plan.nodes[c].parent == node.index
    assert plan.root.parent is None
    leaves = plan.leaves
    assert leaves[0].start == 0
    assert leaves[-1].end == plan.n_items
    for a, b in itertools.pairwise(leaves):
        assert a.end == b.start
    for node in plan.nodes:
        if node.kind == "combine":
            kids = [plan.nodes[c] for c in node.children]
            assert kids[0].start == node.start and kids[-1].end == node.end


def test_the_issue_example_full_binary_tree() -> None:
    plan = plan_task("recursive", 16, leaf_size=1, fanout=2)
    assert plan.agent_calls == 31
    assert plan.depth == 4
    assert len(plan.leaves) == 16
    _check_tree(plan)


@given(
    n=st.integers(0, 5000),
    leaf=st.integers(1, 600),
    fanout=st.integers(2, 9),
    depth=st.integers(0, 12),
)
def test_recursive_counts(n: int, leaf: int, fanout: int, depth: int) -> None:
    plan = plan_task(
        "recursive", n, leaf_size=leaf, fanout=fanout, max_depth=depth, max_leaves=10_000
    )
    _check_tree(plan)
    internal = [x for x in plan.nodes if x.kind == "combine"]
    assert plan.agent_calls == len(plan.leaves) + len(internal)
    assert plan.depth == max(x.depth for x in plan.leaves)
    assert plan.depth <= depth
    for node in internal:
        assert 2 <= len(node.children) <= fanout
    for x in plan.leaves:
        # A leaf is over-size only where the depth limit stopped the split.
        assert x.end - x.start <= leaf or x.depth == depth


@given(n=st.integers(0, 5000), leaf=st.integers(1, 600), depth=st.integers(0, 3))
def test_parallel_counts(n: int, leaf: int, depth: int) -> None:
    plan = plan_task("parallel", n, leaf_size=leaf, max_depth=depth, max_leaves=10_000)
    _check_tree(plan)
    chunks = max(1, math.ceil(n / leaf))
    if chunks == 1 or depth == 0:
        assert (plan.agent_calls, plan.depth) == (1, 0)
    else:
        assert (plan.agent_calls, plan.depth) == (chunks + 1, 1)


@given(n=st.integers(0, 5000), leaf=st.integers(1, 600), depth=st.integers(0, 3))
def test_sequential_counts(n: int, leaf: int, depth: int) -> None:
    plan = plan_task("sequential", n, leaf_size=leaf, max_depth=depth, max_leaves=10_000)
    _check_tree(plan)
    chunks = max(1, math.ceil(n / leaf))
    if chunks == 1 or depth == 0:
        assert (plan.agent_calls, plan.depth) == (1, 0)
    else:
        assert (plan.agent_calls, plan.depth) == (chunks, 1)
        assert [x.kind for x in plan.nodes] == ["leaf"] + ["fold"] * (chunks - 1)


def test_complexity_drives_leaf_size() -> None:
    assert leaf_size_for("linear", 65536) == 65536
    assert leaf_size_for("quadratic", 65536) == 256
    assert leaf_size_for("exponential", 65536) == 16
    n = 10_000
    linear = plan_task("recursive", n, complexity="linear")
    quadratic = plan_task("recursive", n, complexity="quadratic")
    assert len(linear.leaves) == 1
    assert len(quadratic.leaves) > len(linear.leaves)


def test_leaf_count_is_bounded_by_default() -> None:
    plan = plan_task("parallel", 10_000_000, complexity="exponential", max_leaves=100)
    assert len(plan.leaves) <= 100


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_depth": 33}, "options.maxDepth"),
        ({"fanout": 1}, "options.fanout"),
        ({"leaf_size": 0}, "options.leafSize"),
        ({"leaf_size": 1, "max_leaves": 10}, "options.leafSize"),
    ],
)
def test_out_of_range_names_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        plan_task("recursive", 100, **kwargs)  # type: ignore[arg-type]
    assert info.value.details["field"] == field
    assert info.value.status == 400


@pytest.mark.parametrize("shape", ["recursive", "parallel", "sequential"])
def test_a_plan_pickles_to_an_equal_plan(shape: str) -> None:
    # Plans travel to the core with every task (PlanNode has its own, faster, __reduce__).
    plan = plan_task(shape, 257, leaf_size=2, fanout=3)
    back = pickle.loads(pickle.dumps(plan))
    assert back == plan
    assert [type(n) for n in back.nodes] == [type(n) for n in plan.nodes]
    assert back.nodes[0].parent == plan.nodes[0].parent and back.root.children

"""The execution contract: leaf_at / fold_at carry the chunk's offset; old operations still work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlm.execution import execute_direct, run_call, run_plan_locally
from rlm.inputs import PreparedInput
from rlm.operations import FunctionOperation
from rlm.operations.positional import PositionalOperation
from rlm.planning import plan_task


class _Starts(PositionalOperation):
    """Records the offsets its leaves see."""

    name = "starts"

    def leaf_at(self, chunk: Sequence[Any], start: int, params: Any) -> list[int]:
        return [start + i for i, _ in enumerate(chunk)]

    def combine(self, partials: Sequence[list[int]], params: Any) -> list[int]:
        return [i for p in partials for i in p]


def test_every_shape_hands_leaves_their_global_offsets() -> None:
    prepared = PreparedInput(_Starts(), {}, list("abcdefghij"))
    assert execute_direct(prepared) == list(range(10))
    for shape in ("recursive", "parallel", "sequential"):
        plan = plan_task(shape, 10, leaf_size=3, fanout=2, max_depth=4)
        assert run_plan_locally(plan, prepared) == list(range(10))


def test_operations_without_offsets_are_unchanged() -> None:
    calls: list[str] = []

    def leaf(chunk: Any, params: Any) -> int:
        calls.append("leaf")
        return sum(chunk)

    op = FunctionOperation("plain", leaf=leaf, combine=lambda ps, p: sum(ps))
    assert not op.needs_offset
    assert run_call(op, "leaf", [1, 2, 3, 4], 1, 3, [], {}) == 5
    assert run_call(op, "fold", [1, 2, 3, 4], 3, 4, [5], {}) == 9
    assert calls == ["leaf", "leaf"]

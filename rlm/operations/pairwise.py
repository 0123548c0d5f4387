"""Pairwise (quadratic) work: every pair of items tested against a predicate.

``pairs`` finds the index pairs ``[i, j]`` (``i < j``, indices into the whole input) for which
``where`` holds, with ``a`` bound to item ``i`` and ``b`` to item ``j``. A leaf tests the pairs
inside its chunk; a combine tests the *cross* pairs between its children, so its partial must
carry the items themselves (and where they start) besides the pairs found so far.

Example:
    >>> op = Pairs()
    >>> p = op.parse_params({"where": "a + b == 10"})
    >>> left, right = op.leaf_at([1, 9, 5], 0, p), op.leaf_at([5, 3], 3, p)
    >>> op.finish(op.combine([left, right], p), p)
    [[0, 1], [2, 3]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from rlm.errors import InvalidInput
from rlm.operations.context import check_cancelled
from rlm.operations.expressions import EvalError, Expression, parse_expression
from rlm.operations.params import ParamReader, field_of
from rlm.operations.positional import PositionalOperation
from rlm.operations.schema import flag, params, string
from rlm.operations.values import type_name

__all__ = ["MAX_PAIRS", "Pairs", "PairsPartial"]

#: The most pairs ``pairs`` returns as a list; past it only ``count_only`` can answer.
MAX_PAIRS = 100_000


class PairsPartial(NamedTuple):
    """What a ``pairs`` node hands its parent.

    Attributes:
        start: Index (in the whole input) of ``items[0]``.
        items: The node's items, in order.
        n_pairs: Pairs found inside the node's range.
        pairs: Those pairs, or None when ``count_only`` or past :data:`MAX_PAIRS`.
    """

    start: int
    items: list[Any]
    n_pairs: int
    pairs: list[tuple[int, int]] | None


@dataclass(frozen=True)
class _PairsParams:
    where: Expression
    count_only: bool


def _holds(params: _PairsParams, env: dict[str, Any], i: int, j: int) -> bool:
    try:
        verdict = params.where.evaluate(env)
    except EvalError as err:
        raise InvalidInput(
            f"items {i} and {j}: where failed at position {err.position}: {err.message}",
            {"index": i, "otherIndex": j, "position": err.position},
            field=f"input.items[{i}]",
        ) from None
    if not isinstance(verdict, bool):
        raise InvalidInput(
            f"items {i} and {j}: where must give true or false, not {type_name(verdict)}",
            {"index": i, "otherIndex": j},
            field=f"input.items[{i}]",
        )
    return verdict


def _scan(
    params: _PairsParams,
    left: Sequence[Any],
    left_start: int,
    right: Sequence[Any] | None,
    right_start: int,
    found: list[tuple[int, int]] | None,
) -> int:
    """Test pairs inside ``left`` (``right`` None) or across ``left`` x ``right``."""
    count = 0
    env: dict[str, Any] = {"a": None, "b": None}
    for i, a in enumerate(left):
        check_cancelled()
        env["a"] = a
        gi = left_start + i
        if right is None:
            others, offset = left[i + 1 :], gi + 1
        else:
            others, offset = right, right_start
        for j, b in enumerate(others):
            env["b"] = b
            if _holds(params, env, gi, offset + j):
                count += 1
                if found is not None:
                    found.append((gi, offset + j))
        if found is not None and len(found) > MAX_PAIRS:
            # Stop growing the list (the caller sees it overfull and drops it); keep counting.
            found = None
    return count


class Pairs(PositionalOperation):
    """Index pairs ``[i, j]``, ``i < j``, whose items satisfy ``where``.

    Params:
        where (str, required): An expression over ``a`` (item ``i``) and ``b`` (item ``j``),
            e.g. ``"a + b == 10"`` or ``"a.user == b.user and a.id != b.id"``.
        count_only (bool, default false): Output the number of pairs instead.

    Output: the pairs as ``[[i, j], ...]`` sorted, or an int. Quadratic: ``n*(n-1)/2`` tests.

    Raises:
        InvalidInput: ``where`` does not parse, fails on a pair, or more than
            :data:`MAX_PAIRS` pairs would be listed (ask for ``count_only``).
    """

    name = "pairs"
    params_schema = params(
        {"where": string(10**6, format="rlm-pair-expression")}, count_only=flag()
    )
    description = "Index pairs [i, j] whose items satisfy params.where (over a and b)."

    def parse_params(self, params: Mapping[str, Any]) -> _PairsParams:
        reader = ParamReader(self.name, params, ("where", "count_only"))
        source = reader.string("where", max_len=10**6)
        where = parse_expression(source, variables=("a", "b"), field=field_of("where"))
        return _PairsParams(where, reader.flag("count_only", False))

    def leaf_at(self, chunk: Sequence[Any], start: int, params: _PairsParams) -> PairsPartial:
        items = list(chunk)
        found: list[tuple[int, int]] | None = None if params.count_only else []
        count = _scan(params, items, start, None, 0, found)
        return PairsPartial(start, items, count, _capped(found, count))

    def combine(self, partials: Sequence[PairsPartial], params: _PairsParams) -> PairsPartial:
        count = sum(p.n_pairs for p in partials)
        found: list[tuple[int, int]] | None = None
        if (
            not params.count_only
            and all(p.pairs is not None for p in partials)
            and count <= MAX_PAIRS
        ):
            found = [pair for p in partials for pair in p.pairs or ()]
        for x, left in enumerate(partials):
            for right in partials[x + 1 :]:
                count += _scan(params, left.items, left.start, right.items, right.start, found)
                if found is not None and len(found) > MAX_PAIRS:
                    found = None
        items = [item for p in partials for item in p.items]
        start = partials[0].start if partials else 0
        return PairsPartial(start, items, count, _capped(found, count))

    def finish(self, partial: PairsPartial, params: _PairsParams) -> int | list[list[int]]:
        if params.count_only:
            return partial.n_pairs
        if partial.pairs is None:
            raise InvalidInput(
                f"{partial.n_pairs} pairs match; at most {MAX_PAIRS} can be listed "
                "(set count_only to true for the count)",
                {"count": partial.n_pairs, "maxPairs": MAX_PAIRS},
                field=field_of("count_only"),
            )
        return [[i, j] for i, j in sorted(partial.pairs)]


def _capped(found: list[tuple[int, int]] | None, count: int) -> list[tuple[int, int]] | None:
    return found if found is not None and count <= MAX_PAIRS else None

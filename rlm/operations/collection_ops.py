"""Collection operations: sort, distinct, top_k, count_by, histogram, concat, filter, map.

Each is a monoid whose output does not depend on how the input is cut: partials keep items in
input order and merges are stable, so ties always resolve to the earlier item. Operations that
can blame an item (``sort`` of mixed types, ``filter`` whose expression fails) know their
chunk's offset (:class:`~rlm.operations.positional.PositionalOperation`) and name the item by
its index in the whole input.

(The module is not called ``collections`` so that it cannot shadow the standard library.)

Example:
    >>> from rlm.operations.collection_ops import TopK
    >>> op = TopK()
    >>> p = op.parse_params({"k": 2})
    >>> op.finish(op.combine([op.leaf_at([5, 1], 0, p), op.leaf_at([9, 5], 2, p)], p), p)
    [9, 5]
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlm.errors import InvalidInput
from rlm.operations.base import Operation
from rlm.operations.context import check_cancelled
from rlm.operations.expressions import EvalError, Expression, parse_expression
from rlm.operations.params import ParamReader, field_of
from rlm.operations.positional import PositionalOperation
from rlm.operations.schema import (
    MAX_WIRE_NUMBER,
    NUMBER,
    SchemaContext,
    branch,
    flag,
    integer,
    nullable,
    params,
    string,
)
from rlm.operations.values import (
    descending_counts,
    is_number,
    item_error,
    render_key,
    type_name,
    value_key,
)

__all__ = [
    "Concat",
    "CountBy",
    "Distinct",
    "Filter",
    "Histogram",
    "Map",
    "Sort",
    "TopK",
]

_CANCEL_EVERY = 1024

#: An ordered partial: (kind of its items, index of its first item, values). ``kind`` is
#: "number", "string" or None (no items); combine refuses to merge two kinds.
_Ordered = tuple[str | None, int, list[Any]]


def _ordered_kind(chunk: Sequence[Any], start: int, op: str) -> tuple[str | None, int]:
    """The one kind (number or string) of ``chunk``'s items, and where it was first seen."""
    kind: str | None = None
    first = start
    for i, value in enumerate(chunk):
        if is_number(value):
            if value != value:  # NaN has no place in an order
                raise item_error(start + i, f"{op} cannot order NaN")
            this = "number"
        elif isinstance(value, str):
            this = "string"
        else:
            raise item_error(start + i, f"{op} orders numbers or strings, not {type_name(value)}")
        if kind is None:
            kind, first = this, start + i
        elif this != kind:
            raise item_error(start + i, f"{op} cannot mix a {this} with the {kind} at item {first}")
    return kind, first


def _merged_kind(partials: Sequence[_Ordered], op: str) -> tuple[str | None, int]:
    kind: str | None = None
    first = 0
    for p_kind, p_first, _ in partials:
        if p_kind is None:
            continue
        if kind is None:
            kind, first = p_kind, p_first
        elif p_kind != kind:
            raise item_error(p_first, f"{op} cannot mix a {p_kind} with the {kind} at item {first}")
    return kind, first


@dataclass(frozen=True)
class _SortParams:
    reverse: bool


#: Items an ordering operation compares: all numbers, or all strings.
_ORDERED_ITEMS: dict[str, Any] = {
    "anyOf": [
        {"type": "array", "items": {"type": "number"}},
        {"type": "array", "items": {"type": "string"}},
    ]
}


class Sort(PositionalOperation):
    """All items in order (numbers or strings, not both); stable, so equal items keep order.

    Params:
        reverse (bool, default false): Largest first.

    Output: the sorted list. Partial: ``(kind, first index, sorted chunk)``, merged with a
    stable k-way merge.
    """

    name = "sort"
    params_schema = params(reverse=flag())
    items_schema = _ORDERED_ITEMS
    description = "Items sorted (numbers or strings); params: reverse."

    def parse_params(self, params: Mapping[str, Any]) -> _SortParams:
        return _SortParams(ParamReader(self.name, params, ("reverse",)).flag("reverse", False))

    def leaf_at(self, chunk: Sequence[Any], start: int, params: _SortParams) -> _Ordered:
        kind, first = _ordered_kind(chunk, start, self.name)
        return kind, first, sorted(chunk, reverse=params.reverse)

    def combine(self, partials: Sequence[_Ordered], params: _SortParams) -> _Ordered:
        kind, first = _merged_kind(partials, self.name)
        merged = heapq.merge(*(p[2] for p in partials), reverse=params.reverse)
        return kind, first, list(merged)

    def finish(self, partial: _Ordered, params: _SortParams) -> list[Any]:
        return partial[2]


@dataclass(frozen=True)
class _TopKParams:
    k: int
    largest: bool


class TopK(PositionalOperation):
    """The ``k`` largest (or smallest) items, best first; ties go to the earlier item.

    Params:
        k (int, 1..10000, required): How many.
        largest (bool, default true): Largest first; false gives the smallest.

    Output: a list of at most ``k`` values. Partial: ``(kind, first index, best k of the
    chunk)``; ``heapq.nlargest`` is ``sorted(...)[:k]``, stable, so trees agree.
    """

    name = "top_k"
    params_schema = params({"k": integer(1, 10_000)}, largest=flag())
    items_schema = _ORDERED_ITEMS
    description = "The k largest (or smallest) items; params: k, largest."

    def parse_params(self, params: Mapping[str, Any]) -> _TopKParams:
        reader = ParamReader(self.name, params, ("k", "largest"))
        return _TopKParams(reader.integer("k", lo=1, hi=10_000), reader.flag("largest", True))

    def _best(self, values: Any, params: _TopKParams) -> list[Any]:
        pick = heapq.nlargest if params.largest else heapq.nsmallest
        return pick(params.k, values)

    def leaf_at(self, chunk: Sequence[Any], start: int, params: _TopKParams) -> _Ordered:
        kind, first = _ordered_kind(chunk, start, self.name)
        return kind, first, self._best(chunk, params)

    def combine(self, partials: Sequence[_Ordered], params: _TopKParams) -> _Ordered:
        kind, first = _merged_kind(partials, self.name)
        return kind, first, self._best(itertools.chain(*(p[2] for p in partials)), params)

    def finish(self, partial: _Ordered, params: _TopKParams) -> list[Any]:
        return partial[2]


class Distinct(PositionalOperation):
    """Each distinct value once, in order of first occurrence.

    Values are compared as JSON (see :func:`~rlm.operations.values.value_key`): ``1`` and
    ``1.0`` are the same value (the first one seen is kept), ``true`` and ``1`` are not.

    Output: a list. Partial: ``(values, keys)``.
    """

    name = "distinct"
    description = "Distinct values in first-occurrence order."

    def leaf_at(self, chunk: Sequence[Any], start: int, params: Any) -> tuple[list[Any], list[Any]]:
        seen: set[Any] = set()
        values, keys = [], []
        for i, value in enumerate(chunk):
            try:
                key = value_key(value)
            except TypeError as err:
                raise item_error(start + i, f"distinct needs JSON values: {err}") from None
            if key not in seen:
                seen.add(key)
                values.append(value)
                keys.append(key)
        return values, keys

    def combine(
        self, partials: Sequence[tuple[list[Any], list[Any]]], params: Any
    ) -> tuple[list[Any], list[Any]]:
        seen: set[Any] = set()
        values, keys = [], []
        for p_values, p_keys in partials:
            for value, key in zip(p_values, p_keys, strict=True):
                if key not in seen:
                    seen.add(key)
                    values.append(value)
                    keys.append(key)
        return values, keys

    def finish(self, partial: tuple[list[Any], list[Any]], params: Any) -> list[Any]:
        return partial[0]


class CountBy(PositionalOperation):
    """How many times each value occurs.

    Values must be JSON scalars. Keys are the value's text (:func:`render_key`): strings as
    they are, ``true``/``false``/``null``, numbers as written by Python (``1`` and ``1.0``
    are different keys). Values with the same text (``"1"`` and ``1``) share a key.

    Output: ``{key: count}`` ordered by descending count, then ascending key.
    """

    name = "count_by"
    items_schema = {"type": "array", "items": {"type": ["null", "boolean", "number", "string"]}}
    description = "Occurrences of each value, most frequent first."

    def leaf_at(self, chunk: Sequence[Any], start: int, params: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        for i, value in enumerate(chunk):
            try:
                key = render_key(value)
            except TypeError as err:
                raise item_error(start + i, str(err)) from None
            counts[key] = counts.get(key, 0) + 1
        return counts

    def combine(self, partials: Sequence[dict[str, int]], params: Any) -> dict[str, int]:
        total: dict[str, int] = {}
        for counts in partials:
            for key, n in counts.items():
                total[key] = total.get(key, 0) + n
        return total

    def finish(self, partial: dict[str, int], params: Any) -> dict[str, int]:
        return descending_counts(partial)


@dataclass(frozen=True)
class _HistogramParams:
    edges: tuple[float, ...]


class Histogram(Operation):
    """Counts of the numbers in ``bins`` equal-width bins over ``range``.

    Every leaf bins against the same edges, so the counts add up exactly. Bins are half-open
    ``[lo, hi)`` except the last, which includes ``range[1]`` (as ``numpy.histogram``).
    Numbers outside ``range`` are not counted.

    Params:
        bins (int, 1..10000, required): How many bins.
        range ([lo, hi], required): Numbers within ±2**53, in either order; equal bounds
            (or bounds too close for ``bins`` distinct edges) give empty bins, values at the
            edge in the last one.

    Output: ``{"edges": [bins + 1 floats], "counts": [bins ints]}``.
    """

    name = "histogram"
    input_kind = "numbers"
    params_schema = params(
        {
            "bins": integer(1, 10_000),
            "range": {"type": "array", "items": NUMBER, "minItems": 2, "maxItems": 2},
        }
    )
    description = "Counts per equal-width bin; params: bins, range."

    def parse_params(self, params: Mapping[str, Any]) -> _HistogramParams:
        reader = ParamReader(self.name, params, ("bins", "range"))
        bins = reader.integer("bins", lo=1, hi=10_000)
        lo, hi = reader.number_pair("range", bound=MAX_WIRE_NUMBER)
        # Edges may repeat when the range is narrow (or empty): numpy then leaves the bins
        # between equal edges empty and counts values at an edge in the last such bin.
        edges = np.linspace(lo, hi, bins + 1)
        return _HistogramParams(tuple(edges.tolist()))

    def leaf(self, chunk: Any, params: _HistogramParams) -> list[int]:
        counts, _ = np.histogram(chunk, bins=np.asarray(params.edges))
        return [int(c) for c in counts.tolist()]

    def combine(self, partials: Sequence[list[int]], params: _HistogramParams) -> list[int]:
        return [sum(column) for column in zip(*partials, strict=True)]

    def finish(self, partial: list[int], params: _HistogramParams) -> dict[str, list[Any]]:
        return {"edges": list(params.edges), "counts": partial}


@dataclass(frozen=True)
class _ConcatParams:
    separator: str | None


class Concat(PositionalOperation):
    """The items themselves, in order; or, with ``separator``, the strings joined.

    Params:
        separator (str, optional): When given, every item must be a string and the output
            is ``separator.join(items)``.

    Output: the list of items, or one string.
    """

    name = "concat"
    params_schema = params(separator=nullable(string()))

    def input_schemas(self, context: SchemaContext) -> list[dict[str, Any]]:
        # With a separator the items are joined: they must be strings then.
        joined = params({"separator": string()})
        return [
            branch(self, context, params_schema=params(separator={"type": "null"})),
            branch(
                self,
                context,
                params_schema=joined,
                items_schema={"type": "array", "items": {"type": "string"}},
            ),
        ]

    description = "The items in order, or joined with params.separator."

    def parse_params(self, params: Mapping[str, Any]) -> _ConcatParams:
        reader = ParamReader(self.name, params, ("separator",))
        return _ConcatParams(reader.optional_string("separator"))

    def leaf_at(self, chunk: Sequence[Any], start: int, params: _ConcatParams) -> list[Any]:
        if params.separator is not None:
            for i, value in enumerate(chunk):
                if not isinstance(value, str):
                    raise item_error(
                        start + i, f"concat with a separator joins strings, not {type_name(value)}"
                    )
        return list(chunk)

    def combine(self, partials: Sequence[list[Any]], params: _ConcatParams) -> list[Any]:
        return list(itertools.chain.from_iterable(partials))

    def finish(self, partial: list[Any], params: _ConcatParams) -> list[Any] | str:
        return partial if params.separator is None else params.separator.join(partial)


def _evaluate(expr: Expression, value: Any, index: int, param: str) -> Any:
    try:
        return expr.evaluate({"x": value})
    except EvalError as err:
        raise InvalidInput(
            f"item {index}: {param} failed at position {err.position}: {err.message}",
            {"index": index, "position": err.position, "param": param},
            field=f"input.items[{index}]",
        ) from None


@dataclass(frozen=True)
class _ExprParams:
    expr: Expression


class Filter(PositionalOperation):
    """The items for which ``where`` is true, in order.

    Params:
        where (str, required): An expression over ``x`` (the item) that gives true or false;
            see :mod:`rlm.operations.expressions`. Example: ``"x.score >= 0.5"``.

    Output: the list of kept items.

    Raises:
        InvalidInput: ``where`` does not parse (``input.params.where``, with ``position``), or
            fails or gives a non-boolean for an item (``input.items[<i>]``).
    """

    name = "filter"
    params_schema = params({"where": string(10**6, format="rlm-expression")})
    description = "Items where params.where (an expression over x) is true."

    def parse_params(self, params: Mapping[str, Any]) -> _ExprParams:
        reader = ParamReader(self.name, params, ("where",))
        source = reader.string("where", max_len=10**6)
        return _ExprParams(parse_expression(source, field=field_of("where")))

    def leaf_at(self, chunk: Sequence[Any], start: int, params: _ExprParams) -> list[Any]:
        kept = []
        for i, value in enumerate(chunk):
            if i % _CANCEL_EVERY == 0:
                check_cancelled()
            verdict = _evaluate(params.expr, value, start + i, "where")
            if not isinstance(verdict, bool):
                raise item_error(
                    start + i, f"where must give true or false, not {type_name(verdict)}"
                )
            if verdict:
                kept.append(value)
        return kept

    def combine(self, partials: Sequence[list[Any]], params: _ExprParams) -> list[Any]:
        return list(itertools.chain.from_iterable(partials))


class Map(PositionalOperation):
    """``expr`` applied to every item, in order.

    Params:
        expr (str, required): An expression over ``x``. Example: ``"x.price * 1.2"``.

    Output: the list of results.

    Raises:
        InvalidInput: ``expr`` does not parse (``input.params.expr``), or fails for an item.
    """

    name = "map"
    params_schema = params({"expr": string(10**6, format="rlm-expression")})
    description = "params.expr (an expression over x) applied to each item."

    def parse_params(self, params: Mapping[str, Any]) -> _ExprParams:
        reader = ParamReader(self.name, params, ("expr",))
        source = reader.string("expr", max_len=10**6)
        return _ExprParams(parse_expression(source, field=field_of("expr")))

    def leaf_at(self, chunk: Sequence[Any], start: int, params: _ExprParams) -> list[Any]:
        out = []
        for i, value in enumerate(chunk):
            if i % _CANCEL_EVERY == 0:
                check_cancelled()
            out.append(_evaluate(params.expr, value, start + i, "expr"))
        return out

    def combine(self, partials: Sequence[list[Any]], params: _ExprParams) -> list[Any]:
        return list(itertools.chain.from_iterable(partials))

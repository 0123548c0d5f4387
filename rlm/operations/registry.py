"""The operations a task may name: built-ins plus what Python callers register."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rlm.errors import InvalidInput
from rlm.operations.base import Chunk, FunctionOperation, InputKind, Operation

__all__ = ["OperationRegistry", "default_registry"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
#: The name RLM tasks use (``input.operation: "rlm"``): they run as sessions, not operations.
_RESERVED = "rlm"


class OperationRegistry:
    """Names to operations. Data (HTTP bodies, JSON files) may only *name* an operation here.

    Example:
        >>> reg = default_registry()
        >>> @reg.operation("evens", combine=lambda ps, p: sum(ps))
        ... def evens(chunk, params):
        ...     return sum(1 for x in chunk if x % 2 == 0)
        >>> reg.get("evens").name
        'evens'
    """

    def __init__(self, operations: Iterable[Operation] = ()) -> None:
        self._ops: dict[str, Operation] = {}
        for op in operations:
            self.register(op)

    def register(self, op: Operation, *, replace: bool = False) -> Operation:
        """Add ``op`` under ``op.name``.

        Raises:
            InvalidInput: the name is malformed, or taken and ``replace`` is false.
        """
        name = op.name
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(f"invalid operation name {name!r}", field="name")
        if name == _RESERVED:
            raise InvalidInput(
                f'operation name {name!r} is reserved for RLM mode (input.operation "rlm")',
                field="name",
            )
        if name in self._ops and not replace:
            raise InvalidInput(f"operation {name!r} is already registered", field="name")
        self._ops[name] = op
        return op

    def operation(
        self,
        name: str,
        *,
        combine: Callable[[Sequence[Any], Any], Any],
        finish: Callable[[Any, Any], Any] | None = None,
        input_kind: InputKind = "any",
        parse_params: Callable[[Mapping[str, Any]], Any] | None = None,
        replace: bool = False,
    ) -> Callable[[Callable[[Chunk, Any], Any]], Callable[[Chunk, Any], Any]]:
        """Decorator registering the decorated function as the leaf of a new operation."""

        def decorate(leaf: Callable[[Chunk, Any], Any]) -> Callable[[Chunk, Any], Any]:
            self.register(
                FunctionOperation(
                    name,
                    leaf=leaf,
                    combine=combine,
                    finish=finish,
                    input_kind=input_kind,
                    parse_params=parse_params,
                    description=(leaf.__doc__ or "").strip().split("\n")[0],
                ),
                replace=replace,
            )
            return leaf

        return decorate

    def get(self, name: object) -> Operation:
        """The operation called ``name``.

        Raises:
            InvalidInput: no such operation (``field`` is ``input.operation``).
        """
        if not isinstance(name, str) or name not in self._ops:
            raise InvalidInput(
                f"unknown operation {name!r}",
                {"available": sorted(self._ops)},
                field="input.operation",
            )
        return self._ops[name]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._ops)

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __len__(self) -> int:
        return len(self._ops)


def default_registry(extra: Iterable[str] = ()) -> OperationRegistry:
    """A new registry holding every built-in operation, plus ``extra`` ones.

    Args:
        extra: ``"module:attribute"`` paths, each naming an :class:`Operation` or a list of
            them (the ``operations`` setting).

    Raises:
        InvalidInput: a path that does not import, or names no operation.
    """
    import importlib

    from rlm.operations.catalog import builtin_operations

    registry = OperationRegistry(builtin_operations())
    for path in extra:
        module_name, _, attr = path.partition(":")
        try:
            found = getattr(importlib.import_module(module_name), attr or "OPERATIONS")
        except (ImportError, AttributeError) as err:
            raise InvalidInput(
                f"cannot load operations {path!r}: {err}", field="operations"
            ) from None
        ops = found if isinstance(found, list | tuple) else [found]
        for op in ops:
            if not isinstance(op, Operation):
                raise InvalidInput(
                    f"{path!r} holds {type(op).__name__}, not an Operation", field="operations"
                )
            registry.register(op, replace=True)
    return registry

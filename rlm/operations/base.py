"""What an operation is: a monoid over chunks of the input.

An operation turns each chunk into a *partial* (``leaf``), merges partials (``combine``) and
turns the last partial into the task's output (``finish``). Because ``combine`` is associative,
the same operation gives the same output whatever tree the planner builds: recursive, parallel,
sequential, or none at all (direct).

Example:
    >>> from rlm.operations.base import FunctionOperation
    >>> total = FunctionOperation(
    ...     "my_sum", leaf=lambda chunk, p: sum(chunk), combine=lambda ps, p: sum(ps)
    ... )
    >>> total.finish(total.combine([total.leaf([1, 2], {}), total.leaf([3], {})], {}), {})
    6
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from rlm.errors import InvalidInput
from rlm.operations.schema import ANY_OBJECT, NO_PARAMS, SchemaContext, branch

__all__ = ["Chunk", "FunctionOperation", "InputKind", "Operation", "is_builtin"]

#: What a leaf receives: a numpy array view for numeric input, a sequence otherwise.
Chunk = Any

#: How the engine prepares ``items`` for the operation: ``numbers`` become a numpy array
#: (int64 or float64, zero-copy where the caller passed an array); ``text`` must be strings;
#: ``any`` is passed through as a list.
InputKind = Literal["numbers", "text", "any"]


class Operation(ABC):
    """A named monoid: ``leaf`` / ``combine`` / ``finish``.

    Subclasses set :attr:`name` and :attr:`input_kind` and may validate their parameters in
    :meth:`parse_params`; the parsed value is what ``leaf``/``combine``/``finish`` receive.
    """

    name: ClassVar[str] = ""
    input_kind: ClassVar[InputKind] = "any"
    description: ClassVar[str] = ""
    #: True when partials depend on where the chunk sits in the input (global item indices).
    #: The engine always calls :meth:`leaf_at` / :meth:`fold_at`; this flag only decides
    #: whether the default :meth:`fold_at` goes through :meth:`leaf_at` or :meth:`fold`.
    needs_offset: ClassVar[bool] = False
    #: True when the operation calls a language model (through
    #: :func:`rlm.lm.handle.current_lm`): the engine binds a handle to each of its calls and
    #: runs them beside, not on, the agents' compute threads (they wait on the network).
    uses_lm: ClassVar[bool] = False
    #: For LM operations: about how many characters of items one call's prompt should hold
    #: when the request sets no ``leafSize`` (``0``: one item per call).
    lm_chunk_chars: ClassVar[int] = 0
    #: True for an operation the engine runs as one session on a session host instead of a
    #: plan of agent calls (RLM mode: :class:`rlm.rlmmode.operation.RLMOperation`).
    runs_in_session: ClassVar[bool] = False
    #: A built-in leaf's worst-case CPU time per item (seconds; any dtype it takes), or
    #: ``None`` when unknown. The engine runs a whole task on the core's loop when its items
    #: cost less than one message's budget (:func:`rlm.runtime.scheduler.Scheduler.runs_in_core`):
    #: a user's operation never declares one that counts (no user code runs in the core).
    leaf_item_s: ClassVar[float | None] = None
    #: JSON Schema of ``input.params`` in the API document (see :mod:`rlm.operations.schema`):
    #: exactly what :meth:`parse_params` accepts. The default: no parameters.
    params_schema: ClassVar[dict[str, Any]] = NO_PARAMS
    #: JSON Schema of ``input.items``; ``None``: an array of what :attr:`input_kind` says.
    items_schema: ClassVar[dict[str, Any] | None] = None

    def input_schemas(self, context: SchemaContext) -> list[dict[str, Any]]:
        """The ``input`` objects naming this operation, as JSON Schema (one or more branches).

        Override when what the items may be depends on the parameters. An operation that
        reads parameters but declares no :attr:`params_schema` is described as taking any.
        """
        cls = type(self)
        undeclared = (
            cls.parse_params is not Operation.parse_params
            and cls.params_schema is Operation.params_schema
        )
        return [branch(self, context, params_schema=ANY_OBJECT if undeclared else None)]

    def parse_params(self, params: Mapping[str, Any]) -> Any:
        """Validate ``input.params`` once, before any agent runs.

        Raises:
            InvalidInput: naming the bad parameter (``input.params.<name>``).
        """
        if params:
            raise InvalidInput(
                f"operation {self.name!r} takes no parameters",
                field=f"input.params.{next(iter(params))}",
            )
        return {}

    @abstractmethod
    def leaf(self, chunk: Chunk, params: Any) -> Any:
        """The partial of one chunk of items."""

    @abstractmethod
    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        """Merge partials (of adjacent chunks, in input order) into one."""

    def leaf_at(self, chunk: Chunk, start: int, params: Any) -> Any:
        """The partial of a chunk that begins at item ``start`` of the whole input.

        What the engine calls for every leaf. The default ignores ``start`` and calls
        :meth:`leaf`; operations whose partials hold global item indices (``needs_offset``)
        override this instead.
        """
        return self.leaf(chunk, params)

    def finish(self, partial: Any, params: Any) -> Any:
        """The task's output from the root partial (JSON-ready)."""
        return partial

    def fold(self, carry: Any, chunk: Chunk, params: Any) -> Any:
        """One sequential step: fold a chunk into the carried partial.

        Order-dependent operations (and LM agents reading a long context piece by piece)
        override this; the default is ``combine([carry, leaf(chunk)])``.
        """
        return self.combine([carry, self.leaf(chunk, params)], params)

    def fold_at(self, carry: Any, chunk: Chunk, start: int, params: Any) -> Any:
        """One sequential step over a chunk that begins at item ``start`` of the input.

        What the engine calls for every ``fold`` node: :meth:`fold` unless the operation
        ``needs_offset``, then ``combine([carry, leaf_at(chunk, start)])``.
        """
        if not self.needs_offset:
            return self.fold(carry, chunk, params)
        return self.combine([carry, self.leaf_at(chunk, start, params)], params)


class FunctionOperation(Operation):
    """An operation built from plain Python functions (what ``register_operation`` makes).

    Args:
        name: The name requests use in ``input.operation``.
        leaf: ``leaf(chunk, params) -> partial``.
        combine: ``combine(partials, params) -> partial``.
        finish: ``finish(partial, params) -> output``; identity when omitted.
        input_kind: How items are prepared (see :data:`InputKind`).
        parse_params: Validates ``input.params``; by default any mapping is passed through.
        description: One line for listings.
    """

    def __init__(
        self,
        name: str,
        *,
        leaf: Callable[[Chunk, Any], Any],
        combine: Callable[[Sequence[Any], Any], Any],
        finish: Callable[[Any, Any], Any] | None = None,
        input_kind: InputKind = "any",
        parse_params: Callable[[Mapping[str, Any]], Any] | None = None,
        description: str = "",
    ) -> None:
        self._name = name
        self._leaf = leaf
        self._combine = combine
        self._finish = finish
        self._input_kind: InputKind = input_kind
        self._parse = parse_params
        self._description = description

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._name

    @property
    def input_kind(self) -> InputKind:  # type: ignore[override]
        return self._input_kind

    @property
    def description(self) -> str:  # type: ignore[override]
        return self._description

    def parse_params(self, params: Mapping[str, Any]) -> Any:
        if self._parse is not None:
            return self._parse(params)
        return dict(params)

    def leaf(self, chunk: Chunk, params: Any) -> Any:
        return self._leaf(chunk, params)

    def combine(self, partials: Sequence[Any], params: Any) -> Any:
        return self._combine(partials, params)

    def finish(self, partial: Any, params: Any) -> Any:
        return partial if self._finish is None else self._finish(partial, params)

    def __repr__(self) -> str:
        return f"FunctionOperation({self._name!r})"


def is_builtin(op: Operation) -> bool:
    """Whether ``op`` is one of the engine's own operations (no user code).

    A :class:`FunctionOperation` is defined in the engine's package but wraps a user's
    functions: it is not.
    """
    return type(op).__module__.startswith("rlm.operations.") and not isinstance(
        op, FunctionOperation
    )

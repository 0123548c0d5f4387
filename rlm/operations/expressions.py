"""The safe expression language of ``filter``, ``map`` and ``pairs``.

User text is never handed to ``eval``, ``exec``, ``compile`` or ``ast``: a small tokenizer
(:mod:`~rlm.operations.expression_tokens`) and a Pratt parser build a tree of node objects,
and an interpreter walks it. There is
no attribute access (``x.name`` reads a key of an object item), no way to name a Python object,
and every resource is bounded: 1,000 characters of source, 64 levels of nesting, integers of at
most 4,096 bits, ``**`` exponents in ``[-64, 64]``, no string repetition.

Grammar, loosest binding first::

    expr     := or
    or       := and ("or" and)*
    and      := not ("and" not)*
    not      := "not" not | compare
    compare  := sum (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") sum)?
    sum      := term (("+" | "-") term)*
    term     := unary (("*" | "/" | "//" | "%") unary)*
    unary    := ("-" | "+") unary | power
    power    := postfix ("**" unary)?
    postfix  := atom ("." NAME | "[" expr "]")*
    atom     := NUMBER | STRING | "true" | "false" | "null" | NAME | FUNC "(" args ")"
              | "(" expr ")" | "[" (expr ("," expr)*)? "]"

Variables are ``x`` (the item) for ``filter``/``map`` and ``a``, ``b`` for ``pairs``.
Functions: ``abs len lower upper round min max int float str startswith endswith contains``.
``and``/``or``/``not`` take booleans and short-circuit; comparisons do not chain.

Example:
    >>> e = parse_expression('x.age >= 18 and lower(x.name) in ["ann", "bo"]')
    >>> e.evaluate({"x": {"age": 30, "name": "Ann"}})
    True
    >>> parse_expression("2 + 3 * 4 ** 2").evaluate({})
    50
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlm.errors import InvalidInput
from rlm.operations.expression_tokens import ExpressionSyntaxError, Token, tokenize
from rlm.operations.expression_values import (
    FUNCTIONS,
    MAX_EXPONENT,
    EvalError,
    arithmetic,
    checked,
    contains,
    equal,
    order,
    power,
)
from rlm.operations.values import is_number, type_name

__all__ = [
    "MAX_DEPTH",
    "MAX_SOURCE_CHARS",
    "EvalError",
    "Expression",
    "Node",
    "parse_expression",
]

#: Longest expression source accepted.
MAX_SOURCE_CHARS = 1000
#: Deepest expression tree (and deepest nesting of brackets and unary operators) accepted.
MAX_DEPTH = 64

_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_CONSTANTS = {"true": True, "false": False, "null": None}
_COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")


class Node:
    """A node of a parsed expression: knows its source position and tree depth."""

    __slots__ = ("depth", "pos")
    depth: int
    pos: int

    def __init__(self, pos: int, children: Sequence[Node] = ()) -> None:
        self.pos = pos
        self.depth = 1 + max((c.depth for c in children), default=0)
        if self.depth > MAX_DEPTH:
            raise ExpressionSyntaxError(
                f"the expression is nested more than {MAX_DEPTH} levels deep", pos
            )

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """The node's value with the variables bound in ``env``."""
        raise NotImplementedError


class _Const(Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: Any) -> None:
        super().__init__(pos)
        self.value = value

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return self.value


class _Var(Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return env[self.name]


class _Field(Node):
    __slots__ = ("name", "obj")

    def __init__(self, pos: int, obj: Node, name: str) -> None:
        super().__init__(pos, (obj,))
        self.obj, self.name = obj, name

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return _lookup(self.obj.evaluate(env), self.name, self.pos)


class _Index(Node):
    __slots__ = ("key", "obj")

    def __init__(self, pos: int, obj: Node, key: Node) -> None:
        super().__init__(pos, (obj, key))
        self.obj, self.key = obj, key

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        container, key = self.obj.evaluate(env), self.key.evaluate(env)
        if isinstance(container, Mapping):
            if not isinstance(key, str):
                raise EvalError(f"an object's key must be a string, not {type_name(key)}", self.pos)
            return _lookup(container, key, self.pos)
        if isinstance(container, list | tuple | str):
            if isinstance(key, bool) or not isinstance(key, int):
                raise EvalError(f"an index must be an integer, not {type_name(key)}", self.pos)
            if not -len(container) <= key < len(container):
                raise EvalError(f"index {key} is out of range", self.pos)
            return container[key]
        raise EvalError(f"cannot index {type_name(container)}", self.pos)


def _lookup(obj: Any, name: str, pos: int) -> Any:
    if not isinstance(obj, Mapping):
        raise EvalError(f"cannot read field {name!r} of {type_name(obj)}", pos)
    if name not in obj:
        raise EvalError(f"the object has no field {name!r}", pos)
    return obj[name]


class _Unary(Node):
    __slots__ = ("op", "operand")

    def __init__(self, pos: int, op: str, operand: Node) -> None:
        super().__init__(pos, (operand,))
        self.op, self.operand = op, operand

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        value = self.operand.evaluate(env)
        if self.op == "not":
            if not isinstance(value, bool):
                raise EvalError(f"'not' needs true or false, not {type_name(value)}", self.pos)
            return not value
        if not is_number(value):
            raise EvalError(f"unary {self.op!r} needs a number, not {type_name(value)}", self.pos)
        return -value if self.op == "-" else value


class _Arith(Node):
    """A left-associative chain ``a + b - c`` kept flat, so long sums stay shallow."""

    __slots__ = ("first", "rest")

    def __init__(self, pos: int, first: Node, rest: list[tuple[str, int, Node]]) -> None:
        super().__init__(pos, [first, *(node for _, _, node in rest)])
        self.first, self.rest = first, tuple(rest)

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        value = self.first.evaluate(env)
        for op, pos, node in self.rest:
            value = arithmetic(op, value, node.evaluate(env), pos)
        return value


class _Pow(Node):
    __slots__ = ("base", "exponent")

    def __init__(self, pos: int, base: Node, exponent: Node) -> None:
        super().__init__(pos, (base, exponent))
        self.base, self.exponent = base, exponent

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return power(self.base.evaluate(env), self.exponent.evaluate(env), self.pos)


class _Compare(Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, pos: int, op: str, left: Node, right: Node) -> None:
        super().__init__(pos, (left, right))
        self.op, self.left, self.right = op, left, right

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        a, b, op = self.left.evaluate(env), self.right.evaluate(env), self.op
        if op == "==":
            return equal(a, b)
        if op == "!=":
            return not equal(a, b)
        if op == "in":
            return contains(b, a, self.pos)
        if op == "not in":
            return not contains(b, a, self.pos)
        return order(op, a, b, self.pos)


class _Logic(Node):
    __slots__ = ("op", "operands")

    def __init__(self, pos: int, op: str, operands: list[Node]) -> None:
        super().__init__(pos, operands)
        self.op, self.operands = op, tuple(operands)

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        stop = self.op == "or"  # the value that decides the answer early
        for node in self.operands:
            value = node.evaluate(env)
            if not isinstance(value, bool):
                raise EvalError(
                    f"{self.op!r} needs true or false, not {type_name(value)}", node.pos
                )
            if value is stop:
                return stop
        return not stop


class _Call(Node):
    __slots__ = ("args", "name")

    def __init__(self, pos: int, name: str, args: list[Node]) -> None:
        super().__init__(pos, args)
        self.name, self.args = name, tuple(args)

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        impl = FUNCTIONS[self.name][2]
        return checked(impl([a.evaluate(env) for a in self.args], self.pos), self.pos)


class _List(Node):
    __slots__ = ("items",)

    def __init__(self, pos: int, items: list[Node]) -> None:
        super().__init__(pos, items)
        self.items = tuple(items)

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return [item.evaluate(env) for item in self.items]


# Binding powers: higher binds tighter. Prefix "not" parses its operand at _NOT_OPERAND, unary
# minus at _UNARY_OPERAND; "**" is right-associative and takes a unary operand on its right.
_OR, _AND, _NOT_OPERAND, _COMPARE, _SUM, _TERM, _UNARY_OPERAND, _POWER = range(1, 9)
_ARITH_LEVELS = {"+": _SUM, "-": _SUM, "*": _TERM, "/": _TERM, "//": _TERM, "%": _TERM}


class _Parser:
    """A Pratt (precedence-climbing) parser: two or three Python frames per nesting level,
    so the 64-level bound is reached long before Python's recursion limit."""

    def __init__(self, tokens: list[Token], variables: Sequence[str]) -> None:
        self.tokens = tokens
        self.i = 0
        self.nesting = 0
        self.variables = tuple(variables)

    def peek(self, offset: int = 0) -> Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at(self, kind: str, *values: str) -> bool:
        token = self.peek()
        return token.kind == kind and (not values or token.value in values)

    def expect(self, value: str) -> Token:
        if not self.at("op", value):
            found = _describe(self.peek())
            raise ExpressionSyntaxError(f"expected {value!r}, found {found}", self.peek().pos)
        return self.take()

    def nested(self, token: Token, min_bp: int) -> Node:
        # Bounds the parser's own recursion before any node exists to carry a depth.
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise ExpressionSyntaxError(
                f"the expression is nested more than {MAX_DEPTH} levels deep", token.pos
            )
        node = self.expression(min_bp)
        self.nesting -= 1
        return node

    def parse(self) -> Node:
        node = self.expression(0)
        if not self.at("end"):
            raise ExpressionSyntaxError(f"unexpected {_describe(self.peek())}", self.peek().pos)
        return node

    def infix(self) -> tuple[str, int] | None:
        """The binary operator at the cursor and its binding power, if any."""
        token = self.peek()
        if token.kind == "op":
            value = str(token.value)
            if value in _ARITH_LEVELS:
                return value, _ARITH_LEVELS[value]
            if value in _COMPARE_OPS:
                return value, _COMPARE
            if value == "**":
                return value, _POWER
            return None
        if token.kind == "name" and token.value in ("and", "or", "in"):
            value = str(token.value)
            return value, {"or": _OR, "and": _AND, "in": _COMPARE}[value]
        after = self.peek(1)
        if token.kind == "name" and token.value == "not" and after.kind == "name":
            return ("not in", _COMPARE) if after.value == "in" else None
        return None

    def expression(self, min_bp: int) -> Node:
        left = self.prefix()
        while True:
            found = self.infix()
            if found is None or found[1] < min_bp:
                return left
            op, bp = found
            if bp in (_OR, _AND):
                left = self.logic(left, op, bp)
            elif bp == _COMPARE:
                left = self.comparison(left, op)
            elif bp == _POWER:
                token = self.take()
                left = _Pow(token.pos, left, self.exponent(token))
            else:
                left = self.arith(left, bp)

    def logic(self, first: Node, op: str, bp: int) -> Node:
        operands = [first]
        while self.at("name", op):
            operands.append(self.nested(self.take(), bp + 1))
        return _Logic(first.pos, op, operands)

    def arith(self, first: Node, bp: int) -> Node:
        # A run of same-level operators stays one flat node: "1 + 2 + ... + 200" is shallow.
        rest: list[tuple[str, int, Node]] = []
        while (found := self.infix()) is not None and found[1] == bp and found[0] in _ARITH_LEVELS:
            token = self.take()
            rest.append((str(token.value), token.pos, self.nested(token, bp + 1)))
        return _Arith(first.pos, first, rest)

    def comparison(self, left: Node, op: str) -> Node:
        token = self.take()
        if op == "not in":
            self.take()
        right = self.nested(token, _COMPARE + 1)
        following = self.infix()
        if following is not None and following[1] == _COMPARE:
            raise ExpressionSyntaxError(
                "comparisons cannot be chained; join them with 'and'", self.peek().pos
            )
        return _Compare(token.pos, op, left, right)

    def exponent(self, token: Token) -> Node:
        exponent = self.nested(token, _POWER)
        if (
            isinstance(exponent, _Const)
            and is_number(exponent.value)
            and abs(exponent.value) > MAX_EXPONENT
        ):
            raise ExpressionSyntaxError(
                f"the exponent must be between -{MAX_EXPONENT} and {MAX_EXPONENT}", exponent.pos
            )
        return exponent

    def prefix(self) -> Node:
        token = self.peek()
        if token.kind == "name" and token.value == "not":
            self.take()
            return _Unary(token.pos, "not", self.nested(token, _NOT_OPERAND))
        if token.kind == "op" and token.value in ("-", "+"):
            self.take()
            operand = self.nested(token, _UNARY_OPERAND)
            if token.value == "-" and isinstance(operand, _Const) and is_number(operand.value):
                return _Const(token.pos, -operand.value)
            return _Unary(token.pos, str(token.value), operand)
        return self.postfix(self.atom())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at("op", "."):
                dot = self.take()
                name = self.take()
                if name.kind != "name":
                    raise ExpressionSyntaxError("expected a field name after '.'", name.pos)
                if str(name.value).startswith("__"):
                    raise ExpressionSyntaxError("field names may not start with '__'", name.pos)
                node = _Field(dot.pos, node, str(name.value))
            elif self.at("op", "["):
                token = self.take()
                key = self.nested(token, 0)
                self.expect("]")
                node = _Index(token.pos, node, key)
            else:
                return node

    def atom(self) -> Node:
        token = self.take()
        if token.kind in ("num", "str"):
            return _Const(token.pos, token.value)
        if token.kind == "name":
            return self.name(token)
        if token.kind == "op" and token.value == "(":
            node = self.nested(token, 0)
            self.expect(")")
            return node
        if token.kind == "op" and token.value == "[":
            return _List(token.pos, self.items(token, "]"))
        raise ExpressionSyntaxError(f"unexpected {_describe(token)}", token.pos)

    def name(self, token: Token) -> Node:
        name = str(token.value)
        if name in _CONSTANTS:
            return _Const(token.pos, _CONSTANTS[name])
        if self.at("op", "("):
            if name not in FUNCTIONS:
                known = ", ".join(sorted(FUNCTIONS))
                raise ExpressionSyntaxError(
                    f"unknown function {name!r} (known: {known})", token.pos
                )
            args = self.items(self.take(), ")")
            low, high, _ = FUNCTIONS[name]
            if not low <= len(args) <= high:
                count = str(low) if low == high else f"{low} to {high}"
                noun = "argument" if count == "1" else "arguments"
                raise ExpressionSyntaxError(f"{name}() takes {count} {noun}", token.pos)
            return _Call(token.pos, name, args)
        if name in self.variables:
            return _Var(token.pos, name)
        if name in _KEYWORDS:
            raise ExpressionSyntaxError(f"unexpected {name!r}", token.pos)
        allowed = ", ".join(self.variables)
        raise ExpressionSyntaxError(f"unknown name {name!r} (variables: {allowed})", token.pos)

    def items(self, opener: Token, close: str) -> list[Node]:
        out: list[Node] = []
        while not self.at("op", close):
            out.append(self.nested(opener, 0))
            if not self.at("op", close):
                self.expect(",")
        self.expect(close)
        return out


def _describe(token: Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "str":
        return "a string"
    if token.kind == "num":
        return "a number"
    return repr(token.value)


@dataclass(frozen=True)
class Expression:
    """A parsed expression: evaluate it against variable bindings.

    Attributes:
        source: The text it was parsed from.
        root: The root node.
        variables: The names it may read.
    """

    source: str
    root: Node
    variables: tuple[str, ...]

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        """The value of the expression with ``env`` binding every variable.

        Raises:
            EvalError: a value has the wrong type, a division by zero, a result too large...
        """
        return self.root.evaluate(env)


def parse_expression(
    source: object,
    *,
    variables: Sequence[str] = ("x",),
    field: str = "input.params.expr",
) -> Expression:
    """Parse ``source`` once, before any item is seen.

    Args:
        source: The expression text.
        variables: Names the expression may read.
        field: The parameter named in errors.

    Raises:
        InvalidInput: a syntax error, an unknown name, or a bound exceeded; ``details`` carry
            ``position`` (0-based offset into ``source``).
    """
    if not isinstance(source, str):
        raise InvalidInput(f"the expression must be a string, not {type_name(source)}", field=field)
    if len(source) > MAX_SOURCE_CHARS:
        raise InvalidInput(
            f"the expression is {len(source)} characters long; at most {MAX_SOURCE_CHARS} "
            "are allowed",
            {"maxChars": MAX_SOURCE_CHARS},
            field=field,
        )
    if not source.strip():
        raise InvalidInput("the expression is empty", {"position": 0}, field=field)
    try:
        root = _Parser(tokenize(source), variables).parse()
    except ExpressionSyntaxError as err:
        raise InvalidInput(
            f"invalid expression at position {err.position}: {err.message}",
            {"position": err.position},
            field=field,
        ) from None
    return Expression(source, root, tuple(variables))

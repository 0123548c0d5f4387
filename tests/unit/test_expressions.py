"""The safe expression language: precedence, semantics, bounds and refusals."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlm.errors import InvalidInput
from rlm.operations.expressions import (
    MAX_DEPTH,
    MAX_SOURCE_CHARS,
    EvalError,
    parse_expression,
)


def ev(source: str, x: Any = None, **env: Any) -> Any:
    variables = tuple(env) if env else ("x",)
    bindings = env if env else {"x": x}
    return parse_expression(source, variables=variables).evaluate(bindings)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("-2 ** 2", -4),  # ** binds tighter than unary minus
        ("2 ** -1", 0.5),
        ("10 - 4 - 3", 3),  # left-associative
        ("100 / 10 / 5", 2.0),
        ("7 // 2", 3),
        ("-7 // 2", -4),  # floor division, as Python
        ("-7 % 3", 2),
        ("7.5 // 2", 3.0),
        ("1 + 2 == 3", True),
        ("1 < 2 and 2 < 3", True),
        ("not 1 == 2", True),
        ("true or 1 / 0 == 1", True),  # short-circuit
        ("false and 1 / 0 == 1", False),
        ("not true or true", True),  # not binds tighter than or
        ("1 in [1, 2]", True),
        ("3 not in [1, 2]", True),
        ("'b' in 'abc'", True),
        ("'a' + 'b'", "ab"),
        ("1 == 1.0", True),
        ("1 == true", False),  # booleans are not numbers
        ("null == null", True),
        ("[1, [2]] == [1, [2]]", True),
        ("abs(-3)", 3),
        ("len('abc')", 3),
        ("lower('AbC') + upper('x')", "abcX"),
        ("round(2.675, 2)", 2.67),
        ("round(2.5)", 2),  # banker's rounding, as Python
        ("min(3, 1, 2)", 1),
        ("max([1, 5, 2])", 5),
        ("int('-42') + int(3.9)", -39),
        ("float('1.5') * 2", 3.0),
        ("str(1) + str(true) + str(null) + str(2.5)", "1truenull2.5"),
        ("startswith('hello', 'he') and endswith('hello', 'lo')", True),
        ("contains('hello', 'ell') and contains([1, 2], 2)", True),
        ("1e3 + 0.5", 1000.5),
    ],
)
def test_arithmetic_and_precedence(source: str, expected: Any) -> None:
    got = ev(source)
    assert got == expected
    assert type(got) is type(expected)


def test_fields_and_indexing_read_item_data() -> None:
    item = {"name": "Ann", "tags": ["a", "b"], "in": 1, "nested": {"k": [10, 20]}}
    assert ev("x.name", item) == "Ann"
    assert ev("x['name']", item) == "Ann"
    assert ev("x.tags[-1]", item) == "b"
    assert ev("x.nested.k[1] + x.in", item) == 21  # keywords are fine as field names
    assert ev("'a' in x.tags", item) is True
    assert ev("a.v + b.v", a={"v": 1}, b={"v": 2}) == 3


@pytest.mark.parametrize(
    "source",
    [
        "x.__class__",
        "x.__class__.__mro__",
        "__import__('os')",
        "eval('1')",
        "open('/etc/passwd')",
        "x.a.__dict__",
        "getattr(x, 'a')",
        "y + 1",
        "lambda: 1",
        "x = 1",
        "1 < 2 < 3",
        "x ** 65",
        "2 ** -100",
        "",
        "   ",
        "1 +",
        "(1",
        "[1, 2",
        "'unterminated",
        "'bad \\q escape'",
        "1e999",
        "x.",
        "len()",
        "abs(1, 2)",
        "1 $ 2",
    ],
)
def test_refused_at_parse_time_with_a_position(source: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_expression(source, field="input.params.where")
    assert info.value.details["field"] == "input.params.where"
    assert "position" in info.value.details or "maxChars" in info.value.details


def test_attribute_syntax_reads_keys_never_python_attributes() -> None:
    # "x.items" is the key "items" of an object item, never dict.items.
    assert ev("x.items", {"items": 3}) == 3
    with pytest.raises(EvalError, match="no field 'keys'"):
        ev("x.keys", {"a": 1})
    with pytest.raises(EvalError, match="cannot read field"):
        ev("x.real", 5)  # not int.real
    with pytest.raises(EvalError):
        ev("x['__class__']", {"a": 1})


def test_over_long_and_deep_expressions_are_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_expression("1" + " + 1" * 300)
    assert info.value.details["maxChars"] == MAX_SOURCE_CHARS
    for deep in (
        "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "-" * (MAX_DEPTH + 1) + "1",
        "not " * (MAX_DEPTH + 1) + "true",
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        "abs(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
        "x" + ".a" * (MAX_DEPTH + 1),
        "2" + " ** 2" * (MAX_DEPTH + 1),
    ):
        with pytest.raises(InvalidInput, match="nested"):
            parse_expression(deep)
    # Long flat chains are not deep: they parse and evaluate.
    assert ev(" + ".join(["1"] * 200)) == 200
    assert ev(" and ".join(["true"] * 100)) is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("2 ** 4000 ** 1", "exponent"),
        ("(2 ** 64) ** 64", "bits"),
        ("x ** 64 * x ** 64", "bits"),
        ("'ab' * 3", "cannot apply"),
        ("'ab' + 1", "cannot apply"),
        ("1 / 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("0 ** -1", "zero"),
        ("(-8) ** 0.5", "real"),
        ("10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60 * 10.0 ** 60", "finite"),
        ("true + 1", "cannot apply"),
        ("-'a'", "number"),
        ("not 1", "true or false"),
        ("1 and true", "true or false"),
        ("1 < 'a'", "cannot compare"),
        ("1 in 2", "'in' needs"),
        ("[1][5]", "out of range"),
        ("int('1.5')", "cannot read"),
        ("float('nan')", "finite"),
        ("str([1])", "scalar"),
        ("len(1)", "len()"),
        ("min(1, 'a')", "all numbers or all strings"),
    ],
)
def test_evaluation_errors_are_bounded_and_typed(source: str, message: str) -> None:
    expr = parse_expression(source)
    with pytest.raises(EvalError, match=message) as info:
        expr.evaluate({"x": 2**4000})
    assert 0 <= info.value.position < len(source)


def test_parsed_expressions_pickle() -> None:
    expr = parse_expression("x.a * 2 > 3 and lower(x.s) in ['a', 'b']")
    copy = pickle.loads(pickle.dumps(expr))
    assert copy.evaluate({"x": {"a": 2, "s": "A"}}) is True
    assert copy.source == expr.source


# --- agreement with Python's own arithmetic on a safe generated subset ---------------------

_ints = st.integers(-20, 20).map(str)


def _binary(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["+", "-", "*", "//", "%"])
    return st.one_of(
        st.tuples(children, ops, children).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"-{c}"),
        st.tuples(children, st.integers(0, 3)).map(lambda t: f"({t[0]}) ** {t[1]}"),
    )


arithmetic_sources = st.recursive(_ints, _binary, max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(source=arithmetic_sources)
def test_integer_arithmetic_agrees_with_python(source: str) -> None:
    # Python is only the oracle here, on generated digit-and-operator strings.
    try:
        expected: Any = eval(source, {"__builtins__": {}}, {})
    except ZeroDivisionError:
        with pytest.raises(EvalError, match="zero"):
            parse_expression(source).evaluate({})
        return
    if abs(expected).bit_length() > 4096:
        with pytest.raises(EvalError, match="bits"):
            parse_expression(source).evaluate({})
        return
    assert parse_expression(source).evaluate({}) == expected

"""Properties of the condition language: whatever the input, `condition_parse` answers with
a Condition or ValidationFailed and nothing else; a where-expression over constants
evaluates exactly as Python's own `eval` does (a differential test)."""

from __future__ import annotations

import ast
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trace_web.alerts.conditions import Condition, condition_parse
from trace_web.errors import ValidationFailed

TRANSFER = "Transfer(address indexed from, address indexed to, uint256 value)"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["log", "transaction", "0x" + "ab" * 20, "0xa9059cbb", TRANSFER]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["match", "address", "from", "to", "selector", "function", "event", "where", "x"]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)

# Pieces of expressions, good and hostile, glued at random.
TOKENS = [
    "value", "from", "to", "amount", "success", "to_address", "input", "nonce", "x", "__import__",
    "and", "or", "not", "in", "is", "None", "True", "False", "lambda", "if", "else", "for",
    "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "//", "%", "**", "/", "<<", "@", ":=",
    "(", ")", "[", "]", "{", "}", ",", ".", ":", "'", '"', "#", "\\", "\n", " ",
    "0", "1", "10", "10**18", "2**256", "9**9**9", "'0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266'",
    "'0x'", "1.5", "0x10", "1_000", "f'x'", "b'x'", "...", "\x00", "\ud800", "é",
]  # fmt: skip


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_is_a_condition_or_validation_failed(data):
    try:
        assert isinstance(condition_parse(data), Condition)
    except ValidationFailed as exc:
        assert exc.details and all(line.startswith("condition") for line in exc.details)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(["log", "transaction"]),
    st.one_of(
        st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join),
        st.lists(st.sampled_from(TOKENS), max_size=25).map("".join),
        st.text(alphabet=string.printable, max_size=60),
        st.text(max_size=40),
    ),
)
def test_any_where_string_is_a_condition_or_validation_failed(match, where):
    data = {"match": match, "where": where}
    if match == "log":
        data["event"] = TRANSFER
    else:
        data["function"] = "transfer(address to, uint256 amount)"
    try:
        cond = condition_parse(data)
    except ValidationFailed as exc:
        assert exc.details and all(line.startswith("condition.") for line in exc.details)
        return
    # what was accepted evaluates, over any values of its fields, to a boolean without error
    for env in ({}, {name: None for name in cond.fields}, {name: 1 for name in cond.fields}):
        assert cond.where.evaluate(env) in (True, False)


# --- differential: our evaluation against Python's over the same constants ----------------------
small_ints = st.integers(min_value=-1000, max_value=1000)


def arithmetic(depth: int = 2):
    leaf = small_ints.map(lambda n: f"({n})")
    if depth == 0:
        return leaf
    inner = arithmetic(depth - 1)
    ops = st.sampled_from(["+", "-", "*", "//", "%"])
    power = st.tuples(st.integers(-20, 20), st.integers(0, 40)).map(lambda p: f"(({p[0]})**{p[1]})")
    return st.one_of(
        leaf, power, st.tuples(inner, ops, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    )


def comparison():
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    chain = st.tuples(arithmetic(), ops, arithmetic(), ops, arithmetic()).map(
        lambda t: f"{t[0]} {t[1]} {t[2]} {t[3]} {t[4]}"
    )
    single = st.tuples(arithmetic(), ops, arithmetic()).map(lambda t: f"{t[0]} {t[1]} {t[2]}")
    member = st.tuples(
        arithmetic(1), st.sampled_from(["in", "not in"]), st.lists(small_ints, max_size=5)
    ).map(lambda t: f"{t[0]} {t[1]} {t[2]!r}")
    strings = st.tuples(
        st.sampled_from(["'a'", "'b'", "'ab'", "''"]),
        st.sampled_from(["==", "!=", "<", ">=", "in", "not in"]),
        st.sampled_from(["'a'", "'b'", "'ab'", "''"]),
    ).map(" ".join)
    return st.one_of(single, chain, member, strings, st.sampled_from(["True", "False"]))


boolean = st.recursive(
    comparison(),
    lambda inner: st.one_of(
        inner.map(lambda e: f"not ({e})"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
    ),
    max_leaves=6,
)


def _python(node: ast.AST) -> object:
    return eval(compile(ast.Expression(node), "<where>", "eval"), {"__builtins__": {}})  # noqa: S307


def _divides_by_zero(where: str) -> bool:
    """Whether any `//` or `%` in `where` has a zero divisor, even one Python's and/or would
    skip: constants are folded when the condition is parsed, all of them."""
    for node in ast.walk(ast.parse(where, mode="eval")):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv | ast.Mod):
            try:
                if _python(node.right) == 0:
                    return True
            except ZeroDivisionError:
                return True
    return False


def _beyond_cap(where: str) -> bool:
    """Whether some constant computed on the way is beyond ±2**256 (the cap)."""
    for node in ast.walk(ast.parse(where, mode="eval")):
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            try:
                if abs(_python(node)) > 2**256:
                    return True
            except ZeroDivisionError:
                continue
    return False


@settings(max_examples=1000, deadline=None)
@given(boolean)
def test_constant_expressions_evaluate_as_python_does(where):
    try:
        cond = condition_parse({"match": "transaction", "where": where})
    except ValidationFailed as exc:
        # refused only for a division by zero or a constant beyond the cap
        message = str(exc)
        assert ("division by zero" in message and _divides_by_zero(where)) or (
            "beyond" in message and _beyond_cap(where)
        ), (where, exc.details)
        return
    assert not _divides_by_zero(where), where
    expected = eval(where, {"__builtins__": {}}, {})  # noqa: S307 - generated constants only
    assert cond.where.evaluate({}) is expected, where


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**256 - 1),
    st.integers(min_value=0, max_value=2**256 - 1),
    st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
)
def test_field_comparisons_evaluate_as_python_does(value, constant, op):
    cond = condition_parse({"match": "transaction", "where": f"value {op} {constant}"})
    assert cond.where.evaluate({"value": value}) is eval(f"{value} {op} {constant}")  # noqa: S307

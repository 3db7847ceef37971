"""The `where` of a condition: a Python expression parsed with `ast` under a whitelist,
type-checked against the fields it may name, its constant arithmetic folded with a cap, and
evaluated over one row without `eval` (a small tree of our own nodes)."""

from __future__ import annotations

import ast
import io
import keyword
import tokenize
import warnings
from dataclasses import dataclass
from typing import Any

from trace_operators.validation import Problems

from .abi import _is_hex, checksum_ok

WHERE_MAX_CHARS = 10_000
MAX_DEPTH = 50
MAX_NODES = 5_000
MAX_LIST_ITEMS = 1_000
MAX_STRING_CHARS = 1_000
# Constants (and every step of folding them) stay within uint256's range and its negation.
CONST_MAX = 2**256
# Python keywords an expression needs; any other keyword may still be an argument name
# (`Transfer(address indexed from, ...)`) and is then read as that name.
_EXPRESSION_KEYWORDS = {"and", "or", "not", "in", "is", "True", "False", "None"}


@dataclass(frozen=True)
class Const:
    value: Any
    kind: str  # int, str, bool, none, list


@dataclass(frozen=True)
class Field:
    name: str
    kind: str


@dataclass(frozen=True)
class Not:
    operand: Any


@dataclass(frozen=True)
class BoolOp:
    is_and: bool
    operands: tuple[Any, ...]


@dataclass(frozen=True)
class Compare:
    left: Any
    ops: tuple[tuple[str, Any], ...]  # (operator, right operand), chained as Python chains


@dataclass(frozen=True)
class Expression:
    source: str
    root: Any
    names: frozenset[str]  # the fields it reads

    def evaluate(self, env: dict[str, Any]) -> bool:
        return bool(_eval(self.root, env))


class _Refused(Exception):
    def __init__(self, message: str, node: Any = None) -> None:
        super().__init__(message)
        self.message, self.node = message, node


def where_parse(
    text: str, fields: dict[str, str], *, ambiguous: dict[str, str] | None = None
) -> Expression:
    """`text` checked and compiled against `fields` (name -> int/str/bool/list), or Problems
    with one problem (path "") saying what is refused and at which line and column.
    `ambiguous` names may not be used (name -> why)."""
    if len(text) > WHERE_MAX_CHARS:
        raise Problems([("", f"longer than {WHERE_MAX_CHARS} characters")])
    ambiguous = ambiguous or {}
    source, mapping = _rewrite_keywords(text, {**fields, **ambiguous})
    try:
        # In parentheses, on lines of their own: the expression may span lines (YAML `|`),
        # and a trailing comment cannot swallow the closing parenthesis.
        with warnings.catch_warnings():  # SyntaxWarnings (`1(2)`) are the user's, not ours
            warnings.simplefilter("ignore")
            tree = ast.parse(f"(\n{source}\n)", mode="eval")
    except SyntaxError as exc:
        where = _position(text, mapping, source, exc.lineno, (exc.offset or 1) - 1, chars=True)
        message = exc.msg
        if "Exceeds the limit" in message:  # Python's position for it is the line's start
            message, where = "an integer literal of more than 4300 digits", ""
        raise Problems([("", f"syntax error: {message}{where}")]) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        message = "must not contain NUL" if isinstance(exc, ValueError) else "nested too deeply"
        raise Problems([("", message)]) from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise Problems([("", f"more than {MAX_NODES} terms")])
    compiler = _Compiler(fields, {v: k for k, v in mapping.names.items()}, ambiguous)
    try:
        root = compiler.boolean(tree.body, 0)
    except _Refused as exc:
        node = exc.node
        where = ""
        if node is not None and hasattr(node, "lineno"):
            where = _position(text, mapping, source, node.lineno, node.col_offset, chars=False)
        raise Problems([("", exc.message + where)]) from None
    return Expression(text, root, frozenset(compiler.used))


# --- keywords as names --------------------------------------------------------------------------
@dataclass
class _Mapping:
    names: dict[str, str]  # argument name (a keyword) -> placeholder
    shifts: list[tuple[int, int]]  # (offset in the rewritten text, offset in the original)


def _rewrite_keywords(text: str, fields: dict[str, str]) -> tuple[str, _Mapping]:
    """`text` with each keyword that is also a field name (`from`) replaced by a
    placeholder identifier, and how offsets map back to the original."""
    wanted = {n for n in fields if keyword.iskeyword(n) and n not in _EXPRESSION_KEYWORDS}
    mapping = _Mapping({}, [(0, 0)])
    if not wanted:
        return text, mapping
    for name in sorted(wanted):
        placeholder = f"_kw_{name}"
        while placeholder in fields:
            placeholder += "_"
        mapping.names[name] = placeholder
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text, mapping  # ast.parse will say what is wrong, at the right place
    line_starts = _line_starts(text)
    out, last = [], 0
    for token in tokens:
        if token.type == tokenize.NAME and token.string in mapping.names:
            start = line_starts[token.start[0] - 1] + token.start[1]
            out.append(text[last:start])
            rewritten_start = sum(len(p) for p in out)
            out.append(mapping.names[token.string])
            last = start + len(token.string)
            mapping.shifts.append((rewritten_start, start))
            mapping.shifts.append((rewritten_start + len(out[-1]), last))
    out.append(text[last:])
    return "".join(out), mapping


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for index, char in enumerate(text):
        if char == "\n":
            starts.append(index + 1)
    return starts


def _position(
    original: str, mapping: _Mapping, source: str, lineno: int | None, col: int, *, chars: bool
) -> str:
    """` (column C)` or ` (line L, column C)` in the original text (1-based) for a position
    in the rewritten one (`col` in characters or, from ast nodes, in UTF-8 bytes)."""
    if lineno is None:
        return ""
    lineno -= 1  # the opening parenthesis's line
    starts = _line_starts(source)
    if lineno < 1:
        offset = 0
    elif lineno > len(starts):
        offset = len(source)
    else:
        line_start = starts[lineno - 1]
        if not chars:
            line = source[line_start:].split("\n", 1)[0]
            col = len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))
        offset = min(line_start + max(col, 0), len(source))
    base_new, base_old = max((s for s in mapping.shifts if s[0] <= offset), default=(0, 0))
    inside_placeholder = any(a < offset < b for a, b in _placeholder_spans(mapping))
    offset = base_old if inside_placeholder else base_old + (offset - base_new)
    original_starts = _line_starts(original)
    line_no = max(i for i, s in enumerate(original_starts) if s <= offset) + 1
    column = offset - original_starts[line_no - 1] + 1
    if len(original_starts) == 1:
        return f" (column {column})"
    return f" (line {line_no}, column {column})"


def _placeholder_spans(mapping: _Mapping) -> list[tuple[int, int]]:
    shifts = mapping.shifts[1:]
    return [(shifts[i][0], shifts[i + 1][0]) for i in range(0, len(shifts), 2)]


# --- compiling ------------------------------------------------------------------------------------
_COMPARE_OPS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_ARITH_OPS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_REFUSED = {
    ast.Call: "function calls are not allowed",
    ast.Attribute: "attribute access (.name) is not allowed",
    ast.Subscript: "subscripts ([...]) are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.IfExp: "conditional expressions (a if c else b) are not allowed",
    ast.NamedExpr: "assignments (:=) are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Set: "sets are not allowed: use a list [...]",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "* is not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Slice: "slices are not allowed",
}
_KIND_WORDS = {"int": "an integer", "str": "a string", "bool": "a boolean", "none": "None"}


def _kind_word(kind: str) -> str:
    return _KIND_WORDS.get(kind, "a list")


class _Compiler:
    def __init__(
        self, fields: dict[str, str], placeholders: dict[str, str], ambiguous: dict[str, str]
    ) -> None:
        self.fields, self.placeholders, self.ambiguous = fields, placeholders, ambiguous
        self.used: set[str] = set()

    def refuse(self, node: ast.AST) -> _Refused:
        for kind, message in _REFUSED.items():
            if isinstance(node, kind):
                return _Refused(message, node)
        if isinstance(node, ast.BinOp):
            op = type(node.op).__name__
            if isinstance(node.op, ast.Div):
                return _Refused("/ is not allowed: use // (integer division)", node)
            return _Refused(f"operator {op} is not allowed", node)
        if isinstance(node, ast.UnaryOp):
            return _Refused(f"operator {type(node.op).__name__} is not allowed", node)
        return _Refused(f"{type(node).__name__} is not allowed", node)

    def boolean(self, node: ast.AST, depth: int) -> Any:
        """A sub-expression that must be true or false: and/or/not, a comparison, a
        boolean field or constant."""
        self._depth(node, depth)
        if isinstance(node, ast.BoolOp):
            operands = tuple(self.boolean(v, depth + 1) for v in node.values)
            return BoolOp(isinstance(node.op, ast.And), operands)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Not(self.boolean(node.operand, depth + 1))
        if isinstance(node, ast.Compare):
            return self.compare(node, depth)
        value = self.value(node, depth)
        if _kind_of(value) != "bool":
            raise _Refused(
                f"must be a comparison or a boolean, not {_kind_word(_kind_of(value))}", node
            )
        return value

    def compare(self, node: ast.Compare, depth: int) -> Compare:
        left = self.value(node.left, depth + 1)
        ops: list[tuple[str, Any]] = []
        previous = left
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            op = _COMPARE_OPS.get(type(op_node))
            if op is None:
                raise _Refused("'is' is not allowed: use == or !=", right_node)
            right = self.value(right_node, depth + 1, sequence_ok=op in ("in", "not in"))
            self._check_types(previous, op, right, right_node)
            ops.append((op, right))
            previous = right
        return Compare(left, tuple(ops))

    def _check_types(self, left: Any, op: str, right: Any, node: ast.AST) -> None:
        lk, rk = _kind_of(left), _kind_of(right)
        if op in ("in", "not in"):
            if rk == "str" and lk in ("str", "none"):
                return
            if rk != "list":
                raise _Refused(f"the right of '{op}' must be a list or a string", node)
            if lk == "list":
                raise _Refused(f"the left of '{op}' must not be a list", node)
            if isinstance(right, Const):
                for item in right.value:
                    if not _eq_ok(lk, _const_kind(item)):
                        raise _Refused(
                            f"compares {_kind_word(lk)} with {_kind_word(_const_kind(item))}",
                            node,
                        )
            return
        if lk == "list" or rk == "list":
            raise _Refused(f"a list is only allowed on the right of 'in' (not '{op}')", node)
        if op in ("==", "!="):
            if not _eq_ok(lk, rk):
                raise _Refused(f"compares {_kind_word(lk)} with {_kind_word(rk)}", node)
            return
        if not (lk == rk and lk in ("int", "str")):
            raise _Refused(
                f"'{op}' needs two integers or two strings, not {_kind_word(lk)} and "
                f"{_kind_word(rk)}",
                node,
            )

    def value(self, node: ast.AST, depth: int, *, sequence_ok: bool = False) -> Any:
        """An operand of a comparison: a field, a constant, or (right of `in`) a list."""
        self._depth(node, depth)
        if isinstance(node, ast.Name):
            name = self.placeholders.get(node.id, node.id)
            if name in self.ambiguous:
                raise _Refused(self.ambiguous[name], node)
            if name not in self.fields:
                raise _Refused(f"unknown name {name!r}{_suggest(name, self.fields)}", node)
            self.used.add(name)
            return Field(name, self.fields[name])
        if isinstance(node, ast.List | ast.Tuple):
            if not sequence_ok:
                raise _Refused("a list is only allowed on the right of 'in' / 'not in'", node)
            if len(node.elts) > MAX_LIST_ITEMS:
                raise _Refused(f"a list of more than {MAX_LIST_ITEMS} items", node)
            items = tuple(self.constant(e, depth + 1) for e in node.elts)
            try:
                return Const(frozenset(items), "list")
            except TypeError:  # pragma: no cover - constants are hashable
                raise _Refused("list items must be constants", node) from None
        if isinstance(node, ast.BoolOp | ast.Compare) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        ):
            raise _Refused("put parentheses around a comparison used as a value", node)
        value = self.constant(node, depth)
        return Const(value, _const_kind(value))

    def constant(self, node: ast.AST, depth: int) -> Any:
        """An integer, string, boolean or None, with integer arithmetic folded (capped)."""
        self._depth(node, depth)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or value is None:
                return value
            if isinstance(value, int):
                return _capped(value, node)
            if isinstance(value, str):
                if len(value) > MAX_STRING_CHARS:
                    raise _Refused(f"a string longer than {MAX_STRING_CHARS} characters", node)
                if _is_hex(value):
                    if len(value) == 42 and not checksum_ok(value):
                        raise _Refused(f"address {value!r} has a bad EIP-55 checksum", node)
                    return value.lower()
                return value
            raise _Refused(f"{type(value).__name__} constants are not allowed", node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self._int(node.operand, depth + 1)
            return _capped(-operand if isinstance(node.op, ast.USub) else operand, node)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            left, right = self._int(node.left, depth + 1), self._int(node.right, depth + 1)
            return _fold(_ARITH_OPS[type(node.op)], left, right, node)
        if isinstance(node, ast.Name):
            raise _Refused("arithmetic is only allowed on constants, not on fields", node)
        raise self.refuse(node)

    def _int(self, node: ast.AST, depth: int) -> int:
        if isinstance(node, ast.Name):
            raise _Refused("arithmetic is only allowed on constants, not on fields", node)
        value = self.constant(node, depth)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Refused("arithmetic is only allowed on integers", node)
        return value

    def _depth(self, node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} deep", node)


def _capped(value: int, node: ast.AST) -> int:
    if abs(value) > CONST_MAX:
        raise _Refused("a constant beyond ±2**256", node)
    return value


def _fold(op: str, left: int, right: int, node: ast.AST) -> int:
    """`left op right`, refused (before it is computed) when the result would leave the cap."""
    if op in ("//", "%") and right == 0:
        raise _Refused("division by zero", node)
    if op == "**":
        if right < 0:
            raise _Refused("negative exponents are not allowed", node)
        if abs(left) > 1 and (right > 300 or (abs(left).bit_length() - 1) * right > 257):
            raise _Refused("a constant beyond ±2**256", node)
        return _capped(left**right, node)
    if op == "*" and left.bit_length() + right.bit_length() > 260:
        raise _Refused("a constant beyond ±2**256", node)
    result = {
        "+": lambda: left + right,
        "-": lambda: left - right,
        "*": lambda: left * right,
        "//": lambda: left // right,
        "%": lambda: left % right,
    }[op]()
    return _capped(result, node)


def _const_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    return "none"


def _kind_of(node: Any) -> str:
    return node.kind if isinstance(node, Const | Field) else "bool"


def _eq_ok(a: str, b: str) -> bool:
    return a == b or "none" in (a, b)


def _suggest(name: str, fields: dict[str, str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- evaluating -----------------------------------------------------------------------------------
def _eval(node: Any, env: dict[str, Any]) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Field):
        return env.get(node.name)
    if isinstance(node, Not):
        return not _eval(node.operand, env)
    if isinstance(node, BoolOp):
        if node.is_and:
            return all(_eval(o, env) for o in node.operands)
        return any(_eval(o, env) for o in node.operands)
    left = _eval(node.left, env)
    for op, right_node in node.ops:
        right = _eval(right_node, env)
        if not _compare(op, left, right):
            return False
        left = right
    return True


def _compare(op: str, left: Any, right: Any) -> bool:
    """Python's comparison, except that an order or membership test against a missing value
    (NULL, e.g. `to_address` of a contract creation) is simply false."""
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op in ("in", "not in"):
        if right is None or (left is None and isinstance(right, str)):
            return False
        try:
            found = left in right
        except TypeError:
            return False
        return found if op == "in" else not found
    if left is None or right is None:
        return False
    try:
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError:
        return False

"""A condition as the one SELECT the query gate accepts: its match's relation over one chain
and an end-exclusive block range, the address, topic0 and selector filters pushed down, the
block's time joined from `blocks`, in block order. Literals are inlined only after they are
checked again here (hex of the exact length, integers), so no user text reaches the SQL."""

from __future__ import annotations

import re

from trace_chain import chain_schema
from trace_operators.validation import BIGINT_MAX

from .expression import BoolOp, Compare, Const, Field
from .spec import Condition

BLOCK_TIME = "block_time"  # the extra column: the block's `timestamp`, unix seconds
_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
_SELECTOR = re.compile(r"^0x[0-9a-f]{8}$")
_HASH = re.compile(r"^0x[0-9a-f]{64}$")
_HEX = re.compile(r"^0x[0-9a-f]{0,1000}$")
# Integer constants pushed into SQL stay where DuckDB compares them exactly with the column:
# BIGINT columns within int64, DECIMAL(38, 0) wei columns below 10**37 (a larger literal
# would be a DOUBLE).
_INT_RANGE = {"int64": 2**63 - 1, "wei": 10**37}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "in": "in"}


def _literal(value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.match(value):
        raise ValueError(f"refusing to inline {value[:80]!r}: not {pattern.pattern}")
    return f"'{value}'"


def _int(name: str, value: object, low: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= BIGINT_MAX:
        raise ValueError(f"{name} must be an integer in [{low}, 2**63 - 1], got {value!r}")
    return value


def condition_select(cond: Condition, *, chain_id: int, range_start: int, range_end: int) -> str:
    """The SELECT (see module docstring). Raises ValueError for a range that is not one or a
    value that is not what condition_parse makes (a Condition built by hand)."""
    chain_id = _int("chain_id", chain_id)
    start, end = _int("range_start", range_start), _int("range_end", range_end)
    if end < start:
        raise ValueError(f"range_end {end} is below range_start {start}")
    dataset = cond.dataset
    columns = ", ".join(f"r.{name}" for name in chain_schema.column_names(dataset))
    where = [
        f"r.chain_id = {chain_id}",
        f"r.block_number >= {start}",
        f"r.block_number < {end}",
    ]
    if cond.match == "log":
        where += _in("r.address", cond.addresses)
        if cond.topic0 is not None:
            where.append(f"r.topic0 = {_literal(cond.topic0, _HASH)}")
    else:
        where += _in("r.from_address", cond.from_addresses)
        where += _in("r.to_address", cond.to_addresses)
        if cond.selector is not None:
            # `input` is lowercase hex; the selector is checked hex: no LIKE metacharacters
            where.append(f"r.input LIKE '{_literal(cond.selector, _SELECTOR)[1:-1]}%'")
    where += _pushed_down(cond)
    order = ", ".join(f"r.{key}" for key in chain_schema.KEYS[dataset])
    # The block filters repeat on `b` so each side of the join is pruned to the range.
    return (
        f"SELECT {columns}, b.timestamp AS {BLOCK_TIME}\n"
        f"FROM {dataset} AS r\n"
        f"LEFT JOIN blocks AS b ON b.chain_id = r.chain_id AND b.block_number = r.block_number"
        f" AND b.block_hash = r.block_hash AND b.chain_id = {chain_id}"
        f" AND b.block_number >= {start} AND b.block_number < {end}\n"
        f"WHERE {' AND '.join(where)}\n"
        f"ORDER BY {order}"
    )


def _in(column: str, values: tuple[str, ...]) -> list[str]:
    if not values:
        return []
    listed = ", ".join(_literal(v, _ADDRESS) for v in values)
    return [f"{column} IN ({listed})"]


def _pushed_down(cond: Condition) -> list[str]:
    """The top-level `and` terms of the where-expression that SQL can test exactly as the
    evaluator does, as SQL: a column compared with a constant (`value > 10**18`, `nonce ==
    3`, `to_address in [...]`, `success`). They only narrow what is read: the whole
    expression is still evaluated on each row. Left out, as SQL's NULL would differ: `!=`,
    `not in`, `not`, `None`, and anything over arguments (decoded in the worker)."""
    if cond.where is None:
        return []
    root = cond.where.root
    terms = root.operands if isinstance(root, BoolOp) and root.is_and else (root,)
    kinds = {c.name: c.kind for c in chain_schema.COLUMNS[cond.dataset]}
    out = []
    for term in terms:
        if isinstance(term, Field) and kinds.get(term.name) == "bool":
            out.append(f"r.{term.name} = true")
        elif isinstance(term, Compare) and len(term.ops) == 1:
            sql = _comparison(term.left, *term.ops[0], kinds)
            if sql is not None:
                out.append(sql)
    return out


def _comparison(left: object, op: str, right: object, kinds: dict[str, str]) -> str | None:
    if isinstance(left, Const) and isinstance(right, Field) and op in _FLIPPED and op != "in":
        left, op, right = right, _FLIPPED[op], left
    if not (isinstance(left, Field) and isinstance(right, Const)) or left.name not in kinds:
        return None
    kind, column = kinds[left.name], f"r.{left.name}"
    if op == "in":
        values = sorted(right.value, key=repr) if isinstance(right.value, frozenset) else []
        literals = [_constant(v, kind) for v in values]
        if not literals or any(v is None for v in literals):
            return None
        return f"{column} IN ({', '.join(literals)})"  # type: ignore[arg-type]
    if op not in ("==", "<", "<=", ">", ">="):
        return None
    literal = _constant(right.value, kind)
    if literal is None or (op != "==" and kind not in _INT_RANGE):
        return None
    return f"{column} {'=' if op == '==' else op} {literal}"


def _constant(value: object, kind: str) -> str | None:
    """`value` as a SQL literal DuckDB compares with a `kind` column exactly, or None."""
    if kind in _INT_RANGE:
        exact = isinstance(value, int) and not isinstance(value, bool)
        return str(int(value)) if exact and abs(value) < _INT_RANGE[kind] else None
    if kind == "text" and isinstance(value, str) and _HEX.match(value):
        return f"'{value}'"
    if kind == "bool" and isinstance(value, bool):
        return "true" if value else "false"
    return None

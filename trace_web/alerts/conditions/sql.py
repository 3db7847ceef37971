"""A condition as the one SELECT the query gate accepts: its match's relation over one chain
and an end-exclusive block range, the address, topic0 and selector filters pushed down, the
block's time joined from `blocks`, in block order. Literals are inlined only after they are
checked again here (hex of the exact length, integers), so no user text reaches the SQL."""

from __future__ import annotations

import re

from trace_chain import chain_schema
from trace_operators.validation import BIGINT_MAX

from .spec import Condition

BLOCK_TIME = "block_time"  # the extra column: the block's `timestamp`, unix seconds
_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
_SELECTOR = re.compile(r"^0x[0-9a-f]{8}$")
_HASH = re.compile(r"^0x[0-9a-f]{64}$")


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

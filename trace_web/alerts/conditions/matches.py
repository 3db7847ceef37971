"""A condition evaluated over the rows its SELECT returned: each row's columns read in the
chain schema's types, its event or call arguments decoded, the where-expression applied, and
each match described as the alert-event fields plus a JSON-safe payload."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from trace_chain import chain_schema

from .abi import Signature, Undecodable, call_decode, log_decode
from .spec import Condition
from .sql import BLOCK_TIME

log = logging.getLogger(__name__)

# JSON numbers are exact only up to 2**53 in JavaScript (and many JSON readers).
JSON_SAFE_INT = 2**53 - 1
# `input` and `data` past this many characters are cut in the payload (a contract creation's
# input is its whole bytecode); the match itself was evaluated over all of it.
PAYLOAD_HEX_MAX = 4096
# A payload is cut to this size (JSON, compact): half the sink's limit (16 KB), so the rest
# of an event row never pushes a batch into the dead-letter queue.
PAYLOAD_MAX_BYTES = 8 * 1024
KEY_MAX_PATH = 190  # a trace_address longer than this is keyed by its digest


@dataclass
class Evaluation:
    """What a batch of rows gave: the matches, in row order, and the rows that could not be
    decoded (their identity: block number and hash, tx hash, log index, and why)."""

    matches: list[dict[str, Any]] = field(default_factory=list)
    undecodable: list[dict[str, Any]] = field(default_factory=list)


def condition_evaluate(cond: Condition, columns: list[str], rows: list[list[Any]]) -> Evaluation:
    """`rows` (with `columns`, as condition_sql selects them) evaluated. A row that does not
    decode (data of the wrong length for the ABI, topics that do not fit its indexed
    arguments, a value of the wrong type) is no match and no error: it is listed in
    `undecodable` (a column of the wrong type that the where-expression does not read is
    found only when the row otherwise matches)."""
    kinds = {c.name: c.kind for c in chain_schema.COLUMNS[cond.dataset]}
    position = {name: i for i, name in enumerate(columns)}
    missing = [name for name in kinds if name not in position]
    if missing:
        raise ValueError(f"rows lack the columns {missing}: select them with condition_sql")
    # Before the where-expression only what it and the decoding read is converted; the
    # rest of a row, only when it matches (most rows do not).
    decoding = ("topic1", "topic2", "topic3", "data") if cond.match == "log" else ("input",)
    needed = set(cond.where.names if cond.where else ()) & set(kinds)
    if cond.signature is not None:
        needed.update(decoding)
    early = [(name, position[name], kinds[name]) for name in sorted(needed)]
    result = Evaluation()
    for raw in rows:
        try:
            env = {name: _typed(raw[at], kind) for name, at, kind in early}
            args = _arguments(cond, env)
            env.update((k, v) for k, v in args.items() if k in cond.fields)
            if cond.where is not None and not cond.where.evaluate(env):
                continue
            row = {name: raw[position[name]] for name in kinds}
            env.update((n, _typed(row[n], k)) for n, k in kinds.items() if n not in needed)
        except (Undecodable, ValueError, TypeError) as exc:
            row = {name: raw[position[name]] for name in kinds}
            result.undecodable.append({**_identity(row), "reason": str(exc) or type(exc).__name__})
            continue
        block_time = raw[position[BLOCK_TIME]] if BLOCK_TIME in position else None
        result.matches.append(_match(cond, env, args, block_time))
    return result


def condition_rows_matches(cond: Condition, columns: list[str], rows: list[list[Any]]) -> list:
    """The matches of `rows`; undecodable rows are counted in a log line (`alert_undecodable`)
    and left out."""
    evaluation = condition_evaluate(cond, columns, rows)
    if evaluation.undecodable:
        log.info(
            "%d rows did not decode as %s",
            len(evaluation.undecodable),
            cond.signature.canonical if cond.signature else cond.dataset,
            extra={
                "trace_event": "alert_undecodable",
                "count": len(evaluation.undecodable),
                "first": evaluation.undecodable[0],
            },
        )
    return evaluation.matches


def _typed(value: Any, kind: str) -> Any:
    """A column's value in the chain schema's type (the query API gives wei as decimal text,
    DuckDB as Decimal); hex text lowercased."""
    if value is None:
        return None
    if kind in ("int64", "wei"):
        if isinstance(value, bool):
            raise ValueError("a boolean where an integer belongs")
        if isinstance(value, int):
            return value
        if isinstance(value, str | Decimal):
            number = Decimal(value)
            if number != number.to_integral_value():
                raise ValueError(f"{value!r} is not a whole number")
            return int(number)
        raise ValueError(f"{type(value).__name__} where an integer belongs")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{type(value).__name__} where a boolean belongs")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} where text belongs")
    return value.lower() if value.startswith(("0x", "0X")) else value


def _arguments(cond: Condition, env: dict[str, Any]) -> dict[str, Any]:
    signature = cond.signature
    if signature is None:
        return {}
    if cond.match == "log":
        topics = [env["topic1"], env["topic2"], env["topic3"]]
        return log_decode(signature, topics, env["data"])
    return call_decode(signature, env["input"])


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    identity = {
        "block_number": row.get("block_number"),
        "block_hash": row.get("block_hash"),
        "tx_hash": row.get("transaction_hash"),
        "log_index": row.get("log_index"),
    }
    if "trace_address" in row:
        identity["trace_address"] = row["trace_address"]
    return identity


def trace_key(trace_address: str) -> str:
    """The event key of a trace match: several calls of one transaction are several events.
    A deep call's path past the sink's 200-character key is named by its digest."""
    if len(trace_address) <= KEY_MAX_PATH:
        return f"trace:{trace_address}"
    return "trace#" + hashlib.sha256(trace_address.encode()).hexdigest()


def _match(
    cond: Condition,
    env: dict[str, Any],
    args: dict[str, Any],
    block_time: Any,
) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    cut: list[str] = []
    for c in chain_schema.COLUMNS[cond.dataset]:
        value = env[c.name]
        if c.name in ("input", "data") and isinstance(value, str) and len(value) > PAYLOAD_HEX_MAX:
            value = value[:PAYLOAD_HEX_MAX]
            cut.append(c.name)
        payload[c.name] = str(value) if c.kind == "wei" and value is not None else _json(value)
    if cond.signature is not None:
        payload["signature"] = cond.signature.canonical
        payload["args"] = _json_args(cond.signature, args)
    cut = list(dict.fromkeys(cut + _fit(payload)))
    if cut:
        payload["truncated"] = cut
    time = block_time if isinstance(block_time, int) and not isinstance(block_time, bool) else None
    return {
        "block_number": env["block_number"],
        "block_hash": env["block_hash"],
        "tx_hash": env["transaction_hash"],
        "log_index": env.get("log_index") if cond.match == "log" else None,
        "key": trace_key(env["trace_address"]) if cond.match == "trace" else None,
        "block_time": time,
        "payload": payload,
    }


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))  # as the sink measures it


def _fit(payload: dict[str, Any]) -> list[str]:
    """Cut `payload` (in place) to PAYLOAD_MAX_BYTES: `input`/`data` to their first four
    bytes (a call's selector), then the largest arguments to None. Returns what was cut.
    The sink refuses a whole batch for one payload over its limit."""
    if _size(payload) <= PAYLOAD_MAX_BYTES:
        return []
    cut = []
    for name in ("input", "data"):
        value = payload.get(name)
        if isinstance(value, str) and len(value) > 10:
            payload[name] = value[:10]
            cut.append(name)
    args = payload.get("args") or {}
    for name in sorted(args, key=lambda n: -_size(args[n])):
        if _size(payload) <= PAYLOAD_MAX_BYTES:
            break
        args[name] = None
        cut.append(f"args.{name}")
    return cut


@functools.lru_cache(maxsize=1024)
def _abi_type(type_str: str) -> Any:
    from eth_abi.grammar import parse

    return parse(type_str)


def _json_args(signature: Signature, args: dict[str, Any]) -> dict[str, Any]:
    return {
        p.name: _json_abi(args[p.name], None if p.hashed else _abi_type(p.type))
        for p in signature.params
        if p.name is not None and p.name in args
    }


def _json_abi(value: Any, abi_type: Any) -> Any:
    """A decoded value as JSON, by its ABI type, so a field has one JSON type in every
    payload: integers of up to 53 bits (uint8 .. uint48, int8 .. int48) as numbers, wider
    ones as decimal strings (uint256 amounts); fixed-point as decimal strings."""
    if abi_type is None:  # an indexed string/bytes/array/tuple: its topic (a hash)
        return value
    if abi_type.is_array:
        return [_json_abi(v, abi_type.item_type) for v in value]
    if hasattr(abi_type, "components"):
        return [_json_abi(v, t) for v, t in zip(value, abi_type.components, strict=True)]
    if abi_type.base in ("uint", "int"):
        bits = abi_type.sub
        return value if bits <= 48 else str(value)
    if abi_type.base in ("fixed", "ufixed"):
        return str(value)
    return _json(value)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")  # Postgres jsonb cannot hold NUL
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > JSON_SAFE_INT:
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    return value

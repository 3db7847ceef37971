"""The one chain schema: every column of `blocks`, `transactions`, `logs` and `traces` — its
name, type, encoding and meaning — shared by the hot tables, Cryo backfills and compacted Parquet.

The hot tables are built from these columns (trace_chain/hot_schema.py), Cryo's output is
rewritten to them before it is published (`cryo_to_canonical`), compaction writes them, and
the query engine reads them; docs/schema.md is rendered from them (a test keeps it equal).
Encodings: hashes, addresses and byte strings are lowercase `0x` hex text; integers are 64-bit;
wei amounts are DECIMAL(38, 0) (exact, summable; 10^38 wei is far above any native supply).
Columns neither source can give for every block are left out, so every row has every column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = 1
DATASETS = ("blocks", "transactions", "logs", "traces")

Kind = Literal["int64", "text", "wei", "bool"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool
    description: str
    cryo: str | None = None  # Cryo's name for it, when it differs
    # Text as the node words it (an error message), not hex: never lowercased.
    verbatim: bool = False

    @property
    def cryo_name(self) -> str:
        return self.cryo or self.name


def _c(
    name: str,
    kind: Kind,
    description: str,
    *,
    null: bool = False,
    cryo: str | None = None,
    verbatim: bool = False,
):
    return Column(name, kind, null, description, cryo, verbatim)


COLUMNS: dict[str, tuple[Column, ...]] = {
    "blocks": (
        _c("chain_id", "int64", "EIP-155 chain id"),
        _c("block_number", "int64", "block height"),
        _c("block_hash", "text", "block hash, 0x + 64 hex"),
        _c("parent_hash", "text", "hash of the parent block"),
        _c("timestamp", "int64", "block time, unix seconds as the chain states it"),
        _c("miner", "text", "fee recipient (coinbase), 0x + 40 hex", null=True, cryo="author"),
        _c("gas_used", "int64", "gas used by the block's transactions", null=True),
        _c("base_fee_per_gas", "wei", "EIP-1559 base fee in wei; NULL before London", null=True),
        _c("size", "int64", "RLP size of the block in bytes", null=True),
        _c("extra_data", "text", "the block's extra data, 0x hex", null=True),
    ),
    "transactions": (
        _c("chain_id", "int64", "EIP-155 chain id"),
        _c("block_number", "int64", "height of the block holding it"),
        _c("block_hash", "text", "hash of the block holding it"),
        _c("transaction_index", "int64", "position in the block, from 0"),
        _c("transaction_hash", "text", "transaction hash, 0x + 64 hex"),
        _c("from_address", "text", "sender, 0x + 40 hex"),
        _c("to_address", "text", "recipient; NULL for a contract creation", null=True),
        _c("value", "wei", "wei transferred", cryo="value_string"),
        _c("gas_limit", "int64", "gas the sender allowed (the transaction's `gas`)", null=True),
        _c("gas_price", "wei", "wei per gas actually paid (effective price)", null=True),
        _c("max_fee_per_gas", "wei", "EIP-1559 fee cap; NULL for legacy", null=True),
        _c("max_priority_fee_per_gas", "wei", "EIP-1559 tip cap; NULL for legacy", null=True),
        _c("input", "text", "call data, 0x hex", null=True),
        _c("nonce", "int64", "sender's nonce", null=True),
        _c("transaction_type", "int64", "0 legacy, 1 access list, 2 EIP-1559, 3 blob", null=True),
        _c("success", "bool", "receipt status: true executed, false reverted", null=True),
        _c("gas_used", "int64", "gas used (receipt)", null=True),
    ),
    "logs": (
        _c("chain_id", "int64", "EIP-155 chain id"),
        _c("block_number", "int64", "height of the block holding it"),
        _c("block_hash", "text", "hash of the block holding it"),
        _c("transaction_index", "int64", "position of its transaction in the block"),
        _c("log_index", "int64", "position of the log in the block, from 0"),
        _c("transaction_hash", "text", "hash of the transaction that emitted it"),
        _c("address", "text", "contract that emitted it, 0x + 40 hex"),
        _c("topic0", "text", "event signature hash (non-anonymous events)", null=True),
        _c("topic1", "text", "first indexed argument", null=True),
        _c("topic2", "text", "second indexed argument", null=True),
        _c("topic3", "text", "third indexed argument", null=True),
        _c("data", "text", "non-indexed arguments, 0x hex", null=True),
    ),
    # Internal calls as `trace_block` (parity style) reports them, one row per call frame,
    # transactions' top-level calls included (docs/schema.md says why that method).
    "traces": (
        _c("chain_id", "int64", "EIP-155 chain id"),
        _c("block_number", "int64", "height of the block holding it"),
        _c("block_hash", "text", "hash of the block holding it"),
        _c("transaction_index", "int64", "position of its transaction in the block"),
        _c("transaction_hash", "text", "hash of the transaction it is part of"),
        _c(
            "trace_address",
            "text",
            "path of the call in its transaction's call tree: child indices joined by `_`; "
            "'' (empty) for the top-level call, `0` for its first subcall, `0_1` for that "
            "one's second",
        ),
        _c(
            "trace_type",
            "text",
            "`call`, `create` or `suicide` (selfdestruct)",
            cryo="action_type",
        ),
        _c(
            "call_type",
            "text",
            "`call`, `delegatecall`, `staticcall` or `callcode`; NULL unless a call",
            null=True,
            cryo="action_call_type",
        ),
        _c(
            "from_address",
            "text",
            "caller (creator, or the self-destructing contract), 0x + 40 hex",
            cryo="action_from",
        ),
        _c(
            "to_address",
            "text",
            "callee (for a suicide the refund address); NULL for a create",
            null=True,
            cryo="action_to",
        ),
        _c(
            "value",
            "wei",
            "wei moved by the frame (a suicide's: the balance refunded)",
            cryo="action_value",
        ),
        _c("gas", "int64", "gas given to the frame", null=True, cryo="action_gas"),
        _c(
            "gas_used",
            "int64",
            "gas the frame used, as trace_block counts it (the top-level call without the "
            "transaction's intrinsic gas); NULL when the node reports no result",
            null=True,
            cryo="result_gas_used",
        ),
        _c(
            "input",
            "text",
            "call data, or a create's init code, 0x hex",
            null=True,
            cryo="action_input",
        ),
        _c(
            "output",
            "text",
            "return (or revert) data, or a create's deployed code, 0x hex",
            null=True,
            cryo="result_output",
        ),
        _c(
            "error",
            "text",
            "why the frame failed, in the node's words (not lowercased); NULL if not",
            null=True,
            verbatim=True,
        ),
        _c("subtraces", "int64", "number of direct subcalls"),
        _c(
            "created_address",
            "text",
            "address of the contract a create made; NULL otherwise",
            null=True,
            cryo="result_address",
        ),
    ),
}
# What identifies a row within a chain (the hot tables' primary keys, the sort of every file).
KEYS = {
    "blocks": ("block_number",),
    "transactions": ("block_number", "transaction_index"),
    "logs": ("block_number", "log_index"),
    "traces": ("block_number", "transaction_index", "trace_address"),
}


def column_names(dataset: str) -> list[str]:
    return [c.name for c in COLUMNS[dataset]]


def arrow_type(kind: Kind) -> Any:
    import pyarrow as pa

    return {
        "int64": pa.int64(),
        "text": pa.string(),
        "wei": pa.decimal128(38, 0),
        "bool": pa.bool_(),
    }[kind]


def arrow_schema(dataset: str) -> Any:
    import pyarrow as pa

    return pa.schema(
        [pa.field(c.name, arrow_type(c.kind), nullable=c.nullable) for c in COLUMNS[dataset]],
        metadata={"trace.schema_version": str(SCHEMA_VERSION), "trace.dataset": dataset},
    )


# Cryo columns folded into canonical ones: a create's init code and deployed code are Cryo's
# `action_init` and `result_code`, the schema's `input` and `output` (as trace_block's rows
# become hot rows, trace_chain/adapter.py `trace_row`).
CRYO_FOLDED = {"traces": {"action_input": "action_init", "result_output": "result_code"}}


def cryo_columns(dataset: str) -> list[str]:
    """The Cryo `columns` option that extracts exactly what the canonical schema needs (Cryo
    names; `value_string` is Cryo's `value` with `u256_types: [string]`)."""
    names = [("value" if c.cryo_name == "value_string" else c.cryo_name) for c in COLUMNS[dataset]]
    return names + list(CRYO_FOLDED.get(dataset, {}).values())


def _cryo_fold(table: Any, dataset: str) -> Any:
    """Cryo's traces as the schema has them: rewards (no transaction) dropped, a create's
    init and deployed code in `input` and `output`."""
    import pyarrow.compute as pc

    folded = CRYO_FOLDED.get(dataset)
    if not folded:
        return table
    for name in ("action_type", *folded, *folded.values()):
        if name not in table.column_names:
            raise ValueError(f"cryo output for {dataset} has no column {name!r}")
    table = table.filter(pc.not_equal(table.column("action_type"), "reward"))
    for target, source in folded.items():
        merged = pc.coalesce(table.column(target), table.column(source))
        table = table.set_column(table.column_names.index(target), target, merged)
    return table


# Cryo options every canonical extraction uses: hex strings, not binary; wei as decimal text.
CRYO_OPTIONS = {"hex": True, "u256_types": ["string"]}


def cryo_to_canonical(table: Any, dataset: str) -> Any:
    """A table Cryo wrote (with CRYO_OPTIONS and `cryo_columns`) in the canonical schema:
    renamed, cast (uint32 -> int64, decimal text -> DECIMAL(38,0)), lowercase hex, in column
    order, sorted by the dataset's key. Raises ValueError naming a column that is missing or
    whose values do not fit."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _cryo_fold(table, dataset)
    columns = []
    for column in COLUMNS[dataset]:
        if column.cryo_name not in table.column_names:
            raise ValueError(f"cryo output for {dataset} has no column {column.cryo_name!r}")
        values = table.column(column.cryo_name)
        if column.kind == "text" and not column.verbatim:
            values = pc.utf8_lower(values.cast(pa.string()))
        try:
            columns.append(values.cast(arrow_type(column.kind)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{dataset}.{column.name}: {exc}") from None
    canonical = pa.Table.from_arrays(columns, schema=arrow_schema(dataset))
    return canonical.sort_by([(key, "ascending") for key in KEYS[dataset]])


def parquet_write(table: Any, path: Any, *, row_group_rows: int = 100_000) -> None:
    """Write canonical rows the way every cold file is written: sorted by the key already,
    zstd, row groups sized for pruning by block range, statistics on every column."""
    import pyarrow.parquet as pq

    pq.write_table(
        table,
        path,
        compression="zstd",
        row_group_size=row_group_rows,
        write_statistics=True,
    )


# --- files written before the one schema (Cryo's own layout, manifest without a version) -----
def v0_select(dataset: str, available: set[str]) -> str:
    """DuckDB select list reading a partition Cryo wrote before the one schema (binary hashes
    and byte strings, `author`, uint32 numbers, `value_string`) as canonical columns.
    `available` are the file's columns (its manifest's schema): one it lacks reads as NULL,
    so old history keeps answering, with less detail."""
    parts = []
    for column in COLUMNS[dataset]:
        source = column.cryo_name
        if source not in available:
            expression = f"CAST(NULL AS {DUCKDB_TYPES[column.kind]})"
        elif column.kind == "text":
            expression = f"'0x' || lower(hex({source}))"
        else:
            expression = f"CAST({source} AS {DUCKDB_TYPES[column.kind]})"
        parts.append(f"{expression} AS {column.name}")
    return ", ".join(parts)


DUCKDB_TYPES = {"int64": "BIGINT", "text": "VARCHAR", "wei": "DECIMAL(38, 0)", "bool": "BOOLEAN"}


def schema_markdown() -> str:
    """docs/schema.md's column tables, generated from COLUMNS."""
    kinds = {"int64": "BIGINT", "text": "TEXT", "wei": "DECIMAL(38,0)", "bool": "BOOLEAN"}
    lines: list[str] = []
    for dataset in DATASETS:
        key = ", ".join(KEYS[dataset])
        lines += [f"### `{dataset}` (key: chain_id, {key})", ""]
        lines += ["| column | type | null | Cryo | meaning |", "|---|---|---|---|---|"]
        for c in COLUMNS[dataset]:
            null = "yes" if c.nullable else "no"
            cryo = f"`{c.cryo}`" if c.cryo else ""
            lines.append(f"| `{c.name}` | {kinds[c.kind]} | {null} | {cryo} | {c.description} |")
        lines.append("")
    return "\n".join(lines)

"""Run one gated SELECT over a catalog: a sandbox per query (trace_chain/query/hardening.py)
whose relations are the unified `blocks`, `transactions`, `logs`, built inside the sandbox's
one transaction (the compaction line, the compacted cold segments and the hot rows read in one
Postgres snapshot), then the query under its time limit, its rows fetched up to the inline caps
(rows and bytes; one more row tells truncation). With an `Export`, a result past the inline
caps is streamed whole into a Parquet, CSV or JSON-lines file instead (up to the export's own
row cap), still under the time limit."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_chain.query.catalog import Catalog, ColdFile, compacted_files
from trace_chain.query.hardening import PostgresSource, S3Access, SandboxLimits, open_sandbox
from trace_chain.query.relations import HOT_CATALOG, line_sql, relation_sql, segments_sql


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float = 60.0
    max_rows: int = 10_000
    memory_limit: str = "1GB"
    threads: int = 2
    max_bytes: int | None = None  # inline cap on the rows' Arrow size


@dataclass(frozen=True)
class Export:
    """Where a result too large to answer inline goes: a local file the caller then stores."""

    path: Path
    format: str  # parquet | csv | jsonl
    max_rows: int
    always: bool = False  # write the file even when the rows would fit inline (batch jobs)


@dataclass
class QueryResult:
    table: Any  # pyarrow.Table of at most max_rows rows (empty when exported)
    truncated: bool  # more rows than fit: inline, or past the export's own cap
    seconds: float
    exported_rows: int | None = None  # set when the rows went to Export.path instead


def query_execute(
    sql: str,
    *,
    catalog: Catalog,
    limits: Limits,
    temp_dir: Path,
    s3: S3Access | None = None,
    export: Export | None = None,
) -> QueryResult:
    """`sql` must come from the gate (trace_chain.query.gate) for the catalog's datasets.
    Raises the trace_chain.query.errors family (QueryFailed, QueryTimedOut,
    SandboxSetupFailed)."""
    began = time.monotonic()
    hot = bool(catalog.hot_chain_ids) and catalog.hot_dsn is not None

    def build(conn: Any) -> tuple[dict[str, str], list[str]]:
        lines: dict[int, int | None] = {}
        compacted: list[ColdFile] = []
        if hot:
            for chain_id in sorted(catalog.hot_chain_ids):
                lines[chain_id] = conn.execute(line_sql(chain_id)).fetchone()[0]
                # The rows compaction moved out of the hot tables, as of this same snapshot:
                # whoever may read a chain's hot rows may read them once they are cold.
                rows = conn.execute(segments_sql(chain_id)).fetchall()
                compacted += compacted_files(chain_id, rows)
        readable = Catalog(
            datasets=catalog.datasets,
            hot_chain_ids=catalog.hot_chain_ids,
            cold=catalog.cold + tuple(compacted),
            hot_dsn=catalog.hot_dsn,
        )
        views, paths = {}, []
        for dataset in sorted(catalog.datasets):
            views[dataset], files = relation_sql(dataset, readable, lines)
            paths += files
        return views, sorted(set(paths))

    sandbox = open_sandbox(
        views=build,
        temp_directory=temp_dir,
        limits=SandboxLimits(memory_limit=limits.memory_limit, threads=limits.threads),
        postgres=PostgresSource(dsn=catalog.hot_dsn, alias=HOT_CATALOG) if hot else None,
        s3=s3,
    )
    with sandbox, sandbox.guard(limits.timeout_seconds):
        batch_rows = 65_536 if export is not None else min(limits.max_rows + 1, 65_536)
        reader = sandbox.connection.execute(sql).to_arrow_reader(batch_rows)
        batches, over = _fetch_inline(reader, limits)
        if export is not None and (over or export.always):
            rows, truncated = _export(reader, batches, export)
            return QueryResult(
                table=reader.schema.empty_table(),
                truncated=truncated,
                seconds=time.monotonic() - began,
                exported_rows=rows,
            )
    import pyarrow as pa

    table = pa.Table.from_batches(batches, schema=reader.schema)
    table = _inline_slice(table, limits)
    return QueryResult(table=table, truncated=over, seconds=time.monotonic() - began)


def _fetch_inline(reader: Any, limits: Limits) -> tuple[list[Any], bool]:
    """Batches up to the inline caps, and whether the result goes past them."""
    batches, rows, size = [], 0, 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if rows > limits.max_rows or (limits.max_bytes is not None and size > limits.max_bytes):
            return batches, True
    return batches, False


def _inline_slice(table: Any, limits: Limits) -> Any:
    """The first rows that fit both inline caps."""
    table = table.slice(0, limits.max_rows)
    if limits.max_bytes is None or table.nbytes <= limits.max_bytes:
        return table
    lo, hi = 0, table.num_rows  # the longest prefix within max_bytes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if table.slice(0, mid).nbytes <= limits.max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return table.slice(0, lo)


def _export(reader: Any, fetched: list[Any], export: Export) -> tuple[int, bool]:
    """Write the fetched batches and the rest of the reader to the export file, up to its row
    cap; returns (rows written, whether rows were left out)."""
    import itertools

    writer = _writer(export, reader.schema)
    written = 0
    try:
        for batch in itertools.chain(fetched, reader):
            room = export.max_rows - written
            if batch.num_rows > room:
                if room:
                    writer.write_batch(batch.slice(0, room))
                return export.max_rows, True
            writer.write_batch(batch)
            written += batch.num_rows
    finally:
        writer.close()
    return written, False


class JsonLinesWriter:
    """One JSON object per row, values as the API shows them (decimals as strings, bytes as
    0x hex, times in ISO 8601)."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write_batch(self, batch: Any) -> None:
        import json

        for row in batch.to_pylist():
            self._file.write(json.dumps({k: json_value(v) for k, v in row.items()}) + "\n")

    def close(self) -> None:
        self._file.close()


def json_value(value: Any) -> Any:
    """A value as JSON shows it exactly: decimals as strings, bytes as 0x hex, ISO times."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def _writer(export: Export, schema: Any) -> Any:
    if export.format == "jsonl":
        return JsonLinesWriter(export.path)
    if export.format == "csv":
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(str(export.path), schema)
    import pyarrow.parquet as pq

    return pq.ParquetWriter(str(export.path), schema, compression="zstd")

"""Run one gated SELECT over a catalog: a sandbox per query (trace_chain/query/hardening.py)
whose relations are the unified `blocks`, `transactions`, `logs`, built inside the sandbox's
one transaction (the compaction line, the compacted cold segments and the hot rows read in one
Postgres snapshot), then the query under its time limit, its rows fetched up to the row cap
(one more tells truncation)."""

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


@dataclass
class QueryResult:
    table: Any  # pyarrow.Table of at most max_rows rows
    truncated: bool  # the query had more rows than max_rows
    seconds: float


def query_execute(
    sql: str,
    *,
    catalog: Catalog,
    limits: Limits,
    temp_dir: Path,
    s3: S3Access | None = None,
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
        table, truncated = _fetch(sandbox.connection, sql, limits.max_rows)
    return QueryResult(table=table, truncated=truncated, seconds=time.monotonic() - began)


def _fetch(conn: Any, sql: str, max_rows: int) -> tuple[Any, bool]:
    import pyarrow as pa

    reader = conn.execute(sql).to_arrow_reader(min(max_rows + 1, 100_000))
    batches, rows = [], 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows > max_rows:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema)
    return table.slice(0, max_rows), table.num_rows > max_rows

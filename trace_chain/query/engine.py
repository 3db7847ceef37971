"""Run one gated SELECT over a catalog: a fresh in-memory DuckDB per query, the data DB attached
read-only, the unified relations created by trusted code inside one transaction (one Postgres
snapshot for the compaction line and the hot rows), the connection hardened, then the query,
interrupted at its time limit, its rows fetched up to the row cap (one more tells truncation).

Every engine failure becomes QueryFailed with a code; messages never carry paths or the DSN."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_chain.query.catalog import Catalog
from trace_chain.query.relations import HOT_CATALOG, line_sql, quote_literal, relation_sql


class QueryFailed(Exception):
    """The query could not run to the end: `code` is `timeout`, `too_large`, `invalid` (the
    engine refused it: a type error, an unknown column) or `unavailable` (the data DB)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


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


def extension_path(package: str) -> str:
    """The `.duckdb_extension` file a PyPI extension package ships (DuckDB cannot download
    extensions here, and must not at run time anywhere)."""
    import importlib

    module = importlib.import_module(package)
    found = sorted(Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
    if not found:
        raise QueryFailed("unavailable", f"the DuckDB extension package {package} has no file")
    return str(found[-1])


def query_execute(sql: str, *, catalog: Catalog, limits: Limits, temp_dir: Path) -> QueryResult:
    """`sql` must come from the gate (trace_chain.query.gate): the relations it names are the
    catalog's datasets, and nothing else is reachable."""
    import duckdb

    began = time.monotonic()
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        _prepare(con, catalog=catalog, limits=limits, temp_dir=temp_dir)
        table, truncated = _run(con, sql, limits)
        return QueryResult(table=table, truncated=truncated, seconds=time.monotonic() - began)
    except duckdb.InterruptException:
        raise QueryFailed(
            "timeout", f"the query ran longer than its limit of {limits.timeout_seconds:g} s"
        ) from None
    except duckdb.OutOfMemoryException:
        raise QueryFailed(
            "too_large", f"the query needed more memory than its limit ({limits.memory_limit})"
        ) from None
    except duckdb.IOException as exc:
        raise QueryFailed("unavailable", _scrub(str(exc))) from None
    except duckdb.Error as exc:
        raise QueryFailed("invalid", _scrub(str(exc))) from None
    finally:
        con.close()


def _prepare(con: Any, *, catalog: Catalog, limits: Limits, temp_dir: Path) -> None:
    hot = bool(catalog.hot_chain_ids) and catalog.hot_dsn is not None
    if hot:
        con.execute(f"LOAD {quote_literal(extension_path('duckdb_extension_postgres_scanner'))}")
        con.execute(
            f"ATTACH {quote_literal(catalog.hot_dsn)} AS {HOT_CATALOG} (TYPE postgres, READ_ONLY)"
        )
    # One transaction: every scan of the attached data DB reads one snapshot.
    con.execute("BEGIN")
    lines: dict[int, int | None] = {}
    if hot:
        for chain_id in sorted(catalog.hot_chain_ids):
            lines[chain_id] = con.execute(line_sql(chain_id)).fetchone()[0]
    paths: list[str] = []
    for dataset in sorted(catalog.datasets):
        definition, files = relation_sql(dataset, catalog, lines)
        con.execute(f"CREATE VIEW {dataset} AS {definition}")
        paths += files
    _harden(con, allowed_paths=sorted(set(paths)), limits=limits, temp_dir=temp_dir)


def _harden(con: Any, *, allowed_paths: list[str], limits: Limits, temp_dir: Path) -> None:
    """After the trusted set-up, before any user SQL: only the relations' own files are
    readable, nothing is installed or loaded, settings are locked (TRACE.md section 10)."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    allowed = ", ".join(quote_literal(p) for p in allowed_paths)
    for statement in (
        f"SET allowed_paths = [{allowed}]",
        f"SET temp_directory = {quote_literal(str(temp_dir))}",
        f"SET memory_limit = {quote_literal(limits.memory_limit)}",
        f"SET threads = {int(limits.threads)}",
        "SET enable_external_access = false",
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET lock_configuration = true",
    ):
        con.execute(statement)


def _run(con: Any, sql: str, limits: Limits) -> tuple[Any, bool]:
    import pyarrow as pa

    timer = threading.Timer(limits.timeout_seconds, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        reader = con.execute(sql).to_arrow_reader(min(limits.max_rows + 1, 100_000))
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows > limits.max_rows:
                break
        schema = reader.schema
    finally:
        timer.cancel()
    table = pa.Table.from_batches(batches, schema=schema)
    truncated = table.num_rows > limits.max_rows
    return table.slice(0, limits.max_rows), truncated


_PATHS = re.compile(r"(?:'[^']*(?:/|\\)[^']*'|\"[^\"]*(?:/|\\)[^\"]*\"|(?:host|dbname|user)=\S+)")


def _scrub(message: str) -> str:
    """An engine message without file paths or connection parameters."""
    first = message.strip().splitlines()[0] if message.strip() else "the query failed"
    return _PATHS.sub("…", first)[:500]

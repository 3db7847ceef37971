"""The unified relations `blocks`, `transactions`, `logs` as SQL that trusted code writes: per
chain, cold Parquet below the compaction line and the hot tables from it on, so every block
is read exactly once. The line is the lowest block the hot tables hold for the chain, read in
the same Postgres snapshot as the hot rows (one DuckDB transaction), so a compaction that
commits mid-query neither drops nor doubles a range: it publishes the cold partition first
and deletes the hot rows after, in one data-DB transaction."""

from __future__ import annotations

from collections import defaultdict

from trace_chain import chain_schema
from trace_chain.query.catalog import Catalog, ColdFile
from trace_chain.query.coverage import Window, windows

HOT_CATALOG = "hot"  # the attached data DB's name inside DuckDB


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def line_sql(chain_id: int) -> str:
    """The chain's compaction line: the lowest hot block (NULL: no hot rows)."""
    return (
        f"SELECT min(block_number) FROM {HOT_CATALOG}.public.hot_blocks "
        f"WHERE chain_id = {int(chain_id)}"
    )


def segments_sql(chain_id: int) -> str:
    """The chain's live compacted segments (trace_chain/cold_segments.py), read in the same
    snapshot as the line: a compaction records them in the transaction that moves it."""
    return (
        "SELECT dataset, range_start, range_end, location, CAST(files AS VARCHAR) "
        f"FROM {HOT_CATALOG}.public.cold_segments "
        f"WHERE chain_id = {int(chain_id)} AND state = 'live' ORDER BY id"
    )


def relation_sql(
    dataset: str, catalog: Catalog, lines: dict[int, int | None]
) -> tuple[str, list[str]]:
    """The SELECT that is relation `dataset`, and the cold files it reads (the only paths the
    sandbox will allow). `lines[chain]` is the chain's line, None when it has no hot rows."""
    columns = ", ".join(chain_schema.column_names(dataset))
    parts: list[str] = []
    paths: list[str] = []
    by_chain: dict[int, list[ColdFile]] = defaultdict(list)
    for file in catalog.cold:
        if file.dataset == dataset:
            by_chain[file.chain_id].append(file)
    for chain_id in sorted(catalog.chain_ids()):
        line = lines.get(chain_id)
        pieces = windows(by_chain.get(chain_id, []), below=line)
        parts += _cold_selects(dataset, columns, pieces)
        paths += [piece.file.path for piece in pieces]
        if chain_id in catalog.hot_chain_ids and line is not None:
            parts.append(
                f"SELECT {columns} FROM {HOT_CATALOG}.public.hot_{dataset} "
                f"WHERE chain_id = {int(chain_id)} AND block_number >= {int(line)}"
            )
    if not parts:  # nothing readable yet: the relation exists, empty, with its columns
        empty = ", ".join(
            f"CAST(NULL AS {chain_schema.DUCKDB_TYPES[c.kind]}) AS {c.name}"
            for c in chain_schema.COLUMNS[dataset]
        )
        parts = [f"SELECT {empty} WHERE false"]
    return "\nUNION ALL\n".join(parts), sorted(set(paths))


def _cold_selects(dataset: str, columns: str, pieces: list[Window]) -> list[str]:
    whole = [p.file.path for p in pieces if p.whole and p.file.schema_version is not None]
    selects = []
    if whole:  # one scan over every file read in full: row groups prune by block range
        files = ", ".join(quote_literal(path) for path in whole)
        selects.append(f"SELECT {columns} FROM read_parquet([{files}])")
    for piece in pieces:
        if piece.whole and piece.file.schema_version is not None:
            continue
        select = (
            columns
            if piece.file.schema_version is not None
            else chain_schema.v0_select(dataset, set(piece.file.columns))
        )
        where = (
            ""
            if piece.whole
            else f" WHERE block_number >= {int(piece.start)} AND block_number < {int(piece.end)}"
        )
        selects.append(
            f"SELECT {select} FROM read_parquet({quote_literal(piece.file.path)}){where}"
        )
    return selects

"""What a query may read, as plain data the trusted caller builds (from the dataset registry and
the caller's grants) and the engine turns into relations: the chains, the committed cold files
and whether the hot tables count. No Django here: the control plane fills these in."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# Compacted segments answer first where they overlap other cold sources: they are what the hot
# tables held, and a rebuild after a deep reorg replaces them in the data DB at once.
COMPACTED_PRIORITY = 1_000_000


@dataclass(frozen=True)
class ColdFile:
    """One committed Parquet file of one dataset: `[range_start, range_end)` of `chain_id`.
    `priority` orders overlapping sources (higher wins; then the later `committed_seq`)."""

    dataset: str
    chain_id: int
    path: str  # what DuckDB reads: a local path or an s3:// URL
    range_start: int
    range_end: int
    schema_version: int | None  # None: written before the one chain schema
    columns: frozenset[str] = frozenset()  # the file's own columns (used for version None)
    priority: int = 0
    committed_seq: int = 0
    rows: int | None = None  # from the manifest when known (an empty range's file has 0)


@dataclass(frozen=True)
class Catalog:
    """Everything one query may read. `hot_chain_ids`: chains whose hot rows (above the
    compaction line) the caller may read; `cold`: the committed files it may read."""

    datasets: frozenset[str]
    hot_chain_ids: frozenset[int] = frozenset()
    cold: tuple[ColdFile, ...] = ()
    hot_dsn: str | None = None  # libpq DSN of a read-only role; no password in it

    def chain_ids(self) -> frozenset[int]:
        return self.hot_chain_ids | {f.chain_id for f in self.cold}


def readable_path(location: str) -> str:
    """A committed location as DuckDB reads it: a local path for file://, the URL otherwise."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return str(Path(unquote(parts.path)))
    return location


def compacted_files(chain_id: int, rows: Iterable[Any]) -> list[ColdFile]:
    """ColdFiles of live compacted segments, from rows of (dataset, range_start, range_end,
    location, files as JSON text) (trace_chain.query.relations.segments_sql)."""
    from trace_chain.chain_schema import SCHEMA_VERSION

    out = []
    for seq, (dataset, _start, _end, location, files) in enumerate(rows):
        prefix = location if location.endswith("/") else location + "/"
        for entry in json.loads(files):
            out.append(
                ColdFile(
                    dataset=dataset,
                    chain_id=chain_id,
                    path=readable_path(prefix + entry["name"]),
                    range_start=int(entry["range_start"]),
                    range_end=int(entry["range_end"]),
                    schema_version=SCHEMA_VERSION,
                    priority=COMPACTED_PRIORITY,
                    committed_seq=seq,
                    rows=entry.get("rows"),
                )
            )
    return out

"""What a query may read, as plain data the trusted caller builds (from the dataset registry and
the caller's grants) and the engine turns into relations: the chains, the committed cold files
and whether the hot tables count. No Django here: the control plane fills these in."""

from __future__ import annotations

from dataclasses import dataclass


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

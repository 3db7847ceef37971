"""The data DB's record of compacted cold partitions (`cold_segments`): which committed prefix
holds which block range of which chain dataset, written in the data-DB transactions that move
the compaction line, so a query reads the line and the cold files that answer below it in one
Postgres snapshot (trace_chain/query/engine.py), never a line without its files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from trace_chain.hot_schema import metadata

LIVE = "live"  # answers queries for its range
REPLACED = "replaced"  # superseded by a merge or a rebuild; kept for in-flight readers

cold_segments = sa.Table(
    "cold_segments",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("chain_id", sa.BigInteger, nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    sa.Column("range_start", sa.BigInteger, nullable=False),
    sa.Column("range_end", sa.BigInteger, nullable=False),  # end-exclusive
    sa.Column("location", sa.Text, nullable=False),  # store URI of the committed prefix
    # [{name, range_start, range_end, rows}]: the partition's Parquet files
    sa.Column("files", postgresql.JSONB, nullable=False),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    # The hash of the range's last block: it names the whole chain below it, so it tells a
    # rebuilt (reorged) range from the one it replaces and lets the follower resume from cold.
    sa.Column("last_block_hash", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default=LIVE),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("replaced_at", sa.DateTime(timezone=True)),
    sa.Index("ix_cold_segments_live", "chain_id", "dataset", "state", "range_start"),
)


@dataclass(frozen=True)
class Segment:
    id: int
    chain_id: int
    dataset: str
    range_start: int
    range_end: int
    location: str
    files: list[dict[str, Any]]
    row_count: int
    bytes: int
    last_block_hash: str


def _segment(row: Any) -> Segment:
    m = row._mapping
    return Segment(**{f: m[f] for f in Segment.__dataclass_fields__})


def segments_live(conn: Connection, *, chain_id: int, dataset: str | None = None) -> list[Segment]:
    """Live segments of a chain (one dataset, or all), in block order."""
    query = sa.select(cold_segments).where(
        cold_segments.c.chain_id == chain_id, cold_segments.c.state == LIVE
    )
    if dataset is not None:
        query = query.where(cold_segments.c.dataset == dataset)
    query = query.order_by(cold_segments.c.dataset, cold_segments.c.range_start)
    return [_segment(row) for row in conn.execute(query)]


def covered_upto(segments: list[Segment], start: int) -> int:
    """The end of the contiguous run of `segments` (one dataset, block order) from `start`:
    blocks in `[start, result)` are all in cold; `start` itself when none holds it."""
    at = start
    for segment in sorted(segments, key=lambda s: s.range_start):
        if segment.range_start <= at < segment.range_end:
            at = segment.range_end
    return at


def segment_insert(conn: Connection, **fields: Any) -> int:
    """Record a live segment; live segments of the same dataset it overlaps become replaced
    (in the caller's transaction, so readers see the old ones or the new one, never both)."""
    overlap = (
        (cold_segments.c.chain_id == fields["chain_id"])
        & (cold_segments.c.dataset == fields["dataset"])
        & (cold_segments.c.state == LIVE)
        & (cold_segments.c.range_start < fields["range_end"])
        & (cold_segments.c.range_end > fields["range_start"])
    )
    conn.execute(
        cold_segments.update().where(overlap).values(state=REPLACED, replaced_at=sa.func.now())
    )
    return conn.execute(
        cold_segments.insert().values(state=LIVE, **fields).returning(cold_segments.c.id)
    ).scalar_one()


def segments_sweep(
    conn: Connection, *, older_than_seconds: float, limit: int
) -> list[tuple[int, str, bool]]:
    """Segments replaced more than `older_than_seconds` ago, locked for this transaction
    (SKIP LOCKED: two sweepers never take the same rows): `(id, location, delete_files)`.
    `delete_files` is False when another segment that is not being swept names the same
    prefix (a re-run that wrote the same content to the same place is live there, or a
    younger replaced one still has readers): the row goes, its files stay."""
    old = sa.select(cold_segments.c.id, cold_segments.c.location).where(
        cold_segments.c.state == REPLACED,
        cold_segments.c.replaced_at
        < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
    )
    rows = conn.execute(
        old.order_by(cold_segments.c.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    ids = [row.id for row in rows]
    kept = set(
        conn.execute(
            sa.select(cold_segments.c.location).where(
                cold_segments.c.location.in_({row.location for row in rows}),
                cold_segments.c.id.not_in(ids),
            )
        ).scalars()
    )
    return [(row.id, row.location, row.location not in kept) for row in rows]


def segments_forget(conn: Connection, ids: list[int]) -> None:
    conn.execute(cold_segments.delete().where(cold_segments.c.id.in_(ids)))

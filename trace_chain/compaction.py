"""Compaction: finalized hot ranges of a chain moved into cold Parquet partitions (one per
dataset and chunk, the one chain schema, the replace commit protocol), recorded in the data DB
and then deleted from the hot tables, keeping a hot window; small partitions merged into larger
ones; ranges whose hot rows a deep reorg rewrote rebuilt. See docs/cold_storage.md.

Order, so a query never sees a gap or a double count: (1) publish the partition (files,
manifest, `_SUCCESS`), (2) the caller's fenced commit into `partition_versions`, (3) record the
segment in `cold_segments` if the hot rows are still those compacted (one data-DB transaction
holding the writer's row lock), (4) delete hot rows below the new line in another one, only
where live segments cover them. A query reads the line and the segments in one snapshot, and
below the line only cold answers, above it only hot.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trace_chain import chain_schema, cold_layout
from trace_chain.cold_segments import (
    LIVE,
    Segment,
    cold_segments,
    covered_upto,
    segment_insert,
    segments_live,
)
from trace_chain.db import advisory_lock_key, session_advisory_lock
from trace_chain.hot_schema import (
    hot_blocks,
    hot_chain_status,
    hot_logs,
    hot_traces,
    hot_transactions,
)
from trace_chain.object_store import ObjectStore

log = logging.getLogger(__name__)

HOT = {
    "blocks": hot_blocks,
    "transactions": hot_transactions,
    "logs": hot_logs,
    "traces": hot_traces,
}
PRODUCER = {"compactor": "trace", "source": "hot"}
REVISION_CHARS = 16


class HotChanged(RuntimeError):
    """The hot rows of a range changed while it was being compacted (a reorg rewrote them):
    nothing was recorded or deleted; the next run compacts what the hot tables hold then."""


@dataclass(frozen=True)
class Policy:
    """What is final, how much stays hot and how cold files are cut (the operator's config)."""

    finality_depth_blocks: int  # blocks within this depth of the hot tip are not final
    hot_window_blocks: int  # the newest blocks that stay hot even when final and compacted
    chunk_blocks: int = 50  # partitions cut at multiples of this block number
    row_group_rows: int = 100_000
    merge_target_rows: int = 1_000_000  # small partitions are merged up to this many rows
    merge_target_bytes: int = 256 * 1024**2  # ... or this many bytes, whichever comes first
    max_chunks_per_run: int = 200


@dataclass(frozen=True)
class Committed:
    """One partition published and recorded, for the caller's commit and for logs."""

    dataset: str
    partition: cold_layout.ColdPartition
    published: cold_layout.Published
    kind: str  # "compacted" | "rebuilt" | "merged"


@dataclass
class Outcome:
    committed: list[Committed] = field(default_factory=list)
    trimmed: tuple[int, int] | None = None  # hot rows [start, end) deleted
    rebuilt: list[tuple[int, int]] = field(default_factory=list)


def identity(*, chain_id: int, chain: str, dataset: str, row_group_rows: int) -> dict[str, Any]:
    """What decides a compacted partition's bytes besides its rows: the chain schema and how
    the files are written."""
    return cold_layout.config_identity(
        chain_id=chain_id,
        chain=chain,
        dataset=dataset,
        options={"source": "hot", "row_group_size": row_group_rows},
    )


def version_prefixes(*, chain_id: int, chain: str, row_group_rows: int) -> list[str]:
    """Where compaction of this chain publishes: one version prefix per dataset."""
    return [
        cold_layout.version_prefix(
            chain_id=chain_id,
            dataset=dataset,
            config_hash=cold_layout.config_hash(
                identity(
                    chain_id=chain_id, chain=chain, dataset=dataset, row_group_rows=row_group_rows
                )
            ),
        )
        for dataset in chain_schema.DATASETS
    ]


# --- reading the hot tables -------------------------------------------------------------------


def hot_table_read(conn: Connection, *, chain_id: int, dataset: str, start: int, end: int) -> Any:
    """Hot rows of `[start, end)` as a canonical Arrow table, sorted by the dataset's key."""
    import pyarrow as pa

    table = HOT[dataset]
    names = chain_schema.column_names(dataset)
    query = (
        sa.select(*(table.c[n] for n in names))
        .where(
            table.c.chain_id == chain_id,
            table.c.block_number >= start,
            table.c.block_number < end,
        )
        .order_by(*(table.c[k] for k in chain_schema.KEYS[dataset]))
    )
    rows = conn.execute(query).all()
    schema = chain_schema.arrow_schema(dataset)
    columns = [
        pa.array([row[i] for row in rows], type=schema.field(i).type) for i in range(len(names))
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _hashes(conn: Connection, chain_id: int, start: int, end: int) -> dict[int, str]:
    query = sa.select(hot_blocks.c.block_number, hot_blocks.c.block_hash).where(
        hot_blocks.c.chain_id == chain_id,
        hot_blocks.c.block_number >= start,
        hot_blocks.c.block_number < end,
    )
    return dict(conn.execute(query).all())


def _bounds(conn: Connection, chain_id: int) -> tuple[int, int] | None:
    low, high = conn.execute(
        sa.select(
            sa.func.min(hot_blocks.c.block_number), sa.func.max(hot_blocks.c.block_number)
        ).where(hot_blocks.c.chain_id == chain_id)
    ).one()
    return None if low is None else (low, high)


def _lock_chain(conn: Connection, chain_id: int) -> None:
    """The row lock every hot write takes (hot_store._check_epoch): a reorg's rewrite and our
    record-and-delete never interleave."""
    conn.execute(
        sa.select(hot_chain_status.c.chain_id)
        .where(hot_chain_status.c.chain_id == chain_id)
        .with_for_update()
    )


# --- planning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    rebuild: bool  # a live segment holds other content for (part of) it


def plan(engine: Engine, *, chain_id: int, policy: Policy) -> list[Chunk]:
    """Finalized chunks from the line (the lowest hot block) up, that are not yet in cold as
    the hot tables hold them: new ones, and rebuilds of ranges a deep reorg rewrote."""
    with engine.connect() as conn:
        bounds = _bounds(conn, chain_id)
        if bounds is None:
            return []
        low, high = bounds
        final_end = high - policy.finality_depth_blocks + 1  # blocks below are final
        segments = segments_live(conn, chain_id=chain_id)
        hashes = _hashes(conn, chain_id, low, high + 1)
    by_dataset = {d: [s for s in segments if s.dataset == d] for d in chain_schema.DATASETS}
    chunks: list[Chunk] = []
    start = low
    size = policy.chunk_blocks
    while len(chunks) < policy.max_chunks_per_run:
        end = (start // size + 1) * size
        if end > final_end:
            break
        overlapping = {
            d: [s for s in ds if s.range_start < end and s.range_end > start]
            for d, ds in by_dataset.items()
        }
        # Held only if every dataset holds it: a range compacted before a dataset existed
        # (traces) is compacted again, so the trim, which waits for every dataset, goes on.
        holds = {d: any(_holds(s, start, end, hashes) for s in overlapping[d]) for d in by_dataset}
        if not all(holds.values()):
            # A rebuild (with its invalidation) only where cold's blocks differ from hot's.
            rebuilt = bool(overlapping["blocks"]) and not holds["blocks"]
            chunks.append(Chunk(start, end, rebuild=rebuilt))
        start = end
    return chunks


def _holds(segment: Segment, start: int, end: int, hashes: dict[int, str]) -> bool:
    """Does a live segment already hold the hot rows of `[start, end)`? It must cover the
    range, and its last block must be hot with the same hash: that hash names the whole chain
    below it. (A crash between record and trim, or the hot window, leaves such ranges.)"""
    covers = segment.range_start <= start and end <= segment.range_end
    return covers and hashes.get(segment.range_end - 1) == segment.last_block_hash


# --- writing one partition ----------------------------------------------------------------------


def partition_write(
    *,
    store: ObjectStore,
    chain_id: int,
    chain: str,
    dataset: str,
    start: int,
    end: int,
    table: Any,
    last_block_hash: str,
    policy: Policy,
    staging: Path,
    before_write: Callable[[], None],
    revision_name: str | None = None,
) -> tuple[cold_layout.ColdPartition, cold_layout.Published]:
    """Write `table` (canonical rows of `[start, end)`, sorted) as one file and publish it under
    the partition's revision prefix with the replace commit protocol. `revision_name`: another
    revision than the last block's hash (a repair must not land on the damaged prefix)."""
    ident = identity(
        chain_id=chain_id, chain=chain, dataset=dataset, row_group_rows=policy.row_group_rows
    )
    partition = cold_layout.ColdPartition(
        chain_id=chain_id,
        chain=chain,
        dataset=dataset,
        config_hash=cold_layout.config_hash(ident),
        range_start=start,
        range_end=end,
        revision=revision_name or revision(last_block_hash),
    )
    name = cold_layout.data_file_name(chain=chain, dataset=dataset, start=start, end=end)
    directory = staging / f"{dataset}-{start}-{end}"
    directory.mkdir(mode=0o700)
    path = directory / name
    chain_schema.parquet_write(table, path, row_group_rows=policy.row_group_rows)
    manifest = cold_layout.manifest_build(
        partition=partition, identity=ident, paths=[path], producer=PRODUCER
    )
    try:
        published = cold_layout.partition_publish(
            store=store,
            partition=partition,
            files={name: path},
            manifest=manifest,
            before_write=before_write,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return partition, published


def revision(last_block_hash: str) -> str:
    """A partition's revision: its last block's hash, shortened (hex, so alphanumeric)."""
    digits = last_block_hash.removeprefix("0x").lower()
    if not digits or any(c not in "0123456789abcdef" for c in digits):
        digits = hashlib.sha256(last_block_hash.encode()).hexdigest()
    return digits[:REVISION_CHARS]


def segment_fields(
    *, chain_id: int, dataset: str, partition: cold_layout.ColdPartition, published, last_hash: str
) -> dict[str, Any]:
    manifest = published.manifest
    files = []
    for entry in manifest["files"]:
        files.append(
            {
                "name": entry["name"],
                "range_start": partition.range_start,
                "range_end": partition.range_end,
                "rows": entry["rows"],
            }
        )
    return {
        "chain_id": chain_id,
        "dataset": dataset,
        "range_start": partition.range_start,
        "range_end": partition.range_end,
        "location": published.location,
        "files": files,
        "row_count": manifest["row_count"],
        "bytes": manifest["bytes"],
        "last_block_hash": last_hash,
    }


def segments_record(
    engine: Engine,
    *,
    chain_id: int,
    start: int,
    end: int,
    block_hashes: dict[int, str],
    rows: list[dict[str, Any]],
) -> list[int]:
    """Record compacted segments of `[start, end)`, all datasets at once, if the hot blocks
    are still exactly those compacted; else HotChanged and nothing is recorded."""
    with engine.begin() as conn:
        _lock_chain(conn, chain_id)
        now = _hashes(conn, chain_id, start, end)
        if now != block_hashes:
            raise HotChanged(
                f"chain {chain_id}'s hot blocks [{start}, {end}) changed while being compacted"
            )
        return [segment_insert(conn, **row) for row in rows]


def hot_trim(engine: Engine, *, chain_id: int, policy: Policy) -> tuple[int, int] | None:
    """Delete hot rows from the line up to where live segments of every dataset cover them
    with the same blocks, keeping the newest `hot_window_blocks`; one transaction, under the
    writer's row lock. Returns the deleted `[start, end)`, None when nothing was."""
    with engine.begin() as conn:
        _lock_chain(conn, chain_id)
        bounds = _bounds(conn, chain_id)
        if bounds is None:
            return None
        low, high = bounds
        upto = high + 1 - policy.hot_window_blocks
        segments = segments_live(conn, chain_id=chain_id)
        for dataset in chain_schema.DATASETS:
            upto = min(upto, covered_upto([s for s in segments if s.dataset == dataset], low))
        # Only as far as the cold blocks are the hot ones (a rewrite since may differ).
        hashes = _hashes(conn, chain_id, low, max(low, upto))
        agreed = low
        for segment in sorted(
            (s for s in segments if s.dataset == "blocks"), key=lambda s: s.range_start
        ):
            if segment.range_end <= agreed or segment.range_start > agreed:
                continue
            if segment.range_end > upto:
                break
            if hashes.get(segment.range_end - 1) != segment.last_block_hash:
                break
            agreed = segment.range_end
        upto = min(upto, agreed)
        if upto <= low:
            return None
        for table in (hot_traces, hot_logs, hot_transactions, hot_blocks):
            conn.execute(
                table.delete().where(
                    table.c.chain_id == chain_id,
                    table.c.block_number >= low,
                    table.c.block_number < upto,
                )
            )
        return low, upto


# --- the whole run ----------------------------------------------------------------------------

Commit = Callable[[Committed], None]
Invalidate = Callable[[int, int, str], None]


def compact_chain(
    *,
    engine: Engine,
    store: ObjectStore,
    chain_id: int,
    chain: str,
    policy: Policy,
    staging: Path,
    commit: Commit,
    invalidate: Invalidate,
    check: Callable[[], None] = lambda: None,
    stage: Callable[[str], None] = lambda name: None,
) -> Outcome:
    """Compact every finalized chunk not yet in cold, rebuild those a reorg rewrote, trim the
    hot tables, merge small partitions. `commit` is the fenced commit of one partition into
    `partition_versions` (it raises if the attempt is stale, and then nothing after runs);
    `invalidate(start, end, reason)` records that dependents must reprocess a rebuilt range;
    `check` is the lease check before every write; `stage` is told each step that changes
    what a query can see ("published", "committed", "recorded", "trimmed", "merged")."""
    outcome = Outcome()
    for chunk in plan(engine, chain_id=chain_id, policy=policy):
        check()
        done = _chunk_compact(
            engine=engine,
            store=store,
            chain_id=chain_id,
            chain=chain,
            chunk=chunk,
            policy=policy,
            staging=staging,
            commit=commit,
            invalidate=invalidate,
            check=check,
            stage=stage,
        )
        outcome.committed += done
        if chunk.rebuild:
            outcome.rebuilt.append((chunk.start, chunk.end))
    check()
    outcome.trimmed = hot_trim(engine, chain_id=chain_id, policy=policy)
    if outcome.trimmed:
        stage("trimmed")
    outcome.committed += merge_small(
        engine=engine,
        store=store,
        chain_id=chain_id,
        chain=chain,
        policy=policy,
        staging=staging,
        commit=commit,
        check=check,
        stage=stage,
    )
    return outcome


def _chunk_compact(
    *,
    engine: Engine,
    store: ObjectStore,
    chain_id: int,
    chain: str,
    chunk: Chunk,
    policy: Policy,
    staging: Path,
    commit: Commit,
    invalidate: Invalidate,
    check: Callable[[], None],
    stage: Callable[[str], None],
) -> list[Committed]:
    start, end = chunk.start, chunk.end
    # One snapshot for the three datasets and the block hashes the record step compares.
    with engine.connect() as conn:
        conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        hashes = _hashes(conn, chain_id, start, end)
        if sorted(hashes) != list(range(start, end)):
            raise HotChanged(f"chain {chain_id}'s hot blocks [{start}, {end}) are not all there")
        tables = {
            dataset: hot_table_read(conn, chain_id=chain_id, dataset=dataset, start=start, end=end)
            for dataset in chain_schema.DATASETS
        }
        conn.rollback()
    last_hash = hashes[end - 1]
    committed, rows = [], []
    kind = "rebuilt" if chunk.rebuild else "compacted"
    for dataset, table in tables.items():
        partition, published = partition_write(
            store=store,
            chain_id=chain_id,
            chain=chain,
            dataset=dataset,
            start=start,
            end=end,
            table=table,
            last_block_hash=last_hash,
            policy=policy,
            staging=staging,
            before_write=check,
        )
        committed.append(Committed(dataset, partition, published, kind))
        rows.append(
            segment_fields(
                chain_id=chain_id,
                dataset=dataset,
                partition=partition,
                published=published,
                last_hash=last_hash,
            )
        )
    stage("published")
    for item in committed:
        commit(item)
    stage("committed")
    if chunk.rebuild:
        # Before the record: the hot rows (the new content) answer queries until then, and a
        # crash after the record must not lose the invalidation.
        invalidate(start, end, f"blocks [{start}, {end}) of chain {chain_id} were reorged")
    check()
    segments_record(engine, chain_id=chain_id, start=start, end=end, block_hashes=hashes, rows=rows)
    stage("recorded")
    log.info("compaction chain %s [%s, %s): %s", chain_id, start, end, kind)
    return committed


# --- merging small partitions -----------------------------------------------------------------


def merge_groups(segments: list[Segment], policy: Policy) -> list[list[Segment]]:
    """Runs of contiguous small segments (block order) that together reach a merge target;
    a run that has not reached one yet waits for more history."""
    groups: list[list[Segment]] = []
    run: list[Segment] = []

    def small(s: Segment) -> bool:
        return s.row_count < policy.merge_target_rows and s.bytes < policy.merge_target_bytes

    for segment in sorted(segments, key=lambda s: s.range_start):
        if run and (run[-1].range_end != segment.range_start or not small(segment)):
            run = []
        if not small(segment):
            continue
        run.append(segment)
        if (
            sum(s.row_count for s in run) >= policy.merge_target_rows
            or sum(s.bytes for s in run) >= policy.merge_target_bytes
        ):
            if len(run) > 1:
                groups.append(run)
            run = []
    return groups


def merge_small(
    *,
    engine: Engine,
    store: ObjectStore,
    chain_id: int,
    chain: str,
    policy: Policy,
    staging: Path,
    commit: Commit,
    check: Callable[[], None],
    stage: Callable[[str], None],
) -> list[Committed]:
    """Merge runs of small live segments of each dataset into one partition each, below the
    line only (above it the hot rows answer and a rebuild may still replace them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    committed: list[Committed] = []
    with engine.connect() as conn:
        bounds = _bounds(conn, chain_id)
        segments = segments_live(conn, chain_id=chain_id)
    line = bounds[0] if bounds else None
    for dataset in chain_schema.DATASETS:
        mine = [
            s for s in segments if s.dataset == dataset and (line is None or s.range_end <= line)
        ]
        for group in merge_groups(mine, policy):
            check()
            start, end = group[0].range_start, group[-1].range_end
            parts = []
            with _scratch(staging, f"merge-{dataset}-{start}-{end}") as scratch:
                for index, segment in enumerate(group):
                    for entry in segment.files:
                        local = scratch / f"{index:06}-{entry['name']}"
                        local.write_bytes(store.get_bytes(_key(store, segment, entry["name"])))
                        parts.append(pq.read_table(local))
                table = pa.concat_tables(parts).sort_by(
                    [(k, "ascending") for k in chain_schema.KEYS[dataset]]
                )
                last_hash = group[-1].last_block_hash
                partition, published = partition_write(
                    store=store,
                    chain_id=chain_id,
                    chain=chain,
                    dataset=dataset,
                    start=start,
                    end=end,
                    table=table,
                    last_block_hash=last_hash,
                    policy=policy,
                    staging=scratch,
                    before_write=check,
                )
            item = Committed(dataset, partition, published, "merged")
            commit(item)
            with engine.begin() as conn:
                _lock_chain(conn, chain_id)
                ids = [s.id for s in group]
                still = conn.execute(
                    sa.select(sa.func.count()).where(
                        cold_segments.c.id.in_(ids), cold_segments.c.state == LIVE
                    )
                ).scalar_one()
                if still != len(ids):
                    log.info("merge of %s [%s, %s) superseded; not recorded", dataset, start, end)
                    continue
                segment_insert(
                    conn,
                    **segment_fields(
                        chain_id=chain_id,
                        dataset=dataset,
                        partition=partition,
                        published=published,
                        last_hash=last_hash,
                    ),
                )
            committed.append(item)
            stage("merged")
    return committed


def _key(store: ObjectStore, segment: Segment, name: str) -> str:
    root = store.uri()
    root = root if root.endswith("/") else root + "/"
    location = segment.location if segment.location.endswith("/") else segment.location + "/"
    if not location.startswith(root):
        raise RuntimeError(f"segment {segment.id} lies outside this object store: {location}")
    return location[len(root) :] + name


@contextlib.contextmanager
def _scratch(staging: Path, name: str) -> Iterator[Path]:
    path = staging / name
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- what the follower reads ------------------------------------------------------------------


def cold_tail(engine: Engine, *, chain_id: int) -> list[Segment]:
    """The chain's live compacted `blocks` segments, in block order."""
    with engine.connect() as conn:
        return segments_live(conn, chain_id=chain_id, dataset="blocks")


@contextlib.contextmanager
def compaction_lock(engine: Engine, *, chain_id: int, wait: Callable[[], None]) -> Iterator[None]:
    """One compaction of a chain at a time (a session advisory lock in the data DB, freed when
    its connection ends); `wait()` runs between tries."""
    key = advisory_lock_key(f"trace.compaction:{chain_id}")
    with session_advisory_lock(engine, key=key, wait=wait):
        yield

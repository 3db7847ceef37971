"""Repair of what an integrity check found: each damaged partition (or gap) of a chain's
compacted cold data rebuilt from the canonical chain under a new revision prefix (the committed
one is never overwritten), published with compaction's writer and commit protocol, committed by
the caller and recorded as the live segment (the damaged one becomes `replaced`); and each
damaged Cryo backfill partition rebuilt the same way as the partition it should be, under a
revision inside its own prefix (`backfill_repair`). See docs/integrity.md."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from trace_chain import chain_schema, cold_layout, compaction
from trace_chain.cold_segments import segment_insert, segments_live
from trace_chain.hot_store import BLOCK_KEYS, LOG_KEYS, TRACE_KEYS, TRANSACTION_KEYS

log = logging.getLogger(__name__)

ROW_KEYS = {
    "blocks": BLOCK_KEYS,
    "transactions": TRANSACTION_KEYS,
    "logs": LOG_KEYS,
    "traces": TRACE_KEYS,
}
REPAIR_MARK = "r"  # revision = {last block hash[:16]}r{digest of the replaced prefix[:8]}


def node_table(adapter: Any, *, chain_id: int, dataset: str, start: int, end: int) -> Any:
    """The canonical Arrow table of one dataset's `[start, end)`, fetched from the node."""
    import pyarrow as pa

    rows = adapter.block_range_with_receipts(start, end, traces=dataset == "traces")
    records = getattr(rows, dataset)
    keys = ROW_KEYS[dataset]
    schema = chain_schema.arrow_schema(dataset)
    columns = []
    for name in chain_schema.column_names(dataset):
        if name == "chain_id":
            values = [chain_id] * len(records)
        else:
            values = [r.get(keys.get(name, name)) for r in records]
        columns.append(pa.array(values, type=schema.field(name).type))
    table = pa.Table.from_arrays(columns, schema=schema)
    return table.sort_by([(k, "ascending") for k in chain_schema.KEYS[dataset]]), rows.blocks


def repair_revision(last_block_hash: str, replaced: list[str]) -> str:
    """A revision of its own for a rebuilt range: the same rows as the damaged partition give
    the same `compaction.revision`, so the replaced prefixes are folded in."""
    digest = hashlib.sha256("\n".join(sorted(replaced)).encode()).hexdigest()
    return f"{compaction.revision(last_block_hash)}{REPAIR_MARK}{digest[:8]}"


def ranges_repair(
    *,
    engine: Engine,
    store: Any,
    adapter: Any,
    chain_id: int,
    chain: str,
    affected: list[tuple[str, int, int]],
    row_group_rows: int,
    staging: Path,
    commit: Callable[[compaction.Committed], None],
    check: Callable[[], None] = lambda: None,
) -> list[compaction.Committed]:
    """Rebuild each `(dataset, start, end)` from the node; returns what was committed."""
    policy = compaction.Policy(
        finality_depth_blocks=0, hot_window_blocks=0, row_group_rows=row_group_rows
    )
    done = []
    for dataset, start, end in affected:
        check()
        table, blocks = node_table(
            adapter, chain_id=chain_id, dataset=dataset, start=start, end=end
        )
        last_hash = blocks[-1]["hash"]
        with engine.connect() as conn:
            replaced = [
                s.location
                for s in segments_live(conn, chain_id=chain_id, dataset=dataset)
                if s.range_start < end and s.range_end > start
            ]
        partition, published = compaction.partition_write(
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
            revision_name=repair_revision(last_hash, replaced or ["gap"]),
        )
        item = compaction.Committed(dataset, partition, published, "repaired")
        commit(item)
        check()
        with engine.begin() as conn:
            compaction._lock_chain(conn, chain_id)
            segment_insert(
                conn,
                **compaction.segment_fields(
                    chain_id=chain_id,
                    dataset=dataset,
                    partition=partition,
                    published=published,
                    last_hash=last_hash,
                ),
            )
        log.info(
            "integrity repair chain %s %s [%s, %s) -> %s",
            chain_id,
            dataset,
            start,
            end,
            published.location,
        )
        done.append(item)
    return done


BACKFILL_KEY_PREFIX = "backfill/"  # partition keys of rebuilt backfill partitions
BACKFILL_ROW_GROUP_ROWS = 100_000  # cryo_ingest's own default (its `row_group_size` option)


def backfill_repair(
    *,
    store: Any,
    adapter: Any,
    chain_id: int,
    partition: Any,
    staging: Path,
    check: Callable[[], None] = lambda: None,
) -> tuple[cold_layout.ColdPartition, cold_layout.Published]:
    """Rebuild one damaged Cryo backfill partition (an integrity `Partition` with its committed
    manifest) from the node: the same files (one per chunk, the same names), the same config
    identity, published under a revision inside the damaged prefix
    (`{prefix}{last block hash[:16]}r{sha256 of the damaged prefix[:8]}/`), which is never
    overwritten. The caller commits it (the control plane then records it in the backfill's
    own dataset, trace_web/datasets/integrity.py)."""
    import pyarrow.compute as pc

    committed = partition.manifest or {}
    identity = committed.get("config")
    if not isinstance(identity, dict) or "config_hash" not in committed:
        raise ValueError(f"{partition.label} has no committed manifest to rebuild from")
    start, end = partition.range_start, partition.range_end
    table, blocks = node_table(
        adapter, chain_id=chain_id, dataset=partition.dataset, start=start, end=end
    )
    target = cold_layout.ColdPartition(
        chain_id=chain_id,
        chain=committed["chain"],
        dataset=partition.dataset,
        config_hash=committed["config_hash"],
        range_start=start,
        range_end=end,
        revision=repair_revision(blocks[-1]["hash"], [partition.location]),
    )
    rows = (identity.get("options") or {}).get("row_group_size") or BACKFILL_ROW_GROUP_ROWS
    files = {}
    numbers = table.column("block_number")
    for entry in partition.files:
        check()
        lo, hi = int(entry["range_start"]), int(entry["range_end"])
        mask = pc.and_(pc.greater_equal(numbers, lo), pc.less(numbers, hi))
        files[entry["name"]] = staging / entry["name"]
        chain_schema.parquet_write(table.filter(mask), files[entry["name"]], row_group_rows=rows)
    manifest = cold_layout.manifest_build(
        partition=target,
        identity=identity,
        paths=list(files.values()),
        producer={"extractor": "integrity_check", "repairs": partition.location},
    )
    published = cold_layout.partition_publish(
        store=store, partition=target, files=files, manifest=manifest, before_write=check
    )
    log.info(
        "integrity repair chain %s backfill %s [%s, %s) -> %s",
        chain_id,
        partition.dataset,
        start,
        end,
        published.location,
    )
    return target, published

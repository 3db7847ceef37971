"""Integrity of committed cold data: a chain's live compacted partitions (`cold_segments`), or
the committed Cryo backfill partitions its queries read (`partition_versions`, listed by the
control plane: trace_web/query/selectors.py `backfill_partitions`), of a finalized block range
checked against their manifests and against the node. Both sources feed the same check as
`Partition`s. See docs/integrity.md.

Per partition: `_SUCCESS` holds the manifest's sha256 and each file the manifest's sha256
(`missing` when a key is gone, `checksum` when bytes differ); then the rows: every block of the
partition exactly once and nothing outside it (`coverage`, which is also how two swapped files
show besides their checksums), block hashes against the node (`hash`), each block's parent
hash the previous block's, across files and to the first hot block above the line
(`parent_link`), transactions and logs per block against the node (`tx_count`, `log_count`),
and no gap between partitions (`coverage`). Only blocks below the node's head minus
`finality_depth_blocks` are checked: an unfinalized range may still reorg, which is not
corruption. Sampling picks a seeded subset of blocks for the node comparisons; checksums,
coverage and continuity are always checked in full (the files are read anyway).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trace_chain import cold_layout
from trace_chain.cold_segments import Segment, segments_live
from trace_chain.hot_schema import hot_blocks
from trace_chain.object_store import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

KINDS = ("missing", "checksum", "coverage", "hash", "parent_link", "tx_count", "log_count")
# The datasets whose rows are compared with the node (traces are checked by checksum only).
ROW_DATASETS = ("blocks", "transactions", "logs")
DEFAULT_MAX_DETAILS = 20
LOG_RANGE_BLOCKS = 100  # blocks per eth_getLogs call


@dataclass(frozen=True)
class Mismatch:
    kind: str
    dataset: str
    range_start: int  # the partition (or gap) it belongs to, end-exclusive
    range_end: int
    block: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "range_start": self.range_start,
            "range_end": self.range_end,
            "block": self.block,
            "detail": self.detail,
        }


@dataclass
class Report:
    chain_id: int
    range_start: int  # what was checked, end-exclusive (clipped to the finalized cold data)
    range_end: int
    blocks_checked: int = 0  # blocks compared with the node
    partitions_checked: int = 0
    sample: float | None = None
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.mismatches

    def affected(self) -> list[tuple[str, int, int]]:
        """`(dataset, start, end)` of each partition (or gap) holding a mismatch, in block
        order: what a repair rebuilds. Other datasets of the same range are rebuilt only when
        their own checks fail."""
        seen = dict.fromkeys((m.dataset, m.range_start, m.range_end) for m in self.mismatches)
        return sorted(seen, key=lambda a: (a[1], a[0]))

    def details(self, max_per_kind: int = DEFAULT_MAX_DETAILS) -> dict[str, Any]:
        """Per kind: the count and the first `max_per_kind` mismatches (JSON for the table)."""
        by_kind: dict[str, list[Mismatch]] = defaultdict(list)
        for mismatch in self.mismatches:
            by_kind[mismatch.kind].append(mismatch)
        return {
            kind: {"count": len(items), "first": [m.as_dict() for m in items[:max_per_kind]]}
            for kind, items in sorted(by_kind.items())
        }


@dataclass(frozen=True)
class Partition:
    """One committed partition of one chain dataset, whichever source committed it: its range
    (end-exclusive), the store URI of its prefix and its Parquet files
    (`[{name, range_start, range_end, rows}]`, each file's own range)."""

    dataset: str
    range_start: int
    range_end: int
    location: str
    files: list[dict[str, Any]]
    label: str  # names it in errors: `segment 12`, `partition_version 34`
    # A backfill partition's committed manifest (the state DB's copy): what a repair rebuilds.
    manifest: dict[str, Any] | None = None


def compacted_partitions(engine: Engine, chain_id: int) -> list[Partition]:
    """The chain's live compacted segments (`cold_segments`), in block order per dataset."""
    with engine.connect() as conn:
        return [partition_of(s) for s in segments_live(conn, chain_id=chain_id)]


def partition_of(segment: Segment) -> Partition:
    return Partition(
        dataset=segment.dataset,
        range_start=segment.range_start,
        range_end=segment.range_end,
        location=segment.location,
        files=segment.files,
        label=f"segment {segment.id}",
    )


def segment_key(store: ObjectStore, partition: Partition | Segment, name: str) -> str:
    """The store key of `name` under a partition's committed location."""
    root = store.uri()
    root = root if root.endswith("/") else root + "/"
    location = partition.location if partition.location.endswith("/") else partition.location + "/"
    if not location.startswith(root):
        raise RuntimeError(f"{location} lies outside this object store ({root})")
    return location[len(root) :] + name


# --- the node side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeBlock:
    hash: str
    parent_hash: str
    tx_count: int


def node_blocks(adapter: Any, numbers: list[int]) -> dict[int, NodeBlock]:
    """Hashes and transaction counts of `numbers` (batched `eth_getBlockByNumber` without
    transaction bodies)."""
    blocks = adapter.blocks_by_number(numbers, full_transactions=False)
    return {
        n: NodeBlock(b["hash"].lower(), b["parentHash"].lower(), len(b.get("transactions") or []))
        for n, b in zip(numbers, blocks, strict=True)
    }


def node_log_counts(adapter: Any, numbers: list[int]) -> Counter[int]:
    """Logs per block of `numbers` (batched `eth_getLogs` over runs of consecutive blocks)."""
    runs: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if runs and runs[-1][1] == n and n - runs[-1][0] < LOG_RANGE_BLOCKS:
            runs[-1] = (runs[-1][0], n + 1)
        else:
            runs.append((n, n + 1))
    calls = [("eth_getLogs", [{"fromBlock": hex(s), "toBlock": hex(e - 1)}]) for s, e in runs]
    counts: Counter[int] = Counter()
    wanted = set(numbers)
    for answer in adapter.batched_calls("eth_getLogs", calls):
        for entry in answer or ():
            number = int(entry["blockNumber"], 16)
            if number in wanted and not entry.get("removed"):
                counts[number] += 1
    return counts


# --- the cold side --------------------------------------------------------------------------------


@dataclass
class _Read:
    """What one dataset's partitions hold, per block."""

    hashes: dict[int, tuple[str, str]] = field(default_factory=dict)  # blocks: (hash, parent)
    counts: Counter[int] = field(default_factory=Counter)  # transactions/logs: rows per block
    # Blocks whose file is gone or unreadable: already reported, not compared row by row.
    unread: set[int] = field(default_factory=set)


def _read_partition(
    store: ObjectStore, partition: Partition, out: list[Mismatch], into: _Read
) -> None:
    """Check a partition's manifest and file checksums, then read its rows into `into`."""
    import pyarrow.parquet as pq

    start, end = partition.range_start, partition.range_end

    def bad(kind: str, detail: str, block: int | None = None) -> None:
        out.append(Mismatch(kind, partition.dataset, start, end, block, detail))

    try:
        body = store.get_bytes(segment_key(store, partition, cold_layout.MANIFEST_NAME))
        success = store.get_bytes(segment_key(store, partition, cold_layout.SUCCESS_NAME))
    except ObjectNotFound as exc:
        bad("missing", f"{exc.args[0] if exc.args else 'manifest'} is gone")
        into.unread.update(range(start, end))
        return
    if success.decode(errors="replace").strip() != hashlib.sha256(body).hexdigest():
        bad("checksum", "manifest.json does not match the sha256 in _SUCCESS")
        into.unread.update(range(start, end))
        return
    try:
        manifest = json.loads(body)
        entries = {f["name"]: f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError):
        bad("checksum", "manifest.json is not a partition manifest")
        into.unread.update(range(start, end))
        return
    columns = {
        "blocks": ["block_number", "block_hash", "parent_hash"],
        "transactions": ["block_number"],
        "logs": ["block_number"],
    }.get(partition.dataset)
    for file in partition.files:
        name = file["name"]
        entry = entries.get(name)
        span = range(int(file["range_start"]), int(file["range_end"]))
        if entry is None:
            bad("checksum", f"{name} is not in the manifest")
            into.unread.update(span)
            continue
        try:
            data = store.get_bytes(segment_key(store, partition, name))
        except ObjectNotFound:
            bad("missing", f"{name} is gone")
            into.unread.update(span)
            continue
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            bad("checksum", f"{name}: sha256 differs from the manifest ({len(data)} bytes)")
        if columns is None:
            continue
        try:
            table = pq.read_table(io.BytesIO(data), columns=columns)
        except Exception as exc:  # any unreadable file is the same finding
            bad("checksum", f"{name} is not readable Parquet: {type(exc).__name__}")
            into.unread.update(span)
            continue
        numbers = table.column("block_number").to_pylist()
        outside = [n for n in numbers if n not in span]
        if outside:
            bad("coverage", f"{name} holds blocks outside its range: {sorted(set(outside))[:5]}")
        if partition.dataset == "blocks":
            hashes = table.column("block_hash").to_pylist()
            parents = table.column("parent_hash").to_pylist()
            for n, h, p in zip(numbers, hashes, parents, strict=True):
                if n in into.hashes:
                    bad("coverage", f"block {n} is held twice", n)
                into.hashes[n] = (h, p)
            held = set(numbers)
            for n in span:  # the file's own blocks: a chunked partition has one file a chunk
                if n not in held:
                    bad("coverage", f"block {n} is missing from {name}", n)
        else:
            into.counts.update(numbers)


def _coverage(partitions: list[Partition], start: int, end: int, dataset: str) -> list[Mismatch]:
    """Gaps and overlaps between the partitions of one dataset within `[start, end)`."""
    found, at = [], start
    for segment in sorted(partitions, key=lambda s: s.range_start):
        if segment.range_start > at:
            found.append(Mismatch("coverage", dataset, at, segment.range_start, at, "no partition"))
        elif segment.range_start < at:
            found.append(
                Mismatch(
                    "coverage",
                    dataset,
                    segment.range_start,
                    segment.range_end,
                    segment.range_start,
                    f"overlaps the partition before it (up to {at})",
                )
            )
        at = max(at, segment.range_end)
    if at < end:
        found.append(Mismatch("coverage", dataset, at, end, at, "no partition"))
    return found


# --- the check ------------------------------------------------------------------------------------


def _cold_bounds(partitions: list[Partition]) -> tuple[int, int] | None:
    blocks = [s for s in partitions if s.dataset == "blocks"]
    if not blocks:
        return None
    return min(s.range_start for s in blocks), max(s.range_end for s in blocks)


def _hot_block(engine: Engine, chain_id: int, number: int) -> tuple[str, str] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(hot_blocks.c.block_hash, hot_blocks.c.parent_hash).where(
                hot_blocks.c.chain_id == chain_id, hot_blocks.c.block_number == number
            )
        ).first()
    return None if row is None else (row[0], row[1])


def integrity_check(
    *,
    engine: Engine,
    store: ObjectStore,
    adapter: Any,
    chain_id: int,
    range_start: int | None,
    range_end: int | None,
    finality_depth_blocks: int,
    sample: float | None = None,
    seed: int = 0,
    heartbeat: Callable[[], None] = lambda: None,
    partitions: list[Partition] | None = None,
) -> Report:
    """Check the chain's `partitions` (None: its live compacted ones) overlapping
    `[range_start, range_end)` (None: from cold's first block / to cold's last), clipped to
    what the node has finalized. Partitions that straddle the finality line are left for a
    later check."""
    head = adapter.head_number()
    final_end = head - finality_depth_blocks + 1  # blocks below are final
    # Compaction moves all four datasets; a backfill only the streams it has.
    expected = ROW_DATASETS
    if partitions is None:
        partitions = compacted_partitions(engine, chain_id)
    else:
        expected = tuple(d for d in ROW_DATASETS if any(p.dataset == d for p in partitions))
    bounds = _cold_bounds(partitions)
    start = range_start if range_start is not None else (bounds[0] if bounds else 0)
    end = range_end if range_end is not None else (bounds[1] if bounds else start)
    end = min(end, final_end)
    # Whole partitions only: extend to the partitions' bounds, drop those not final yet.
    chosen = [
        s
        for s in partitions
        if s.range_start < end and s.range_end > start and s.range_end <= final_end
    ]
    if chosen:
        start = min(start, *(s.range_start for s in chosen))
        end = max(s.range_end for s in chosen)
    report = Report(chain_id, start, max(start, end), sample=sample)
    if not chosen or end <= start:
        return report
    reads = {dataset: _Read() for dataset in ROW_DATASETS}
    by_dataset: dict[str, list[Partition]] = defaultdict(list)
    for segment in chosen:
        by_dataset[segment.dataset].append(segment)
    for dataset in sorted(by_dataset):
        for segment in by_dataset[dataset]:
            heartbeat()
            _read_partition(store, segment, report.mismatches, reads.get(dataset, _Read()))
            report.partitions_checked += 1
    for dataset in expected:
        report.mismatches += _coverage(by_dataset.get(dataset, []), start, end, dataset)
    for dataset in ("transactions", "logs"):  # a gap is reported once, not block by block
        spans = [range(p.range_start, p.range_end) for p in by_dataset.get(dataset, [])]
        reads[dataset].unread.update(n for n in range(start, end) if not any(n in s for s in spans))

    held = reads["blocks"].hashes
    owner = {
        n: (s.range_start, s.range_end)
        for s in by_dataset.get("blocks", [])
        for n in range(s.range_start, s.range_end)
    }

    def at(kind: str, dataset: str, n: int, detail: str) -> None:
        s, e = owner.get(n, (n, n + 1))
        report.mismatches.append(Mismatch(kind, dataset, s, e, n, detail))

    # Parent links inside and across files, and to the first hot block above cold.
    for n in sorted(held):
        if n - 1 in held and held[n][1] != held[n - 1][0]:
            at("parent_link", "blocks", n, f"parent_hash {held[n][1]} != block {n - 1}'s hash")
    last = end - 1
    if last in held and end < final_end:
        above = _hot_block(engine, chain_id, end)
        if above is not None and above[1] != held[last][0]:
            at("parent_link", "blocks", last, f"hot block {end}'s parent is not cold's last block")

    numbers = list(range(start, end))
    if sample is not None and sample < 1:
        count = max(1, round(len(numbers) * sample))
        picker = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
        numbers = sorted(picker.sample(numbers, min(count, len(numbers))))
    report.blocks_checked = len(numbers)
    heartbeat()
    node = node_blocks(adapter, numbers)
    heartbeat()
    logs = node_log_counts(adapter, numbers)
    txs, held_logs = reads["transactions"], reads["logs"]
    for n in numbers:
        truth = node[n]
        if n in held and held[n][0] != truth.hash:
            at("hash", "blocks", n, f"cold {held[n][0]} != node {truth.hash}")
        compare_txs = by_dataset.get("transactions") and n not in txs.unread
        if compare_txs and txs.counts[n] != truth.tx_count:
            at("tx_count", "transactions", n, f"cold {txs.counts[n]} != node {truth.tx_count}")
        compare_logs = by_dataset.get("logs") and n not in held_logs.unread
        if compare_logs and held_logs.counts[n] != logs[n]:
            at("log_count", "logs", n, f"cold {held_logs.counts[n]} != node {logs[n]}")
    _owners_fix(report, by_dataset)
    if report.mismatches:
        log.warning(
            "integrity chain %s [%s, %s): %s mismatches in %s",
            chain_id,
            start,
            end,
            len(report.mismatches),
            report.affected(),
        )
    return report


def _owners_fix(report: Report, by_dataset: dict[str, list[Partition]]) -> None:
    """Give each block-level mismatch the range of its own dataset's partition."""
    fixed = []
    for m in report.mismatches:
        if m.block is not None:
            for segment in by_dataset.get(m.dataset, []):
                if segment.range_start <= m.block < segment.range_end:
                    m = Mismatch(
                        m.kind, m.dataset, segment.range_start, segment.range_end, m.block, m.detail
                    )
                    break
        fixed.append(m)
    report.mismatches = fixed


def kinds_of(mismatches: Iterable[Mismatch]) -> list[str]:
    return sorted({m.kind for m in mismatches})

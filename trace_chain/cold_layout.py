"""The cold partition format: where a chain dataset's block range lives in the object store
(deterministic, version-addressed keys), what its manifest says, and how it is published.

A partition is `{chain_id}/{dataset}/{config_hash[:16]}/{start:08}_{end_inclusive:08}/` holding
Parquet files named `{chain}__{dataset}__{start:08}_to_{end_inclusive:08}.parquet`, then
`manifest.json`, then `_SUCCESS` (written last). Ranges are end-exclusive in every API and
inclusive in names. See docs/cold_storage.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trace_chain.object_store import ObjectNotFound, ObjectStore

# 2: files hold the one chain schema (trace_chain/chain_schema.py); 1: Cryo's own columns.
LAYOUT_VERSION = 2
MANIFEST_FORMAT = "trace.cold.partition/1"
MANIFEST_NAME = "manifest.json"
SUCCESS_NAME = "_SUCCESS"
CONFIG_HASH_PREFIX_CHARS = 16
# Manifest keys that describe who wrote the partition, not what it holds: a re-run with a newer
# extractor build must still count as the same content.
PRODUCER_KEY = "producer"


class PartitionConflict(Exception):
    """The prefix already holds a committed partition whose content differs from ours."""


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_identity(
    *, chain_id: int, chain: str, dataset: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """Everything that decides a partition's bytes apart from its range: the chain, the dataset
    and the extractor options that change content (columns, compression, chunking, filters).
    Throughput knobs (rate limits, concurrency) must not be in `options`. The chain's label is
    in too because it is part of every file name."""
    from trace_chain.chain_schema import SCHEMA_VERSION

    return {
        "layout": LAYOUT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "chain_id": int(chain_id),
        "chain": chain,
        "dataset": dataset,
        "options": dict(options),
    }


def config_hash(identity: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(identity))


def data_file_name(*, chain: str, dataset: str, start: int, end: int) -> str:
    """`[start, end)` -> `{chain}__{dataset}__{start:08}_to_{end - 1:08}.parquet` (Cryo's own
    naming, so files sort in block order and show the inclusive range)."""
    _check_range(start, end)
    return f"{chain}__{dataset}__{start:08}_to_{end - 1:08}.parquet"


def chunk_ranges(start: int, end: int, chunk_size: int | None) -> list[tuple[int, int]]:
    """`[start, end)` cut into end-exclusive chunks of `chunk_size` from `start` (one chunk when
    `chunk_size` is None), the way Cryo chunks an unaligned range."""
    _check_range(start, end)
    step = end - start if chunk_size is None else chunk_size
    if step <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return [(s, min(s + step, end)) for s in range(start, end, step)]


def _check_range(start: int, end: int) -> None:
    if start < 0 or end <= start:
        raise ValueError(f"invalid block range [{start}, {end}): need 0 <= start < end")


def version_prefix(*, chain_id: int, dataset: str, config_hash: str) -> str:
    """Where every partition of one dataset under one config lives:
    `{chain_id}/{dataset}/{config_hash[:16]}/`."""
    return f"{chain_id}/{dataset}/{config_hash[:CONFIG_HASH_PREFIX_CHARS]}/"


@dataclass(frozen=True)
class ColdPartition:
    """One dataset's block range `[range_start, range_end)` under one config."""

    chain_id: int
    chain: str
    dataset: str
    config_hash: str
    range_start: int
    range_end: int  # end-exclusive
    # Compaction's partitions hold what the chain was when they were written: one revision per
    # content (the range's last block hash), so a range rebuilt after a deep reorg gets a prefix
    # of its own instead of conflicting with the one it replaces. None: Cryo's, by range only.
    revision: str | None = None

    def __post_init__(self) -> None:
        _check_range(self.range_start, self.range_end)
        if len(self.config_hash) < CONFIG_HASH_PREFIX_CHARS:
            raise ValueError("config_hash is too short")
        if self.revision is not None and not (
            self.revision.isalnum() and self.revision.isascii() and 0 < len(self.revision) <= 64
        ):
            raise ValueError(f"revision must be 1 to 64 ASCII letters or digits: {self.revision!r}")

    @property
    def prefix(self) -> str:
        version = version_prefix(
            chain_id=self.chain_id, dataset=self.dataset, config_hash=self.config_hash
        )
        revision = f"{self.revision}/" if self.revision else ""
        return f"{version}{self.range_start:08}_{self.range_end - 1:08}/{revision}"

    @property
    def partition_key(self) -> str:
        """The control plane's default key for an end-exclusive range."""
        if self.revision:
            return f"{self.dataset}/{self.range_start}_{self.range_end}/{self.revision}"
        return f"{self.range_start}_{self.range_end}"

    @property
    def manifest_key(self) -> str:
        return self.prefix + MANIFEST_NAME

    @property
    def success_key(self) -> str:
        return self.prefix + SUCCESS_NAME

    def key(self, name: str) -> str:
        return self.prefix + name

    def file_names(self, chunk_size: int | None = None) -> list[str]:
        return [
            data_file_name(chain=self.chain, dataset=self.dataset, start=s, end=e)
            for s, e in chunk_ranges(self.range_start, self.range_end, chunk_size)
        ]


# --- manifest ---------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def arrow_schema_fields(schema: Any) -> list[dict[str, Any]]:
    """A pyarrow schema as plain data (names, types, nullability), without writer metadata."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


def parquet_content_sha256(path: str | os.PathLike[str], *, batch_rows: int = 65_536) -> str:
    """A digest of a Parquet file's values, independent of how they were encoded.

    Two files with the same rows in the same order hash alike whatever their compression,
    row groups, page layout or writer version; any changed value (a reorged block hash, a
    missing log) changes it. Each column feeds three streams — null mask, value lengths, value
    bytes — so the result does not depend on where batches happen to be cut. Integers are
    widened to 64 bits and floats to float64, so a physical-type change alone does not
    change the digest (the schema hash catches that separately)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    streams = {name: [hashlib.sha256() for _ in range(3)] for name in names}
    for batch in parquet.iter_batches(batch_size=batch_rows):
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            _feed_column(streams[name], column)
    outer = hashlib.sha256(canonical_json(names))
    for name in names:
        for stream in streams[name]:
            outer.update(stream.digest())
    return outer.hexdigest()


def _fixed_width(array: Any, width: int) -> memoryview:
    """The value bytes of a null-free fixed-width array (Arrow is little-endian here)."""
    return memoryview(array.buffers()[1])[
        array.offset * width : (array.offset + len(array)) * width
    ]


def _feed_column(streams: list[Any], column: Any) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    nulls, lengths, values = streams
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    nulls.update(_fixed_width(column.is_null().cast(pa.uint8()), 1))
    if pa.types.is_integer(kind):
        wide = pa.uint64() if pa.types.is_unsigned_integer(kind) else pa.int64()
        values.update(_fixed_width(pc.fill_null(column.cast(wide), 0), 8))
    elif pa.types.is_floating(kind):
        values.update(_fixed_width(pc.fill_null(column.cast(pa.float64()), 0.0), 8))
    elif pa.types.is_boolean(kind):
        values.update(_fixed_width(pc.fill_null(column, False).cast(pa.uint8()), 1))
    elif (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    ):
        filled = pc.fill_null(column.cast(pa.large_binary()), b"")
        lengths.update(_fixed_width(pc.binary_length(filled), 8))
        offsets = memoryview(filled.buffers()[1]).cast("q")
        first, last = offsets[filled.offset], offsets[filled.offset + len(filled)]
        if last > first:
            values.update(memoryview(filled.buffers()[2])[first:last])
    else:  # nested or exotic types: slower, still exact
        for item in column.to_pylist():
            encoded = repr(item).encode()
            lengths.update(len(encoded).to_bytes(8, "little"))
            values.update(encoded)


def file_entry(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One manifest `files[]` entry for a local Parquet file, plus its schema fields."""
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(path)
    entry = {
        "name": Path(path).name,
        "rows": metadata.num_rows,
        "bytes": os.path.getsize(path),
        "sha256": file_sha256(path),
        "content_sha256": parquet_content_sha256(path),
    }
    return entry, arrow_schema_fields(metadata.schema.to_arrow_schema())


def manifest_build(
    *,
    partition: ColdPartition,
    identity: Mapping[str, Any],
    paths: Sequence[str | os.PathLike[str]],
    producer: Mapping[str, Any],
) -> dict[str, Any]:
    """The manifest of a partition whose files are the local `paths` (all one schema).

    It holds nothing about the run (no time, task or host), so re-running the same range with
    the same config produces an equal manifest."""
    if config_hash(identity) != partition.config_hash:
        raise ValueError("identity does not hash to the partition's config_hash")
    entries, schema = [], None
    for path in sorted(paths, key=lambda p: Path(p).name):
        entry, fields = file_entry(path)
        if schema is not None and fields != schema:
            raise ValueError(f"{entry['name']} has a different schema from the other files")
        schema = fields
        entries.append(entry)
    if schema is None:
        raise ValueError("a partition needs at least one file")
    return {
        "format": MANIFEST_FORMAT,
        "chain_id": partition.chain_id,
        "chain": partition.chain,
        "dataset": partition.dataset,
        "range_start": partition.range_start,
        "range_end": partition.range_end,
        "config_hash": partition.config_hash,
        "config": dict(identity),
        # Which chain schema the files hold (absent: written before it, read with a mapping).
        "schema_version": identity.get("schema_version"),
        "schema_hash": sha256_hex(canonical_json(schema)),
        "schema": schema,
        "row_count": sum(e["rows"] for e in entries),
        "bytes": sum(e["bytes"] for e in entries),
        "files": entries,
        PRODUCER_KEY: dict(producer),
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Indented for people browsing the bucket; sorted keys make equal manifests equal bytes."""
    return json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False).encode() + b"\n"


@dataclass(frozen=True)
class Comparison:
    verdict: str  # "identical" | "equivalent" | "conflict"
    reason: str = ""


def manifests_compare(existing: Mapping[str, Any], ours: Mapping[str, Any]) -> Comparison:
    """`identical`: same files byte for byte. `equivalent`: same rows and values, only the
    encoding differs (another Cryo/Polars build wrote the committed files). Anything else —
    other values, rows, files, schema or config — is a `conflict`."""

    def content(m: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k != PRODUCER_KEY}

    if content(existing) == content(ours):
        return Comparison("identical")
    for key in ("format", "chain_id", "dataset", "range_start", "range_end", "config_hash"):
        if existing.get(key) != ours.get(key):
            return Comparison("conflict", f"{key} {existing.get(key)!r} != {ours.get(key)!r}")
    if existing.get("schema_hash") != ours.get("schema_hash"):
        return Comparison("conflict", "schema differs")

    def logical(m: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [(f.get("name"), f.get("rows"), f.get("content_sha256")) for f in m["files"]]

    theirs, mine = logical(existing), logical(ours)
    if [f[0] for f in theirs] != [f[0] for f in mine]:
        return Comparison("conflict", f"files {[f[0] for f in theirs]} != {[f[0] for f in mine]}")
    for (name, rows_a, digest_a), (_, rows_b, digest_b) in zip(theirs, mine, strict=True):
        if rows_a != rows_b:
            return Comparison("conflict", f"{name}: {rows_a} rows committed, {rows_b} now")
        if digest_a is None or digest_a != digest_b:
            return Comparison("conflict", f"{name}: values differ (same row count)")
    return Comparison("equivalent")


# --- publishing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    status: str  # "uploaded" | "identical" | "equivalent"
    location: str  # store URI of the partition prefix
    manifest: dict[str, Any]  # the manifest now committed at the prefix
    uploaded_files: int


def committed_manifest(store: ObjectStore, partition: ColdPartition) -> dict[str, Any] | None:
    """The manifest at the prefix if the partition is committed (`_SUCCESS` present), else
    None. A `_SUCCESS` without a readable manifest is a damaged prefix: a conflict."""
    if not store.exists(partition.success_key):
        return None
    where = store.uri(partition.prefix)
    try:
        manifest = json.loads(store.get_bytes(partition.manifest_key))
    except ObjectNotFound:
        raise PartitionConflict(f"{where} has {SUCCESS_NAME} but no {MANIFEST_NAME}") from None
    except ValueError as exc:
        raise PartitionConflict(f"{where}{MANIFEST_NAME} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise PartitionConflict(f"{where}{MANIFEST_NAME} is not a partition manifest")
    return manifest


def partition_publish(
    *,
    store: ObjectStore,
    partition: ColdPartition,
    files: Mapping[str, str | os.PathLike[str]],
    manifest: Mapping[str, Any],
    before_write: Callable[[], None] = lambda: None,
) -> Published:
    """Make `partition` hold `files` (name -> local path) described by `manifest`.

    Commit protocol: data files, then `manifest.json`, then `_SUCCESS` (holding the manifest's
    sha256) last; the prefix counts as committed only once `_SUCCESS` exists. Keys are
    deterministic, so a retry overwrites a crashed attempt's partial upload with the same bytes.
    If the prefix is already committed: identical content is published as it is (missing files
    restored, nothing else written); equivalent content (same values, other encoding) is
    published as it is; different content raises `PartitionConflict` and writes nothing.
    `before_write` runs before every write (the operator passes its lease check there)."""
    names = sorted(files)
    if names != [f["name"] for f in manifest["files"]]:
        raise ValueError("files do not match the manifest's file list")
    location = store.uri(partition.prefix)
    existing = committed_manifest(store, partition)
    if existing is not None:
        comparison = manifests_compare(existing, manifest)
        if comparison.verdict == "conflict":
            raise PartitionConflict(
                f"conflicting content at prefix {location}: a committed partition is there "
                f"and differs from this run ({comparison.reason})"
            )
        missing = [n for n in names if not store.exists(partition.key(n))]
        if missing and comparison.verdict == "equivalent":
            raise PartitionConflict(
                f"committed partition at {location} is missing {missing} and this run's "
                "files are not byte-identical, so they cannot stand in"
            )
        for name in missing:  # identical bytes: restoring them is safe
            before_write()
            store.put_file(files[name], partition.key(name))
        return Published(comparison.verdict, location, dict(existing), len(missing))
    for name in names:
        before_write()
        store.put_file(files[name], partition.key(name))
    body = manifest_bytes(manifest)
    before_write()
    store.put_bytes(body, partition.manifest_key)
    absent = [n for n in names if not store.exists(partition.key(n))]
    if absent:  # never mark a partition committed that readers could not read in full
        raise RuntimeError(f"uploaded files vanished from {location}: {absent}")
    before_write()
    store.put_bytes(f"{sha256_hex(body)}\n".encode(), partition.success_key)
    return Published("uploaded", location, dict(manifest), len(names))

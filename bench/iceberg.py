"""Benchmark: the Iceberg sync (trace_chain/iceberg.py) over N committed partitions of blocks,
beside pyiceberg's own `add_files` of the same files into a fresh table (the bare library
path, one append); a no-op re-sync and a one-partition replacement; then DuckDB reading the
same files through `iceberg_scan` and through `read_parquet` over the file list.

    python bench/iceberg.py [--partitions 100] [--rows 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from common import data_db, median

SCAN = "SELECT count(*), sum(gas_used), count(DISTINCT block_hash) FROM {source}"


def write_partitions(root: Path, partitions: int, rows: int, tag: str = "a") -> list[str]:
    import pyarrow as pa

    from trace_chain import chain_schema

    uris = []
    for p in range(partitions):
        start = p * rows
        table = pa.Table.from_pylist(
            [
                {
                    "chain_id": 1,
                    "block_number": b,
                    "block_hash": f"0x{tag}{b:063x}",
                    "parent_hash": f"0x{b:064x}",
                    "timestamp": 1_700_000_000 + b,
                    "miner": "0x" + "ab" * 20,
                    "gas_used": b % 30_000_000,
                    "base_fee_per_gas": None,
                    "size": 1000,
                    "extra_data": "0x",
                }
                for b in range(start, start + rows)
            ],
            schema=chain_schema.arrow_schema("blocks"),
        )
        path = root / tag / f"{start:08}_{start + rows - 1:08}" / "blocks.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        chain_schema.parquet_write(table, path)
        uris.append(path.as_uri())
    return uris


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import os

    import duckdb

    from trace_chain import iceberg

    data_db("trace_bench_iceberg")
    root = Path(tempfile.mkdtemp(prefix="trace-bench-iceberg-"))
    os.environ[iceberg.WAREHOUSE_ENV] = (root / "warehouse").as_uri()
    files = write_partitions(root, args.partitions, args.rows)
    rebuilt = write_partitions(root, 1, args.rows, tag="b")  # a new revision of partition 0
    settings = iceberg.iceberg_settings_from_env()
    catalog = iceberg.iceberg_catalog(settings)

    first, noop, replace, bare = [], [], [], []
    for _ in range(args.rounds):
        name = (settings.namespace, f"bench_{uuid.uuid4().hex[:8]}")
        began = time.perf_counter()
        iceberg.table_sync(catalog=catalog, identifier=name, dataset="blocks", files=files)
        first.append(time.perf_counter() - began)
        began = time.perf_counter()
        iceberg.table_sync(catalog=catalog, identifier=name, dataset="blocks", files=files)
        noop.append(time.perf_counter() - began)
        began = time.perf_counter()
        result = iceberg.table_sync(
            catalog=catalog, identifier=name, dataset="blocks", files=rebuilt + files[1:]
        )
        replace.append(time.perf_counter() - began)
        baseline = (settings.namespace, f"bare_{uuid.uuid4().hex[:8]}")
        table = iceberg.table_ensure(catalog, baseline, "blocks")
        began = time.perf_counter()
        table.add_files(files)
        bare.append(time.perf_counter() - began)
    metadata = result.metadata_location

    conn = iceberg.duckdb_iceberg(duckdb.connect())
    listed = ", ".join("'" + iceberg_path(u) + "'" for u in rebuilt + files[1:])
    sources = {
        "iceberg_scan": f"iceberg_scan('{metadata}')",
        "read_parquet": f"read_parquet([{listed}])",
    }
    answers, scans = {}, {k: [] for k in sources}
    for _ in range(args.rounds):
        for label, source in sources.items():
            began = time.perf_counter()
            answers[label] = conn.execute(SCAN.format(source=source)).fetchall()
            scans[label].append(time.perf_counter() - began)
    assert answers["iceberg_scan"] == answers["read_parquet"], answers

    n, rows = args.partitions, args.partitions * args.rows
    print(f"{n} partitions of {args.rows} blocks ({rows} rows), medians of {args.rounds}")
    print(f"{'path':58} {'seconds':>8} {'ms/partition':>13}")
    for label, values in [
        ("Trace: first sync (register every file, one snapshot)", first),
        ("baseline: pyiceberg add_files of the same files", bare),
        ("Trace: re-sync, nothing changed (no snapshot)", noop),
        ("Trace: one partition replaced (one snapshot)", replace),
    ]:
        seconds = median(values)
        print(f"{label:58} {seconds:8.3f} {seconds * 1000 / n:13.2f}")
    print(f"\n{'DuckDB scan (count, sum, distinct)':58} {'seconds':>8}")
    for label, values in scans.items():
        print(f"{label:58} {median(values):8.3f}")
    print(f"answers equal: {answers['iceberg_scan'][0]}")


def iceberg_path(uri: str) -> str:
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(uri).path)


if __name__ == "__main__":
    main()

"""Benchmark: parquet_compact moving a followed anvil range from the hot tables to cold Parquet
(rows/s, per-chunk time), against the bare work it wraps (read the hot rows, write the same
Parquet files) in the same run, and a federated query's time before and after.

    python bench/compaction.py [--blocks 200] [--txs-per-block 6] [--chunk 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import data_db, median, truncate

CHAIN_ID = 31337
TOTALS = (
    "SELECT (SELECT count(*) FROM blocks), (SELECT count(*) FROM transactions), "
    "(SELECT sum(value) FROM transactions), (SELECT count(*) FROM logs)"
)


def follow(url: str, engine) -> int:
    from trace_chain.adapter import ChainAdapter
    from trace_chain.rpc import RpcPool
    from trace_operators.block_follower import Follower, FollowerConfig
    from trace_operators.context import TaskContext, TaskScope

    ctx = TaskContext(1, 1, 1, "bench", "follow", {}, TaskScope(), emit_events=lambda e: e)
    config = FollowerConfig(chain_id=CHAIN_ID, rpc_pool="bench", batch_size=100)
    with RpcPool("bench", [url], timeout=30) as pool:
        follower = Follower(ctx, config, ChainAdapter(pool), engine)
        follower.resume()
        while follower.step():
            pass
        return follower.tip


def bare(engine, tip: int, chunk: int, into: Path) -> float:
    """Read each chunk's rows and write them as Parquet: the floor under compaction's cost."""
    from trace_chain import chain_schema
    from trace_chain.compaction import hot_table_read

    start = time.perf_counter()
    with engine.connect() as conn:
        for s in range(0, (tip + 1) // chunk * chunk, chunk):
            for dataset in chain_schema.DATASETS:
                table = hot_table_read(
                    conn, chain_id=CHAIN_ID, dataset=dataset, start=s, end=s + chunk
                )
                chain_schema.parquet_write(table, into / f"{dataset}-{s}.parquet")
    return time.perf_counter() - start


def query_seconds(tmp: Path) -> float:
    from trace_chain import chain_schema
    from trace_chain.db import query_reader_dsn
    from trace_chain.query.catalog import Catalog
    from trace_chain.query.engine import Limits, query_execute

    catalog = Catalog(
        datasets=frozenset(chain_schema.DATASETS),
        hot_chain_ids=frozenset({CHAIN_ID}),
        hot_dsn=query_reader_dsn(),
    )
    times = []
    for _ in range(5):
        result = query_execute(TOTALS, catalog=catalog, limits=Limits(), temp_dir=tmp / "q")
        times.append(result.seconds)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs-per-block", type=int, default=6)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default="trace_bench_compaction")
    args = parser.parse_args()

    import os

    from trace_chain import devchain
    from trace_chain.compaction import Policy, compact_chain
    from trace_chain.object_store import LocalObjectStore

    engine = data_db(args.db)
    policy = Policy(finality_depth_blocks=0, hot_window_blocks=0, chunk_blocks=args.chunk)
    with devchain.Anvil(accounts=args.txs_per_block + 1) as node:
        devchain.generate_traffic(node.url, blocks=args.blocks, txs_per_block=args.txs_per_block)
        devchain.mine(
            node.url, (args.chunk - (devchain.mine(node.url, 0) + 1) % args.chunk) % args.chunk
        )
        compact_times, bare_times, before, after = [], [], [], []
        for _ in range(args.rounds):
            truncate(engine)
            tip = follow(node.url, engine)
            rows = _rows(engine)
            tmp = Path(tempfile.mkdtemp(prefix="trace-bench-compact-"))
            os.environ["TRACE_OBJECT_STORE_URL"] = (tmp / "objects").as_uri()
            (tmp / "bare").mkdir()
            bare_times.append(bare(engine, tip, args.chunk, tmp / "bare"))
            before.append(query_seconds(tmp))
            store = LocalObjectStore(tmp / "objects")
            (tmp / "staging").mkdir()
            start = time.perf_counter()
            outcome = compact_chain(
                engine=engine,
                store=store,
                chain_id=CHAIN_ID,
                chain="anvil",
                policy=policy,
                staging=tmp / "staging",
                commit=lambda item: None,
                invalidate=lambda *a: None,
            )
            compact_times.append(time.perf_counter() - start)
            assert outcome.trimmed == (0, tip + 1), outcome.trimmed
            after.append(query_seconds(tmp))
    chunks = (tip + 1) // args.chunk
    c, b = median(compact_times), median(bare_times)
    print(f"range: {tip + 1} blocks, {chunks} chunks of {args.chunk}, {rows} rows")
    print(f"{'path':<44}{'seconds':>10}{'rows/s':>12}{'ms/chunk':>10}")
    for label, seconds in (
        ("read hot + write Parquet (bare)", b),
        ("compact_chain (publish, record, trim)", c),
    ):
        print(f"{label:<44}{seconds:>10.3f}{rows / seconds:>12.0f}{1000 * seconds / chunks:>10.1f}")
    hot_ms, cold_ms = median(before) * 1000, median(after) * 1000
    print(f"overhead: {c / b:.2f}x; query all-hot {hot_ms:.0f} ms, all-cold {cold_ms:.0f} ms")


def _rows(engine) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return sum(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()  # noqa: S608 - fixed names
            for t in ("hot_blocks", "hot_transactions", "hot_logs")
        )


if __name__ == "__main__":
    main()

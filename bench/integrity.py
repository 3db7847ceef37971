"""Benchmark: integrity_check over a compacted anvil range (blocks verified per second, full and
sampled), against the raw cost in the same run of what it must at least do: read the same
Parquet files with pyarrow and fetch the same block hashes (and log lists) with one batched
JSON-RPC loop.

    python bench/integrity.py [--blocks 500] [--txs-per-block 4] [--chunk 50] [--sample 0.1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import data_db, median, truncate
from compaction import CHAIN_ID, follow


def raw_read(store, engine) -> float:
    """Every live segment's files read whole with pyarrow (bytes from the store)."""
    import io

    import pyarrow.parquet as pq

    from trace_chain.cold_segments import segments_live
    from trace_chain.integrity import segment_key

    start = time.perf_counter()
    with engine.connect() as conn:
        segments = segments_live(conn, chain_id=CHAIN_ID)
    for segment in segments:
        for entry in segment.files:
            pq.read_table(io.BytesIO(store.get_bytes(segment_key(store, segment, entry["name"]))))
    return time.perf_counter() - start


def raw_fetch(url: str, numbers: list[int], batch: int = 100) -> float:
    """Headers of `numbers` and the logs of their ranges in plain batches of `batch`."""
    from trace_chain.rpc import RpcPool

    start = time.perf_counter()
    with RpcPool("bench", [url], timeout=30) as pool:
        for i in range(0, len(numbers), batch):
            part = numbers[i : i + batch]
            pool.batch([("eth_getBlockByNumber", [hex(n), False]) for n in part])
            pool.batch([("eth_getLogs", [{"fromBlock": hex(part[0]), "toBlock": hex(part[-1])}])])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--txs-per-block", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--sample", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default="trace_bench_integrity")
    args = parser.parse_args()

    from trace_chain import devchain
    from trace_chain.adapter import ChainAdapter
    from trace_chain.compaction import Policy, compact_chain
    from trace_chain.integrity import integrity_check
    from trace_chain.object_store import LocalObjectStore
    from trace_chain.rpc import RpcPool

    engine = data_db(args.db)
    policy = Policy(finality_depth_blocks=0, hot_window_blocks=0, chunk_blocks=args.chunk)
    with devchain.Anvil(accounts=args.txs_per_block + 1) as node:
        devchain.generate_traffic(node.url, blocks=args.blocks, txs_per_block=args.txs_per_block)
        devchain.mine(
            node.url, (args.chunk - (devchain.mine(node.url, 0) + 1) % args.chunk) % args.chunk
        )
        truncate(engine)
        tip = follow(node.url, engine)
        tmp = Path(tempfile.mkdtemp(prefix="trace-bench-integrity-"))
        store = LocalObjectStore(tmp / "objects")
        (tmp / "staging").mkdir()
        compact_chain(
            engine=engine,
            store=store,
            chain_id=CHAIN_ID,
            chain="anvil",
            policy=policy,
            staging=tmp / "staging",
            commit=lambda item: None,
            invalidate=lambda *a: None,
        )
        devchain.mine(node.url, 1)  # the last compacted block is final with depth 1
        times: dict[str, list[float]] = {"full": [], "sampled": [], "read": [], "fetch": []}
        checked = {}
        with RpcPool("bench", [node.url], timeout=30) as pool:
            adapter = ChainAdapter(pool, batch_size=100, max_batch_size=100)
            for _ in range(args.rounds):
                for label, sample in (("full", None), ("sampled", args.sample)):
                    start = time.perf_counter()
                    report = integrity_check(
                        engine=engine,
                        store=store,
                        adapter=adapter,
                        chain_id=CHAIN_ID,
                        range_start=None,
                        range_end=None,
                        finality_depth_blocks=1,
                        sample=sample,
                    )
                    times[label].append(time.perf_counter() - start)
                    assert report.clean, report.mismatches[:5]
                    checked[label] = (report.range_end - report.range_start, report.blocks_checked)
                times["read"].append(raw_read(store, engine))
                total = checked["full"][0]
                times["fetch"].append(raw_fetch(node.url, list(range(total))))
            adapter.close()
    blocks = checked["full"][0]
    full, sampled = median(times["full"]), median(times["sampled"])
    read, fetch = median(times["read"]), median(times["fetch"])
    print(
        f"range: {blocks} blocks ({tip + 1} followed), chunks of {args.chunk}, medians of "
        f"{args.rounds}; sampled compares {checked['sampled'][1]} blocks with the node"
    )
    print(f"{'path':<52}{'seconds':>9}{'blocks/s':>11}")
    for label, seconds in (
        ("raw: pyarrow read of every file", read),
        ("raw: batched eth_getBlockByNumber + eth_getLogs", fetch),
        ("raw: read + fetch", read + fetch),
        ("integrity_check full", full),
        (f"integrity_check sample {args.sample}", sampled),
    ):
        print(f"{label:<52}{seconds:>9.3f}{blocks / seconds:>11.0f}")
    print(
        f"full / (read + fetch): {full / (read + fetch):.2f}x; "
        f"sampled / full: {sampled / full:.2f}x"
    )


if __name__ == "__main__":
    main()

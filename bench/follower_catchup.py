"""Benchmark: block_follower catch-up (blocks/s and rows/s into Postgres) against a plain
web3 loop writing the same rows, on the same anvil range, in the same run.

    python bench/follower_catchup.py [--blocks 200] [--txs-per-block 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

from common import data_db, median, require_baseline, truncate, web3_baseline_write

CHAIN_ID = 31337


def follower_catch_up(url: str, engine, head: int) -> tuple[float, int]:
    from trace_chain.adapter import ChainAdapter
    from trace_chain.rpc import RpcPool
    from trace_operators.block_follower import Follower, FollowerConfig
    from trace_operators.context import TaskContext, TaskScope

    ctx = TaskContext(1, 1, 1, "bench", "follow", {}, TaskScope(), emit_events=lambda e: e)
    config = FollowerConfig(chain_id=CHAIN_ID, rpc_pool="bench", batch_size=100)
    with RpcPool("bench", [url], timeout=30) as pool:
        follower = Follower(ctx, config, ChainAdapter(pool), engine)
        start = time.perf_counter()
        follower.resume()
        while follower.tip is None or follower.tip < head:
            follower.step()
        return time.perf_counter() - start, _rows(engine)


def _rows(engine) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return sum(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()  # noqa: S608 - fixed names
            for t in ("hot_blocks", "hot_transactions", "hot_logs")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs-per-block", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_baseline("web3")

    from web3 import Web3

    from trace_chain import devchain

    engine = data_db()
    with devchain.Anvil(accounts=args.txs_per_block + 1) as node:
        devchain.generate_traffic(node.url, blocks=args.blocks, txs_per_block=args.txs_per_block)
        head = devchain.mine(node.url, 0)
        w3 = Web3(Web3.HTTPProvider(node.url))
        trace_times, base_times, rows = [], [], 0
        for _ in range(args.rounds):
            truncate(engine)
            seconds, rows = follower_catch_up(node.url, engine, head)
            trace_times.append(seconds)
            truncate(engine)
            start = time.perf_counter()
            base_rows = web3_baseline_write(w3, engine, CHAIN_ID, 0, head + 1)
            base_times.append(time.perf_counter() - start)
            assert base_rows == rows, (base_rows, rows)  # same work on both sides
    blocks = head + 1
    trace_s, base_s = median(trace_times), median(base_times)
    print(f"range: {blocks} blocks, {rows} rows (blocks+transactions+logs), rounds: {args.rounds}")
    print(f"{'path':<40}{'blocks/s':>12}{'rows/s':>12}")
    for label, seconds in (
        ("plain web3 loop + INSERT (baseline)", base_s),
        ("block_follower (batched RPC + COPY)", trace_s),
    ):
        print(f"{label:<40}{blocks / seconds:>12.1f}{rows / seconds:>12.1f}")
    print(f"speed-up: {base_s / trace_s:.2f}x")


if __name__ == "__main__":
    main()

"""Benchmark: tip lag (block mined -> its rows visible in hot Postgres), p50/p95, for the
block_follower and for a plain web3 polling loop, at 1 s and 200 ms block times, same run.

    python bench/tip_lag.py [--seconds 20] [--txs-per-block 5]

"Mined" is when a 5 ms poller first sees the block at the node; "visible" is when a 5 ms poller
first sees it in hot_blocks. Both pollers run beside the path under test.
"""

from __future__ import annotations

import argparse
import threading
import time

from common import data_db, percentile, require_baseline, truncate, web3_baseline_write

CHAIN_ID = 31337


class Watch(threading.Thread):
    """Record the first time each block number is seen by `probe` (returns the highest)."""

    def __init__(self, probe, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.probe, self.stop, self.seen = probe, stop, {}

    def run(self) -> None:
        last = None
        while not self.stop.is_set():
            top = self.probe()
            if top is not None and (last is None or top > last):
                now = time.perf_counter()
                for number in range((last + 1) if last is not None else top, top + 1):
                    self.seen.setdefault(number, now)
                last = top
            time.sleep(0.005)


def follower_path(url, engine, block_time, stop):
    from trace_chain.adapter import ChainAdapter
    from trace_chain.rpc import RpcPool
    from trace_operators.block_follower import Follower, FollowerConfig
    from trace_operators.context import TaskContext, TaskScope

    with RpcPool("bench", [url]) as pool:
        adapter = ChainAdapter(pool)
        ctx = TaskContext(1, 1, 1, "bench", "follow", {}, TaskScope(), emit_events=lambda e: e)
        config = FollowerConfig(
            chain_id=CHAIN_ID,
            rpc_pool="bench",
            start_block=adapter.head_number() + 1,
            poll_interval_seconds=block_time / 10,
        )
        follower = Follower(ctx, config, adapter, engine)
        follower.resume()
        while not stop.is_set():
            if not follower.step():
                time.sleep(follower.poll)


def web3_path(url, engine, block_time, stop):
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(url))
    next_block = w3.eth.block_number + 1
    while not stop.is_set():
        head = w3.eth.block_number
        if head >= next_block:
            web3_baseline_write(w3, engine, CHAIN_ID, next_block, head + 1)
            next_block = head + 1
        else:
            time.sleep(block_time / 10)


def measure(path, url, engine, block_time, seconds, txs_per_block):
    import sqlalchemy as sa

    from trace_chain import devchain
    from trace_chain.rpc import RpcPool

    truncate(engine)
    stop = threading.Event()
    with RpcPool("probe", [url]) as probe_pool:
        node = Watch(lambda: int(probe_pool.call("eth_blockNumber"), 16), stop)

        def hot_top():
            with engine.connect() as conn:
                return conn.execute(sa.text("SELECT max(block_number) FROM hot_blocks")).scalar()

        hot = Watch(hot_top, stop)
        worker = threading.Thread(target=path, args=(url, engine, block_time, stop), daemon=True)
        for thread in (node, hot, worker):
            thread.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:  # keep blocks non-empty while we measure
            devchain.send_transfers(url, txs_per_block) if txs_per_block else time.sleep(block_time)
            time.sleep(block_time / 2)
        stop.set()
        worker.join(timeout=30)
    lags = [hot.seen[n] - node.seen[n] for n in node.seen if n in hot.seen and n > min(node.seen)]
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--txs-per-block", type=int, default=5)
    args = parser.parse_args()
    require_baseline("web3")
    from trace_chain import devchain

    engine = data_db()
    print(f"{'block time':<12}{'path':<36}{'blocks':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for block_time in (1.0, 0.2):
        with devchain.Anvil(block_time=block_time, accounts=args.txs_per_block + 1) as node:
            for label, path in (
                ("plain web3 loop (baseline)", web3_path),
                ("block_follower", follower_path),
            ):
                lags = measure(path, node.url, engine, block_time, args.seconds, args.txs_per_block)
                p50, p95 = percentile(lags, 0.5) * 1000, percentile(lags, 0.95) * 1000
                print(f"{block_time:<12}{label:<36}{len(lags):>8}{p50:>10.0f}{p95:>10.0f}")


if __name__ == "__main__":
    main()

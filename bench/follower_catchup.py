"""Benchmark: block_follower catch-up (blocks/s and rows/s into Postgres) against Cryo extracting
the same range and datasets into memory (the practical limit of what the node serves) and a
plain web3 loop writing the same rows, on the same anvil range, in the same run.

    python bench/follower_catchup.py [--blocks 200] [--txs-per-block 10] [--rounds 3]
        [--batch-size 100] [--fetch-concurrency 4] [--profile]

Cryo is timed two ways, the three datasets one after another and all three at once; the
follower's ratio is to the faster. `--profile` adds a pyinstrument profile of one more catch-up
(the writer's thread: what it waits for and what it does itself) and one of the same catch-up
with everything in that thread (no fetch ahead, one request at a time: where the work is).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import data_db, median, require_baseline, truncate, web3_baseline_write

CHAIN_ID = 31337
DATASETS = ("blocks", "transactions", "logs")


def follower_catch_up(
    url: str, engine, head: int, *, batch_size: int, fetch_concurrency: int, prefetch: bool = True
) -> tuple[float, int]:
    from trace_chain.rpc import RpcPool
    from trace_operators.block_follower import Follower, FollowerConfig, follower_adapter
    from trace_operators.context import TaskContext, TaskScope

    ctx = TaskContext(1, 1, 1, "bench", "follow", {}, TaskScope(), emit_events=lambda e: e)
    config = FollowerConfig(
        chain_id=CHAIN_ID,
        rpc_pool="bench",
        batch_size=batch_size,
        fetch_concurrency=fetch_concurrency,
    )
    with RpcPool("bench", [url], timeout=30) as pool:
        follower = Follower(ctx, config, follower_adapter(pool, config), engine)
        if not prefetch:
            follower.prefetch.fetch_ahead = lambda start, end: None
        try:
            start = time.perf_counter()
            follower.resume()
            while follower.tip is None or follower.tip < head:
                follower.step()
            return time.perf_counter() - start, _rows(engine)
        finally:
            follower.close()


def cryo_extract(url: str, head: int, *, together: bool) -> tuple[float, int]:
    """Cryo's Python API: blocks, transactions and logs of [0, head] into memory (polars
    data frames), no file, no upload. Returns (seconds, rows)."""
    import cryo

    kwargs = {"blocks": [f"0:{head + 1}"], "rpc": url, "verbose": False, "no_report": True}

    async def all_at_once():
        return await asyncio.gather(*(cryo.async_collect(d, **kwargs) for d in DATASETS))

    start = time.perf_counter()
    if together:
        frames = asyncio.run(all_at_once())
    else:
        frames = [asyncio.run(cryo.async_collect(d, **kwargs)) for d in DATASETS]
    return time.perf_counter() - start, sum(len(frame) for frame in frames)


def _rows(engine) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return sum(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()  # noqa: S608 - fixed names
            for t in ("hot_blocks", "hot_transactions", "hot_logs")
        )


def profile(url: str, engine, head: int, args) -> None:
    from pyinstrument import Profiler

    for label, prefetch, concurrency in (
        ("pipelined (as measured): the writer's thread", True, args.fetch_concurrency),
        ("everything in one thread (no fetch ahead, one request at a time)", False, 1),
    ):
        truncate(engine)
        profiler = Profiler(interval=0.001)
        profiler.start()
        follower_catch_up(
            url,
            engine,
            head,
            batch_size=args.batch_size,
            fetch_concurrency=concurrency,
            prefetch=prefetch,
        )
        profiler.stop()
        print(f"\n=== profile: {label}")
        print(profiler.output_text(unicode=False, color=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs-per-block", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--fetch-concurrency", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    require_baseline("web3")
    require_baseline("polars")  # Cryo's Python API returns polars data frames
    if args.profile:
        require_baseline("pyinstrument")

    from web3 import Web3

    from trace_chain import devchain

    engine = data_db()
    with devchain.Anvil(accounts=args.txs_per_block + 1) as node:
        devchain.generate_traffic(node.url, blocks=args.blocks, txs_per_block=args.txs_per_block)
        head = devchain.mine(node.url, 0)
        w3 = Web3(Web3.HTTPProvider(node.url))
        times: dict[str, list[float]] = {"trace": [], "seq": [], "together": [], "naive": []}
        rows = 0
        # Each path once per round, interleaved, so other load on the machine falls on all.
        for _ in range(args.rounds):
            truncate(engine)
            seconds, rows = follower_catch_up(
                node.url,
                engine,
                head,
                batch_size=args.batch_size,
                fetch_concurrency=args.fetch_concurrency,
            )
            times["trace"].append(seconds)
            for key, together in (("seq", False), ("together", True)):
                seconds, cryo_rows = cryo_extract(node.url, head, together=together)
                assert cryo_rows == rows, (cryo_rows, rows)  # same work on both sides
                times[key].append(seconds)
            truncate(engine)
            start = time.perf_counter()
            base_rows = web3_baseline_write(w3, engine, CHAIN_ID, 0, head + 1)
            times["naive"].append(time.perf_counter() - start)
            assert base_rows == rows, (base_rows, rows)
        if args.profile:
            profile(node.url, engine, head, args)
    blocks = head + 1
    s = {key: median(values) for key, values in times.items()}
    cryo_s = min(s["seq"], s["together"])
    print(
        f"\nrange: {blocks} blocks, {rows} rows (blocks+transactions+logs), "
        f"rounds: {args.rounds} (medians), batch_size {args.batch_size}, "
        f"fetch_concurrency {args.fetch_concurrency}"
    )
    print(f"{'path':<58}{'blocks/s':>10}{'rows/s':>10}")
    for label, key in (
        ("Cryo into memory, the 3 datasets one after another", "seq"),
        ("Cryo into memory, the 3 datasets at once", "together"),
        ("plain web3 loop + INSERT", "naive"),
        ("block_follower (pipelined batched RPC + COPY)", "trace"),
    ):
        print(f"{label:<58}{blocks / s[key]:>10.1f}{rows / s[key]:>10.1f}")
    for key, values in times.items():
        print(f"  {key} rounds, blocks/s: " + ", ".join(f"{blocks / v:.0f}" for v in values))
    print(f"follower / Cryo (the faster): {cryo_s / s['trace']:.2f}")
    print(f"follower / plain web3 loop: {s['naive'] / s['trace']:.2f}x")


if __name__ == "__main__":
    main()

"""Benchmark: what `traces` costs. block_follower catch-up with `traces: false` against
`traces: true`, and a Cryo backfill of blocks, transactions and logs against the same plus
traces, on one anvil range with internal calls, in the same run.

    python bench/traces.py [--blocks 100] [--txs-per-block 6] [--rounds 3] [--batch-size 100]

Rows/s counts every row written (traces included when on); blocks/s is what catch-up speed
means to a user. Each path runs once per round, interleaved, medians reported.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import data_db, median, truncate

CHAIN_ID = 31337
BASE = ("blocks", "transactions", "logs")


def catch_up(url: str, engine, head: int, *, traces: bool, batch_size: int) -> tuple[float, int]:
    import sqlalchemy as sa

    from trace_chain.hot_schema import metadata
    from trace_chain.rpc import RpcPool
    from trace_operators.block_follower import Follower, FollowerConfig, follower_adapter
    from trace_operators.context import TaskContext, TaskScope

    ctx = TaskContext(1, 1, 1, "bench", "follow", {}, TaskScope(), emit_events=lambda e: e)
    config = FollowerConfig(
        chain_id=CHAIN_ID, rpc_pool="bench", batch_size=batch_size, traces=traces
    )
    with RpcPool("bench", [url], timeout=60) as pool:
        follower = Follower(ctx, config, follower_adapter(pool, config), engine)
        try:
            start = time.perf_counter()
            follower.resume()
            while follower.tip is None or follower.tip < head:
                follower.step()
            seconds = time.perf_counter() - start
        finally:
            follower.close()
    tables = [metadata.tables[f"hot_{d}"] for d in (*BASE, "traces")]
    with engine.connect() as conn:
        rows = sum(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar() for t in tables)
    return seconds, rows


def backfill(url: str, head: int, datasets: tuple[str, ...]) -> tuple[float, int]:
    """Cryo freezes of [0, head] per dataset, all at once, with the canonical options (the
    work cryo_ingest hands Cryo, without the rewrite and upload). Returns (seconds, rows)."""
    import cryo
    import pyarrow.parquet as pq

    from trace_chain import chain_schema

    with tempfile.TemporaryDirectory(prefix="trace-bench-cryo-") as out:

        async def freeze_all():
            return await asyncio.gather(
                *(
                    cryo.async_freeze(
                        d,
                        blocks=[f"0:{head + 1}"],
                        rpc=url,
                        output_dir=str(Path(out) / d),
                        verbose=False,
                        no_report=True,
                        columns=chain_schema.cryo_columns(d),
                        **chain_schema.CRYO_OPTIONS,
                    )
                    for d in datasets
                )
            )

        start = time.perf_counter()
        asyncio.run(freeze_all())
        seconds = time.perf_counter() - start
        rows = sum(pq.read_metadata(p).num_rows for p in Path(out).rglob("*.parquet"))
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--txs-per-block", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    from trace_chain import devchain
    from trace_chain.devchain_calls import generate_call_traffic

    engine = data_db()
    with devchain.Anvil(accounts=max(args.txs_per_block + 1, 8)) as node:
        # Half the blocks with internal calls (relays, creates, reverting inner calls), half
        # with transfers and log-emitting calls.
        calls = generate_call_traffic(node.url, blocks=args.blocks // 2)
        devchain.generate_traffic(
            node.url,
            blocks=args.blocks - args.blocks // 2,
            txs_per_block=args.txs_per_block,
            emitter=calls.emitter,
        )
        head = devchain.mine(node.url, 0)
        times: dict[str, list[float]] = {"off": [], "on": [], "cryo3": [], "cryo4": []}
        rows: dict[str, int] = {}
        for _ in range(args.rounds):
            for key, traces in (("off", False), ("on", True)):
                truncate(engine)
                seconds, rows[key] = catch_up(
                    node.url, engine, head, traces=traces, batch_size=args.batch_size
                )
                times[key].append(seconds)
            for key, datasets in (("cryo3", BASE), ("cryo4", (*BASE, "traces"))):
                seconds, rows[key] = backfill(node.url, head, datasets)
                times[key].append(seconds)
    blocks = head + 1
    s = {key: median(values) for key, values in times.items()}
    print(f"{blocks} blocks, {args.rounds} rounds, medians")
    for key, label in (
        ("off", "follower traces: false"),
        ("on", "follower traces: true"),
        ("cryo3", "Cryo blocks+transactions+logs"),
        ("cryo4", "Cryo the same + traces"),
    ):
        print(
            f"{label:32} {s[key]:7.2f} s  {blocks / s[key]:8.0f} blocks/s  "
            f"{rows[key] / s[key]:9.0f} rows/s  ({rows[key]} rows)"
        )
    print(
        f"follower with traces: {s['on'] / s['off']:.2f}x the time; "
        f"Cryo with traces: {s['cryo4'] / s['cryo3']:.2f}x"
    )


if __name__ == "__main__":
    main()

"""Benchmark: backfill blocks/s through Trace's whole task path (chain_sync plan -> tasks ->
Celery workers running cryo_ingest -> upload -> fenced publication) against running Cryo
directly over the same anvil range, same datasets and chunk size, in the same run.

    python bench/backfill.py [--blocks 500] [--txs-per-block 8] [--chunk 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import platform, start_celery, stop, wait_for_workers, wait_until

DATASETS = ("blocks", "transactions", "logs")


def cryo_direct(url: str, blocks: int, chunk: int, out: Path) -> float:
    import cryo

    start = time.perf_counter()
    for dataset in DATASETS:
        asyncio.run(
            cryo.async_freeze(
                dataset,
                blocks=[f"0:{blocks}"],
                rpc=url,
                output_dir=str(out / dataset),
                chunk_size=chunk,
                network_name="anvil",
                no_report=True,
                verbose=False,
            )
        )
    return time.perf_counter() - start


def trace_backfill(org, blocks: int, chunk: int, inflight: int) -> float:
    from trace_web.chain_sync.models import ChainSync
    from trace_web.chain_sync.selectors import chain_sync_status
    from trace_web.chain_sync.services import chain_sync_apply

    streams = "\n".join(
        f"  - {{dataset: {d}, chunk_size: {chunk}, max_inflight: {inflight}, rpc_pool: bench}}"
        for d in DATASETS
    )
    start = time.perf_counter()
    chain_sync_apply(
        org=org,
        yaml_text=f"kind: chain_sync\nname: bench\nchain_id: 31337\nmode: fixed_target\n"
        f"from_block: 0\nto_block: {blocks}\nstreams:\n{streams}\n",
    )
    sync = ChainSync.objects.get(org=org, name="bench")
    wait_until(lambda: all(r["complete"] for r in chain_sync_status(sync=sync)), interval=0.05)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--txs-per-block", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    args = parser.parse_args()

    import os

    from trace_chain import devchain

    home = platform()
    os.environ["TRACE_OBJECT_STORE_URL"] = (home / "objects").as_uri()
    with devchain.Anvil(accounts=args.txs_per_block + 1) as node:
        devchain.generate_traffic(node.url, blocks=args.blocks, txs_per_block=args.txs_per_block)
        os.environ["TRACE_RPC_POOL_BENCH"] = node.url
        blocks = devchain.mine(node.url, 0) + 1
        direct_s = cryo_direct(node.url, blocks, args.chunk, Path(tempfile.mkdtemp()))
        processes = [
            start_celery("worker", ["worker", "-Q", "platform", "-c", str(args.workers),
                                    "-l", "WARNING", "-n", "platform@%h"], home),
            start_celery("dispatcher", ["worker", "-Q", "dispatcher", "-c", "1",
                                        "-l", "WARNING", "-n", "dispatcher@%h"], home),
            start_celery("beat", ["beat", "-l", "WARNING",
                                  "--schedule", str(home / "beat-schedule")], home),
        ]  # fmt: skip
        try:
            wait_for_workers(2)
            from trace_web.orgs.services import org_create

            trace_s = trace_backfill(org_create(slug="bench"), blocks, args.chunk, args.workers)
        finally:
            stop(processes)
    print(f"range: {blocks} blocks x {len(DATASETS)} datasets, chunk {args.chunk}, "
          f"{args.workers} worker processes")  # fmt: skip
    print(f"{'path':<48}{'seconds':>10}{'blocks/s':>12}")
    for label, seconds in (
        ("cryo directly, one dataset after another", direct_s),
        ("Trace chain_sync -> tasks -> cryo_ingest", trace_s),
    ):
        print(f"{label:<48}{seconds:>10.2f}{blocks / seconds:>12.1f}")
    print(f"ratio Trace / direct (throughput): {direct_s / trace_s:.2f}")


if __name__ == "__main__":
    main()

"""Benchmark: backfill blocks/s through Trace's whole task path (chain_sync plan -> tasks ->
Celery workers running cryo_ingest -> upload -> fenced publication) against running Cryo
directly over the same anvil range, same datasets, columns and chunk size, in the same run.

    python bench/backfill.py [--blocks 500] [--txs-per-block 8] [--chunk 100]
                             [--workers 1 2 4] [--runs 3] [--profile]

For each worker-process count the two paths alternate `--runs` times; the table shows medians.
`--profile` adds where the time goes: the task timeline of the median Trace run (from the task
rows) and a pyinstrument profile of one warm cryo_ingest task per dataset.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import platform, start_celery, stop, wait_for_workers, wait_until

DATASETS = ("blocks", "transactions", "logs")


def cryo_options(dataset: str, chunk: int) -> dict:
    """What cryo_ingest asks Cryo for (the canonical columns, hex), at the bench's chunk size."""
    from trace_operators.cryo_ingest import config_parse

    config = config_parse({"chain_id": 31337, "dataset": dataset, "rpc_url": "http://x"})
    return {**config.cryo_options, "chunk_size": chunk}


def cryo_direct(url: str, blocks: int, chunk: int, out: Path) -> float:
    from trace_operators.cryo_ingest import cryo_freeze

    start = time.perf_counter()
    for dataset in DATASETS:
        cryo_freeze(
            dataset=dataset,
            start=0,
            end=blocks,
            url=url,
            output_dir=out / dataset,
            chain="anvil",
            options=cryo_options(dataset, chunk),
        )
    return time.perf_counter() - start


def trace_backfill(org, name: str, blocks: int, chunk: int, inflight: int) -> float:
    from trace_web.chain_sync.models import RangeStatus, ScheduledRange
    from trace_web.chain_sync.services import chain_sync_apply

    streams = "\n".join(
        f"  - {{dataset: {d}, chunk_size: {chunk}, max_inflight: {inflight}, rpc_pool: bench}}"
        for d in DATASETS
    )
    start = time.perf_counter()
    chain_sync_apply(
        org=org,
        yaml_text=f"kind: chain_sync\nname: {name}\nchain_id: 31337\nmode: fixed_target\n"
        f"from_block: 0\nto_block: {blocks}\nstreams:\n{streams}\n",
    )
    # A cheap count, polled: the status selector's rate and ETA queries would take CPU from
    # the workers on a 2-core machine. Ranges are [0, chunk), [chunk, 2 chunk), ... per stream.
    ranges = len(DATASETS) * -(-blocks // chunk)
    done = ScheduledRange.objects.filter(
        stream__chain_sync__org=org, stream__chain_sync__name=name, status=RangeStatus.DONE
    )
    wait_until(lambda: done.count() == ranges, interval=0.02)
    return time.perf_counter() - start


def timeline(name: str, workers: int, wall: float) -> list[tuple[str, str]]:
    """Where a Trace run's wall time went, from its task rows."""
    from trace_web.chain_sync.models import ScheduledRange
    from trace_web.chain_sync.services import dag_name_for
    from trace_web.orchestration.models import Task

    tasks = list(
        Task.objects.filter(job__dag_version__name=dag_name_for(name)).values(
            "id", "created_at", "started_at", "finished_at"
        )
    )
    by_id = {t["id"]: t for t in tasks}
    first = min(t["created_at"] for t in tasks)
    last = max(t["finished_at"] for t in tasks)
    runs = [(t["finished_at"] - t["started_at"]).total_seconds() for t in tasks]
    waits = [(t["started_at"] - t["created_at"]).total_seconds() for t in tasks]
    # Completion of one range -> creation of the next range of the same stream.
    gaps = []
    for stream_id in {r.stream_id for r in ScheduledRange.objects.filter(task_id__in=by_id)}:
        ordered = [
            by_id[r.task_id]
            for r in ScheduledRange.objects.filter(stream_id=stream_id).order_by("range_start")
        ]
        gaps += [
            (b["created_at"] - a["finished_at"]).total_seconds()
            for a, b in itertools.pairwise(ordered)
            if b["created_at"] > a["finished_at"]
        ]
    span = (last - first).total_seconds()
    ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
    return [
        ("tasks", f"{len(tasks)}"),
        ("first task created -> last task finished", f"{span:.2f} s of {wall:.2f} s wall"),
        ("task run (claim -> complete), median / sum", f"{ms(statistics.median(runs))} / "
         f"{sum(runs):.2f} s"),
        ("worker busy (sum of runs / workers x span)", f"{sum(runs) / (workers * span):.0%}"),
        ("created -> claimed, median / max", f"{ms(statistics.median(waits))} / "
         f"{ms(max(waits))}"),
        ("range completed -> next range created, median",
         ms(statistics.median(gaps)) if gaps else "n/a (always planned ahead)"),
    ]  # fmt: skip


def profile_tasks(url: str, chunk: int) -> None:
    """One warm cryo_ingest task per dataset in this process, under pyinstrument."""
    from pyinstrument import Profiler

    from trace_operators import cryo_ingest
    from trace_operators.context import TaskContext, TaskScope

    def one(task_id: int, dataset: str) -> dict[str, float]:
        ctx = TaskContext(
            task_id=task_id,
            attempt=1,
            org_id=1,
            dag_name="profile",
            job_name=dataset,
            config={"chain_id": 31337, "dataset": dataset, "rpc_url": url},
            scope=TaskScope(range_start=chunk, range_end=2 * chunk),
        )
        began = time.perf_counter()
        seconds = cryo_ingest.run(ctx).seconds
        return {**seconds, "total": time.perf_counter() - began}

    cryo_ingest.warm_up()
    profiler = Profiler(interval=0.001)
    for index, dataset in enumerate(DATASETS):
        one(10_000 + index, dataset)  # warm: Cryo's first call, connections
        profiler.start()
        phases = one(20_000 + index, dataset)
        profiler.stop()
        print(f"cryo_ingest {dataset} [{chunk}, {2 * chunk}): "
              + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in phases.items()))  # fmt: skip
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--txs-per-block", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="worker processes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import os

    from trace_chain import devchain

    home = platform()
    objects = home / "objects"
    os.environ["TRACE_OBJECT_STORE_URL"] = objects.as_uri()
    rows, profiles, spread = [], {}, {}
    with devchain.Anvil(accounts=args.txs_per_block + 1) as node:
        devchain.generate_traffic(node.url, blocks=args.blocks, txs_per_block=args.txs_per_block)
        os.environ["TRACE_RPC_POOL_BENCH"] = node.url
        blocks = devchain.mine(node.url, 0) + 1
        from trace_web.orgs.services import org_create

        org = org_create(slug="bench")
        for workers in args.workers:
            processes = [
                start_celery("worker", ["worker", "-Q", "platform", "-c", str(workers),
                                        "-l", "WARNING", "-n", "platform@%h"], home),
                start_celery("dispatcher", ["worker", "-Q", "dispatcher", "-c", "1",
                                            "-l", "WARNING", "-n", "dispatcher@%h"], home),
                start_celery("beat", ["beat", "-l", "WARNING",
                                      "--schedule", str(home / "beat-schedule")], home),
            ]  # fmt: skip
            try:
                wait_for_workers(2)
                direct, trace = [], []
                for run in range(args.runs):
                    direct.append(
                        cryo_direct(node.url, blocks, args.chunk, Path(tempfile.mkdtemp()))
                    )
                    shutil.rmtree(objects, ignore_errors=True)  # content-addressed: start empty
                    name = f"bench-w{workers}-r{run}"
                    trace.append(trace_backfill(org, name, blocks, args.chunk, workers))
                    profiles[(workers, run)] = (name, trace[-1])
            finally:
                stop(processes)
            median_run = trace.index(statistics.median_low(trace))
            rows.append((workers, statistics.median(direct), statistics.median(trace), median_run))
            spread[workers] = (direct, trace)
        if args.profile:
            profile_tasks(node.url, args.chunk)
    print(f"range: {blocks} blocks x {len(DATASETS)} datasets, chunk {args.chunk}, "
          f"{args.txs_per_block} txs/block, medians of {args.runs} runs")  # fmt: skip
    print(f"{'workers':>7}{'cryo directly s':>17}{'blocks/s':>10}{'Trace s':>10}{'blocks/s':>10}"
          f"{'ratio':>7}")  # fmt: skip
    for workers, direct_s, trace_s, _ in rows:
        print(f"{workers:>7}{direct_s:>17.2f}{blocks / direct_s:>10.1f}{trace_s:>10.2f}"
              f"{blocks / trace_s:>10.1f}{direct_s / trace_s:>7.2f}")  # fmt: skip
    print("ratio = Trace throughput / Cryo directly (one dataset after another)")
    for workers, (direct, trace) in spread.items():
        print(f"  runs, {workers} worker(s): cryo directly "
              + " ".join(f"{v:.2f}" for v in direct) + " s; Trace "
              + " ".join(f"{v:.2f}" for v in trace) + " s")  # fmt: skip
    if args.profile:
        for workers, _, _, run in rows:
            name, wall = profiles[(workers, run)]
            print(f"\ntimeline of the median Trace run, {workers} worker process(es):")
            for label, value in timeline(name, workers, wall):
                print(f"  {label:<48}{value}")


if __name__ == "__main__":
    main()

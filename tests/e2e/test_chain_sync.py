"""chain_sync on real Celery workers running real Cryo against anvil: a fixed-target backfill
of several streams publishes every range exactly once (to_block - 1 included), a retry after a
killed attempt publishes once, and follow_head keeps up as anvil mines."""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest
from django.utils import timezone

from tests.waiting import wait_for
from trace_chain import devchain
from trace_chain.adapter import ChainAdapter
from trace_chain.rpc import RpcPool
from trace_operators import cryo_ingest
from trace_operators.context import TaskContext, TaskScope
from trace_web.chain_sync.models import ChainSync, RangeStatus, ScheduledRange
from trace_web.chain_sync.selectors import chain_sync_status
from trace_web.chain_sync.services import chain_sync_apply
from trace_web.datasets.models import PartitionVersion
from trace_web.errors import StaleAttempt
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.tasks import task_claim, task_complete

pytestmark = pytest.mark.celery


def sync_yaml(
    *,
    mode="fixed_target",
    to_block=None,
    chunk=8,
    inflight=2,
    extra="",
    datasets=("blocks", "transactions", "logs"),
):
    streams = "\n".join(
        f"  - {{dataset: {d}, chunk_size: {chunk}, max_inflight: {inflight}, rpc_pool: devchain}}"
        for d in datasets
    )
    target = f"to_block: {to_block}\n" if to_block is not None else ""
    head = f"kind: chain_sync\nname: hist\nchain_id: 31337\nmode: {mode}\nfrom_block: 0\n"
    return f"{head}{target}{extra}streams:\n{streams}\n"


@pytest.fixture
def cold(monkeypatch, tmp_path):
    root = tmp_path / "objects"
    monkeypatch.setenv("TRACE_OBJECT_STORE_URL", root.as_uri())
    monkeypatch.setenv("TRACE_STAGING_DIR", str(tmp_path / "staging"))
    return root


def node_counts(url, start, end):
    with RpcPool("check", [url]) as pool:
        rows = ChainAdapter(pool).block_range_with_receipts(start, end)
    return {
        "blocks": len(rows.blocks),
        "transactions": len(rows.transactions),
        "logs": len(rows.logs),
    }


def test_fixed_target_backfill_publishes_every_range_once(
    services, org, chain_with_traffic, cold, monkeypatch
):
    url = chain_with_traffic.url
    monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", url)
    to_block = chain_with_traffic.end_exclusive  # not a multiple of the chunk size
    services.worker("w1", concurrency=2)
    services.dispatcher()
    services.beat()
    chain_sync_apply(org=org, yaml_text=sync_yaml(to_block=to_block))
    sync = ChainSync.objects.get()
    wait_for(
        lambda: all(row["complete"] for row in chain_sync_status(sync=sync)),
        timeout=120,
        what="backfill complete",
    )
    expected = node_counts(url, 0, to_block)
    bounds = [*range(0, to_block, 8), to_block]
    for dataset in ("blocks", "transactions", "logs"):
        done = list(
            ScheduledRange.objects.filter(stream__dataset=dataset)
            .order_by("range_start")
            .values_list("range_start", "range_end", "status")
        )
        assert done == [(a, b, RangeStatus.DONE) for a, b in itertools.pairwise(bounds)]
        partitions = PartitionVersion.objects.filter(dataset_version__dataset__job_name=dataset)
        assert partitions.count() == len(done)
        assert sum(p.row_count for p in partitions) == expected[dataset]
    files = sorted(Path(cold).rglob("*__blocks__*.parquet"))
    numbers = [
        n
        for f in files
        for n in pq.read_table(f, columns=["block_number"])["block_number"].to_pylist()
    ]
    assert sorted(numbers) == list(range(to_block))  # to_block - 1 included, nothing twice


def test_retry_after_a_killed_attempt_publishes_once(
    services, org, chain_with_traffic, cold, monkeypatch, settings
):
    monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", chain_with_traffic.url)
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False  # nobody else may claim attempt 1
    chain_sync_apply(org=org, yaml_text=sync_yaml(to_block=8, datasets=("logs",)))
    from trace_web.chain_sync.services import chain_sync_plan

    chain_sync_plan()
    task = Task.objects.get(trigger="chain_sync")
    first = task_claim(task_id=task.pk, worker_id="victim")
    # Attempt 1 extracts and uploads, then its worker dies before reporting.
    ctx = TaskContext(
        task_id=task.pk,
        attempt=1,
        org_id=org.pk,
        dag_name="chain-sync-hist",
        job_name="logs",
        config=task.job.config,
        scope=TaskScope(range_start=0, range_end=8),
    )
    uploaded = cryo_ingest.run(ctx)
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now())
    services.worker("rescuer")
    services.dispatcher()
    services.beat()
    wait_for(
        lambda: Task.objects.get(pk=task.pk).status == "Completed",
        timeout=60,
        what="retry completed",
    )
    task.refresh_from_db()
    assert task.attempt == 2
    partition = PartitionVersion.objects.get()
    assert partition.location == uploaded.location and partition.attempt == 2
    with pytest.raises(StaleAttempt):
        task_complete(lease=first.lease, outputs=[])


def published_block_numbers(ranges):
    """Block numbers in the committed partitions of these (start, end) ranges, read back from
    each partition's own location in cold storage."""
    numbers = []
    for start, end in ranges:
        partition = PartitionVersion.objects.get(
            dataset_version__dataset__job_name="blocks", range_start=start, range_end=end
        )
        files = sorted(Path(urlsplit(partition.location).path).rglob("*.parquet"))
        assert files, partition.location
        for f in files:
            numbers += pq.read_table(f, columns=["block_number"])["block_number"].to_pylist()
    return numbers


def test_follow_head_keeps_up_as_anvil_mines(services, org, cold, monkeypatch):
    """Order and outcome, not speed: a head mined after the follower has started is reached,
    and everything up to it is published in contiguous chunks, every block exactly once."""
    with devchain.Anvil(block_time=0.25) as node:
        monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", node.url)
        services.worker("w1", concurrency=2)
        services.dispatcher()
        services.beat()
        text = sync_yaml(
            mode="follow_head", chunk=5, inflight=4, extra="tail_lag: 2\n", datasets=("blocks",)
        )
        chain_sync_apply(org=org, yaml_text=text)

        def done_ranges():
            return list(
                ScheduledRange.objects.filter(status=RangeStatus.DONE)
                .order_by("range_start")
                .values_list("range_start", "range_end")
            )

        def done_upto():
            """The end of the DONE ranges if they form one run from block 0, else 0."""
            ranges = done_ranges()
            contiguous = ranges == [(a, a + 5) for a in range(0, 5 * len(ranges), 5)]
            return 5 * len(ranges) if contiguous else 0

        wait_for(lambda: done_upto() >= 20, timeout=120, what="first ranges done")
        # Anvil keeps mining on its own; this head exists only after the follower started.
        later_head = devchain.mine(node.url, 0)
        wait_for(
            lambda: done_upto() > later_head, timeout=120, what=f"block {later_head} published"
        )
        ranges = done_ranges()
        end = ranges[-1][1]
        assert end > later_head
        assert ranges == [(a, a + 5) for a in range(0, end, 5)]  # one run, no range twice
        assert sorted(published_block_numbers(ranges)) == list(range(end))  # each block once


def test_the_next_range_is_planned_on_completion_not_on_the_tick(
    services, org, chain_with_traffic, cold, monkeypatch
):
    """With the planner's tick at 60 s, four ranges run one after another (max_inflight 1):
    only planning at each range's completion can reach the end within the wait below, since
    after the first range (planned when the sync is applied) no tick can have run."""
    monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", chain_with_traffic.url)
    monkeypatch.setenv("TRACE_DISPATCH_TICK_SECONDS", "60")
    chunk = 4
    assert chain_with_traffic.end_exclusive >= 4 * chunk
    services.worker("w1", concurrency=1)
    services.dispatcher()
    services.beat()
    chain_sync_apply(
        org=org,
        yaml_text=sync_yaml(to_block=4 * chunk, chunk=chunk, inflight=1, datasets=("blocks",)),
    )
    sync = ChainSync.objects.get()
    wait_for(
        lambda: all(row["complete"] for row in chain_sync_status(sync=sync)),
        timeout=40,
        what="four ranges done with no planner tick",
    )
    ranges = list(
        ScheduledRange.objects.order_by("range_start").values_list(
            "range_start", "range_end", "status"
        )
    )
    assert ranges == [(a, a + chunk, RangeStatus.DONE) for a in range(0, 4 * chunk, chunk)]
    assert PartitionVersion.objects.count() == 4

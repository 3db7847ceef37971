"""The block follower as a real always_on source on Celery workers: killed mid-stream it is
restarted and resumes without gap or duplicate; a reorg becomes an invalidation with the exact
range, and dependent jobs are scheduled and process it."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa

from tests.waiting import wait_for
from trace_chain import devchain
from trace_chain.adapter import ChainAdapter
from trace_chain.hot_schema import hot_blocks
from trace_chain.rpc import RpcPool
from trace_web.datasets.models import DataInvalidation, InvalidationProcessing
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync

pytestmark = pytest.mark.celery

FOLLOW_DAG = """
name: follow
jobs:
  - name: follower
    activation: source
    source: {kind: always_on}
    operator: block_follower
    outputs: 1
    update_strategy: replace
    config: {chain_id: 31337, rpc_pool: devchain, batch_size: 20, emit_every_blocks: 5}
  - name: consume
    activation: reactive
    operator: noop
    outputs: 1
    update_strategy: replace
    inputs: [{from: {job: follower, output: 0}}]
"""


def hot_numbers_and_hashes(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(hot_blocks.c.block_number, hot_blocks.c.block_hash).order_by(
                hot_blocks.c.block_number
            )
        ).all()
    return [(r[0], r[1]) for r in rows]


def hot_tip(engine):
    rows = hot_numbers_and_hashes(engine)
    return rows[-1][0] if rows else -1


def assert_matches_node(engine, url):
    rows = hot_numbers_and_hashes(engine)
    assert [n for n, _ in rows] == list(range(len(rows)))  # contiguous from 0, no duplicates
    with RpcPool("check", [url]) as pool:
        node = ChainAdapter(pool).blocks(0, len(rows), full_transactions=False)
    assert [h for _, h in rows] == [b["hash"] for b in node]


@pytest.fixture
def chain(monkeypatch, hot_engine):
    with devchain.Anvil(block_time=0.3) as node:
        monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", node.url)  # inherited by the workers
        yield node


def test_killed_follower_is_restarted_and_resumes_without_gaps(services, org, chain, hot_engine):
    dag_sync(org=org, yaml_text=FOLLOW_DAG, activate=True)
    services.dispatcher()
    services.beat()
    services.worker("w1")  # the consumer's batch tasks
    victim = services.stream_worker("victim")
    wait_for(lambda: hot_tip(hot_engine) >= 10, timeout=60, what="follower writing blocks")
    victim.kill()
    stalled_at = hot_tip(hot_engine)
    services.stream_worker("rescuer")
    follower = Task.objects.get(job__name="follower")
    wait_for(
        lambda: Task.objects.filter(pk=follower.pk, attempt__gte=2, status="Running").exists(),
        timeout=60,
        what="follower restarted after missed heartbeats",
    )
    wait_for(lambda: hot_tip(hot_engine) >= stalled_at + 10, timeout=60, what="follower resumed")
    assert_matches_node(hot_engine, chain.url)
    consumed = Task.objects.filter(job__name="consume", trigger="event")

    def announced_without_hole():
        ranges = sorted(set(consumed.values_list("range_start", "range_end")))
        tiled = all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        return ranges and ranges[0][0] == 0 and tiled and ranges[-1][1] >= stalled_at + 5

    # Every block is announced across the kill: the events' ranges tile [0, n) without a hole.
    try:
        wait_for(announced_without_hole, timeout=30, what="events covering every block")
    except AssertionError as exc:
        ranges = sorted(set(consumed.values_list("range_start", "range_end")))
        raise AssertionError(f"announced ranges: {ranges}") from exc


def test_reorg_invalidation_schedules_dependents(services, org, monkeypatch, hot_engine):
    with devchain.Anvil() as node:  # automine: the test decides when blocks appear
        monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", node.url)
        devchain.mine(node.url, 12)
        dag_sync(org=org, yaml_text=FOLLOW_DAG, activate=True)
        services.worker("w1", concurrency=3)
        services.stream_worker()
        services.dispatcher()
        services.beat()
        wait_for(lambda: hot_tip(hot_engine) == 12, timeout=60, what="follower caught up")
        devchain.reorg(node.url, 3)
        invalidation = wait_for(
            lambda: DataInvalidation.objects.first(), timeout=30, what="invalidation recorded"
        )
        assert (invalidation.range_start, invalidation.range_end) == (10, 13)
        assert invalidation.kind == "row_range"
        wait_for(
            lambda: Task.objects.filter(
                job__name="consume", trigger="invalidation", status="Completed"
            ).exists(),
            timeout=30,
            what="dependent reprocessing completed",
        )
        processing = InvalidationProcessing.objects.get(invalidation=invalidation)
        assert processing.job_name == "consume" and processing.processed_at is not None
        devchain.mine(node.url, 2)
        wait_for(lambda: hot_tip(hot_engine) == 14, timeout=30, what="following the new branch")
        assert_matches_node(hot_engine, node.url)

"""Drill: Postgres becomes unreachable for the workers for a few seconds (longer than a lease),
through a TCP fault proxy between every worker and the database server: connections are cut
(reset, new ones refused) or hang (nothing answers). A block follower writes the hot tables,
a consumer reacts to its events and batch tasks run meanwhile. Afterwards everything resumes
without a hand, attempts whose lease ran out are fenced and retried, and the hot tables equal
the node with no gap."""

from __future__ import annotations

import time

import pytest

from tests.drills.checks import (
    assert_drill_outcome,
    events_consumed_upto,
    last_outbox_id,
    source_events_after,
)
from tests.e2e.test_chain_follow import assert_matches_node, hot_tip
from trace_chain import devchain
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery

FOLLOW_DAG = """
name: follow
jobs:
  - name: source
    activation: source
    source: {kind: always_on}
    operator: block_follower
    outputs: 1
    update_strategy: replace
    config: {chain_id: 31337, rpc_pool: devchain, batch_size: 20, emit_every_blocks: 2}
  - name: consume
    activation: reactive
    operator: noop
    outputs: 0
    inputs: [{from: {job: source, output: 0}}]
  - name: batch
    activation: manual
    operator: noop
    outputs: 0
    config: {sleep_seconds: 2}
"""
OUTAGE_SECONDS = 8  # twice the test lease (4 s): leases do run out


@pytest.mark.parametrize("fault", ["cut", "hang"])
def test_work_resumes_after_postgres_is_unreachable(lite_stack, org, hot_engine, fault):
    with devchain.Anvil(block_time=0.5) as node:
        stack = lite_stack.start(db_proxy=True, env={"TRACE_RPC_POOL_DEVCHAIN": node.url})
        proxy = stack.db_proxy
        dag_sync(org=org, yaml_text=FOLLOW_DAG, activate=True)
        stack.wait_for(lambda: hot_tip(hot_engine) >= 6, timeout=90, what="follower writing")
        stack.wait_for(
            lambda: Task.objects.filter(job__name="consume", status="Completed").exists(),
            timeout=60,
            what="events consumed",
        )
        batch = [job_run_manual(org=org, dag_name="follow", job_name="batch") for _ in range(4)]
        stack.wait_for(
            lambda: Task.objects.filter(job__name="batch", status="Running").exists(),
            timeout=60,
            what="batch work running",
        )
        getattr(proxy, fault)()
        started = time.monotonic()
        # Created while the workers cannot reach the database (this process still can).
        batch += [job_run_manual(org=org, dag_name="follow", job_name="batch") for _ in range(2)]
        stack.hold(OUTAGE_SECONDS - (time.monotonic() - started))
        proxy.restore()
        tip_at_restore = hot_tip(hot_engine)

        stack.wait_for(
            lambda: hot_tip(hot_engine) >= tip_at_restore + 10,
            timeout=120,
            what="the follower writing again",
        )
        ids = [t.pk for t in batch]
        stack.wait_for(
            lambda: Task.objects.filter(pk__in=ids, status="Completed").count() == len(ids),
            timeout=120,
            what="every batch task completed",
        )
        upto = last_outbox_id()
        stack.wait_for(lambda: source_events_after(upto) >= 2, timeout=60, what="events flowing")
        stack.wait_for(lambda: events_consumed_upto(upto), timeout=120, what="every event consumed")
        assert_matches_node(hot_engine, node.url)
        assert_drill_outcome()

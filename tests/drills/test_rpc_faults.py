"""Drill: the follower's RPC node answers HTTP 500 for 15 s, then stalls (accepts requests,
answers nothing) for 15 s, under Lite's layout. Neither burns an attempt: the follower waits
both out inside its attempt, keeping its lease, then catches up; the hot tables equal the
node, its announcements tile the chain without a hole, and every event is consumed."""

from __future__ import annotations

import itertools
import threading

import pytest

from tests.chain.servers import RpcProxy
from tests.drills.checks import assert_drill_outcome, events_consumed_upto, last_outbox_id
from tests.drills.test_postgres_outage import FOLLOW_DAG
from tests.e2e.test_chain_follow import assert_matches_node, hot_tip
from trace_chain import devchain
from trace_chain.adapter import ChainAdapter
from trace_chain.rpc import RpcPool
from trace_web.orchestration.models import Task, TaskTransition
from trace_web.orchestration.services.dags import dag_sync

pytestmark = pytest.mark.celery

FAULT_SECONDS = 15


class FaultyNode:
    """What the proxy in front of anvil does: forward, answer 500, or hold every request."""

    def __init__(self) -> None:
        self.mode = "pass"
        self.faulted = 0  # requests answered with a fault
        self.resume = threading.Event()

    def hook(self, body):
        if self.mode == "pass":
            return None
        self.faulted += 1
        if self.mode == "error":
            return 500, b"upstream exploded"
        self.resume.wait(FAULT_SECONDS + 5)  # stalled: the client times out first
        return None


def node_head(url: str) -> int:
    with RpcPool("check", [url]) as pool:
        return ChainAdapter(pool).head_number()


def test_rpc_errors_and_a_stalled_node_use_up_no_attempt(lite_stack, org, hot_engine):
    faulty = FaultyNode()
    with devchain.Anvil(block_time=0.5) as node, RpcProxy(node.url, hook=faulty.hook) as proxy:
        stack = lite_stack.start(
            env={
                "TRACE_RPC_POOL_DEVCHAIN": proxy.url,
                "TRACE_RPC_POOL_DEVCHAIN_TIMEOUT": "2",  # a stall shows up as timeouts
            }
        )
        dag_sync(org=org, yaml_text=FOLLOW_DAG, activate=True)
        stack.wait_for(lambda: hot_tip(hot_engine) >= 6, timeout=90, what="follower writing")
        follower = Task.objects.get(job__name="source", status="Running")
        for mode in ("error", "stall"):
            faulty.mode, faulty.faulted = mode, 0
            # The fault lasts long enough for the pool to give up several times over.
            stack.wait_for(lambda: faulty.faulted >= 8, timeout=60, what=f"{mode} faults served")
            stack.hold(FAULT_SECONDS)
            faulty.mode = "pass"
            faulty.resume.set()
            faulty.resume = threading.Event()
            head = node_head(node.url)
            stack.wait_for(
                lambda head=head: hot_tip(hot_engine) >= head + 4,
                timeout=90,
                what=f"follower caught up after the {mode} fault",
            )
        upto = last_outbox_id()
        stack.wait_for(lambda: events_consumed_upto(upto), timeout=90, what="every event consumed")

        follower.refresh_from_db()
        assert (follower.status, follower.attempt) == ("Running", 1)
        assert list(
            TaskTransition.objects.filter(task__job__name="source").values_list(
                "to_status", flat=True
            )
        ) == ["Queued", "Running"]
        assert Task.objects.filter(job__name="source").count() == 1
        assert_matches_node(hot_engine, node.url)
        ranges = sorted(
            set(
                Task.objects.filter(job__name="consume", trigger="event").values_list(
                    "range_start", "range_end"
                )
            )
        )
        assert ranges[0][0] == 0
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # no hole
        assert_drill_outcome()

"""Drill: stopping Lite while a block follower runs. The supervisor stops workers and beat
before the chain, so the follower is stopped by its worker's shutdown while its node still
answers: its attempt is handed back (Canceled, not Failed), and the next start resumes from
the hot tip with a new task, without a gap."""

from __future__ import annotations

import pytest

from tests.drills.checks import assert_drill_outcome
from tests.drills.test_postgres_outage import FOLLOW_DAG
from tests.e2e.test_chain_follow import assert_matches_node, hot_tip
from tests.faults import free_port
from trace_chain import devchain
from trace_tasks.runner import RELEASE_REASON
from trace_web.lite.supervisor import Component
from trace_web.orchestration.models import Task, TaskTransition
from trace_web.orchestration.services.dags import dag_sync

pytestmark = pytest.mark.celery


def test_stopping_lite_hands_the_follower_back_and_the_next_start_resumes(
    lite_stack, org, hot_engine, tmp_path
):
    port = free_port()
    # As Lite runs it: its state saved on a clean stop and loaded at the next start.
    node = devchain.Anvil(block_time=0.5, extra_args=["--state", str(tmp_path / "anvil.json")])
    anvil = Component("anvil", node.argv(port), restart=False, stop_order=1)
    url = f"http://127.0.0.1:{port}"
    stack = lite_stack.start(env={"TRACE_RPC_POOL_DEVCHAIN": url}, extra=(anvil,))
    dag_sync(org=org, yaml_text=FOLLOW_DAG, activate=True)
    stack.wait_for(lambda: hot_tip(hot_engine) >= 6, timeout=90, what="follower writing")
    first = Task.objects.get(job__name="source", status="Running")

    stack.supervisor.stop_all()  # what Ctrl-C or `trace lite down` does
    for component in stack.supervisor.components:
        if component.name != "anvil":  # workers and beat stopped on their own, none killed
            assert component.proc.returncode == 0, (
                component.name,
                stack.notes[-5:],
                stack.log(component.name)[-3000:],
            )
    first.refresh_from_db()
    assert (first.status, first.attempt) == ("Canceled", 1)
    assert [t.to_status for t in first.transitions.order_by("id")] == [
        "Queued",
        "Running",
        "Canceled",
    ]
    assert first.transitions.last().reason == RELEASE_REASON
    # The chain was still there while the follower stopped: no call to it ever failed.
    assert "failed on" not in stack.log("worker-stream")
    stopped_at = hot_tip(hot_engine)

    stack.supervisor.start_all()  # the next `trace lite up`
    stack.wait_for(
        lambda: hot_tip(hot_engine) >= stopped_at + 6, timeout=90, what="the successor writing"
    )
    successor = Task.objects.get(job__name="source", status="Running")
    assert successor.pk != first.pk and successor.attempt == 1
    assert not TaskTransition.objects.filter(task__job__name="source", to_status="Failed").exists()
    assert_matches_node(hot_engine, url)
    assert_drill_outcome()

"""Always-running sources have capacity of their own: under Lite's worker layout (two platform
processes, a stream thread pool), two always_on sources run on the stream pool while batch work
runs on the platform pool, and no source's wake-up stays unacknowledged while it runs."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from tests.processes import broker_key
from trace_tasks.publisher import send_wake
from trace_web.orchestration.models import Task, TaskTransition
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery

TWO_SOURCES_DAG = """
name: sources
jobs:
  - name: follow-a
    activation: source
    source: {kind: always_on}
    operator: noop
    outputs: 0
    config: {sleep_seconds: 3600}
  - name: follow-b
    activation: source
    source: {kind: always_on}
    operator: noop
    outputs: 0
    config: {sleep_seconds: 3600}
  - name: batch
    activation: manual
    operator: noop
    outputs: 0
    config: {sleep_seconds: 1}
"""


def sources():
    return Task.objects.filter(job__name__in=["follow-a", "follow-b"])


def both_sources_running():
    running = list(sources().filter(status="Running"))
    return running if len(running) == 2 else None


def unacked_task_ids(broker_url: str) -> set[int]:
    """Task ids of the wake-ups the broker holds as delivered but not acknowledged (kombu's
    Redis transport keeps them in the `unacked` hash until the ack)."""
    client = redis.Redis.from_url(broker_url)
    ids = set()
    for raw in client.hvals(broker_key("unacked")):
        message = json.loads(raw)[0]
        args = json.loads(base64.b64decode(message["body"]))[0]
        ids.update(int(a) for a in args)
    return ids


def test_batch_work_runs_while_two_sources_hold_their_own_slots(lite_stack, org):
    stack = lite_stack.start()
    dag_sync(org=org, yaml_text=TWO_SOURCES_DAG, activate=True)
    running = stack.wait_for(both_sources_running, timeout=60, what="both sources running")
    assert all(t.worker_id.startswith("stream@") for t in running)
    # The platform pool has two processes: fill both with batch work.
    batch = [job_run_manual(org=org, dag_name="sources", job_name="batch") for _ in range(2)]
    stack.wait_for(
        lambda: Task.objects.filter(pk__in=[t.pk for t in batch], status="Completed").count() == 2,
        timeout=60,
        what="both batch tasks completed",
    )
    for task in Task.objects.filter(pk__in=[t.pk for t in batch]):
        assert task.worker_id.startswith("platform@")
        assert TaskTransition.objects.filter(task=task, to_status="Running").count() == 1
    # The sources were never interrupted: still Running, attempt 1, never left Running.
    for source in sources():
        assert (source.status, source.attempt) == ("Running", 1)
        assert [t.to_status for t in source.transitions.order_by("id")] == ["Queued", "Running"]


def test_a_running_sources_wake_up_is_acknowledged_and_duplicates_start_nothing(lite_stack, org):
    stack = lite_stack.start()
    dag_sync(org=org, yaml_text=TWO_SOURCES_DAG, activate=True)
    running = stack.wait_for(both_sources_running, timeout=60, what="both sources running")
    ids = {t.pk for t in running}
    # Acknowledged on receipt: while the sources run, the broker holds none of their
    # wake-ups as unacknowledged (a late ack would hold each for the source's whole life).
    stack.wait_for(
        lambda: not (unacked_task_ids(lite_stack.broker.url()) & ids),
        timeout=30,
        what="no unacknowledged wake-up of a running source",
    )
    for task_id in ids:
        for _ in range(10):
            send_wake(task_id=task_id, queue="stream")
    # Every duplicate is received, acknowledged and finds nothing to claim ...
    stack.wait_for(
        lambda: stack.log("worker-stream").count("'not_claimed'") == 20,
        timeout=30,
        what="20 duplicate wake-ups handled",
    )
    client = redis.Redis.from_url(lite_stack.broker.url())
    # The keys read here are the broker's own (its bindings live under the same prefix), so an
    # empty queue and no unacked wake-up are facts, not a look at the wrong keys.
    assert client.keys(broker_key("_kombu.binding*"))
    assert client.llen(broker_key("stream")) == 0
    assert not (unacked_task_ids(lite_stack.broker.url()) & ids)
    # ... so each source still has one execution of attempt 1.
    for source in sources():
        assert (source.status, source.attempt) == ("Running", 1)
        assert TaskTransition.objects.filter(task=source, to_status="Running").count() == 1

"""Drill: the broker (a private Redis, no persistence) is killed for 20 s and for 60 s under
Lite's worker layout with an always_on source streaming events to a consumer and batch work
queued during the outage. Work resumes by itself: workers reconnect or, if they die (a known
class of kombu Redis-transport reconnect bugs), Lite's supervisor restarts them; the outbox
and the re-wake loop re-send what the broker lost. Callers creating tasks meanwhile are not
held up by the broker: after one failed publish the breaker skips the rest."""

from __future__ import annotations

import time

import pytest

from tests.drills.checks import (
    assert_drill_outcome,
    drill_dag,
    events_consumed_upto,
    last_outbox_id,
    source_events_after,
)
from trace_tasks.liveness import worker_alive
from trace_web.lite.supervisor import worker_node
from trace_web.orchestration.models import Outbox, OutboxKind, Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery

WORKERS = ("platform", "stream", "dispatcher")


def consuming(stack, queue: str, max_age: float) -> bool:
    return worker_alive(node=worker_node(queue), max_age=max_age, directory=stack.alive_dir)[0]


@pytest.mark.parametrize("outage_seconds", [20, 60])
def test_work_resumes_by_itself_after_the_broker_is_down(lite_stack, org, outage_seconds):
    stack = lite_stack.start()
    dag_sync(org=org, yaml_text=drill_dag(), activate=True)
    stack.wait_for(
        lambda: Task.objects.filter(job__name="consume", status="Completed").count() >= 3,
        timeout=90,
        what="the source's events consumed",
    )
    source = Task.objects.get(job__name="source", status="Running")
    before = [job_run_manual(org=org, dag_name="drill", job_name="batch") for _ in range(3)]

    lite_stack.broker.stop()
    outage_started = time.monotonic()
    # The liveness check an orchestrator runs fails: the consumers stopped consuming.
    stack.wait_for(
        lambda: not consuming(stack, "platform", max_age=3),
        timeout=outage_seconds,
        what="the platform worker's liveness check failing during the outage",
    )
    during = [job_run_manual(org=org, dag_name="drill", job_name="batch") for _ in range(10)]
    # Bounded fast path: the first caller's publish failed; the breaker skipped the other
    # nine (not tried at all), so nobody waited on the broker. Their rows wait, Pending.
    tries = [
        Outbox.objects.get(kind=OutboxKind.WAKE_TASK, payload__task_id=task.pk).tries
        for task in during
    ]
    assert tries == [1] + [0] * 9
    stack.hold(outage_seconds - (time.monotonic() - outage_started))
    lite_stack.broker.start()

    stack.wait_for(
        lambda: all(consuming(stack, q, max_age=10) for q in WORKERS),
        timeout=120,
        what="every worker consuming again",
    )
    upto = last_outbox_id()
    batch_ids = [t.pk for t in before + during]
    stack.wait_for(
        lambda: Task.objects.filter(pk__in=batch_ids, status="Completed").count() == 13,
        timeout=120,
        what="all 13 batch tasks completed",
    )
    stack.wait_for(lambda: events_consumed_upto(upto), timeout=120, what="every event consumed")
    stack.wait_for(lambda: source_events_after(upto) >= 3, timeout=60, what="events flowing")
    # The source rode the outage out in place: same task, same attempt, still running.
    source.refresh_from_db()
    assert (source.status, source.attempt) == ("Running", 1)
    assert_drill_outcome()

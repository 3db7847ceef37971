"""Drill: wake-ups repeated many times, before, while and after their tasks run. A wake-up
only says "claim task N"; the claim is a conditional UPDATE, so every attempt runs once."""

from __future__ import annotations

import pytest
import redis

from tests.drills.checks import assert_drill_outcome
from tests.processes import broker_key
from trace_tasks.publisher import send_wake
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery

BATCH_DAG = """
name: dupes
jobs:
  - name: batch
    activation: manual
    operator: noop
    outputs: 0
    config: {sleep_seconds: 1}
"""


def test_duplicate_wakeups_give_one_execution_per_attempt(lite_stack, org):
    stack = lite_stack.start()
    dag_sync(org=org, yaml_text=BATCH_DAG, activate=True)
    tasks = [job_run_manual(org=org, dag_name="dupes", job_name="batch") for _ in range(5)]
    for task in tasks:
        for _ in range(30):
            send_wake(task_id=task.pk, queue="platform")
    ids = [t.pk for t in tasks]
    stack.wait_for(
        lambda: Task.objects.filter(pk__in=ids, status="Completed").count() == 5,
        timeout=90,
        what="the five tasks completed",
    )
    for task in tasks:  # late duplicates, after the work is done
        for _ in range(10):
            send_wake(task_id=task.pk, queue="platform")
    broker = redis.Redis.from_url(lite_stack.broker.url())
    # Every message is consumed: 5 claimed and ran, every other one found nothing to claim.
    stack.wait_for(
        lambda: (
            stack.log("worker-platform").count("'not_claimed'") >= 5 * 40
            and broker.llen(broker_key("platform")) == 0
        ),
        timeout=90,
        what="all 200 duplicate wake-ups consumed",
    )
    assert stack.log("worker-platform").count("'completed'") == 5
    for task in Task.objects.filter(pk__in=ids):
        assert (task.status, task.attempt) == ("Completed", 1)
    assert_drill_outcome()

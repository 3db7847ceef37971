"""Drill: beat and the dispatcher worker are killed while outbox rows are pending, and come
back only through Lite's supervisor. The outbox is in Postgres, so nothing is lost: every
task queued before, during and after the restart runs, exactly once."""

from __future__ import annotations

import pytest

from tests.drills.checks import assert_drill_outcome, drill_dag
from trace_web.orchestration.models import Outbox, OutboxStatus, Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery


def test_beat_and_dispatcher_killed_with_outbox_rows_pending_lose_nothing(
    lite_stack, org, settings
):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False  # here only the dispatcher publishes
    stack = lite_stack.start()
    dag_sync(org=org, yaml_text=drill_dag(batch_seconds=0.2), activate=True)
    first = [job_run_manual(org=org, dag_name="drill", job_name="batch") for _ in range(20)]
    stack.wait_for(
        lambda: Task.objects.filter(pk__in=[t.pk for t in first], status="Completed").exists(),
        timeout=60,
        what="the dispatcher draining",
    )
    beat_pid = stack.kill("beat")
    dispatcher_pid = stack.kill("worker-dispatcher")
    # Rows written while neither runs: pending until the supervisor brings them back.
    second = [job_run_manual(org=org, dag_name="drill", job_name="batch") for _ in range(20)]
    ids = [t.pk for t in first + second]
    stack.wait_for(
        lambda: Task.objects.filter(pk__in=ids, status="Completed").count() == 40,
        timeout=120,
        what="all 40 batch tasks completed",
    )
    for name, pid in (("beat", beat_pid), ("worker-dispatcher", dispatcher_pid)):
        component = stack.component(name)
        assert component.restarts >= 1 and component.proc.pid != pid
    for task in Task.objects.filter(pk__in=ids):
        assert task.attempt == 1
    stack.wait_for(
        lambda: (
            not Outbox.objects.exclude(status=OutboxStatus.DONE)
            .filter(payload__task_id__in=ids)
            .exists()
        ),
        timeout=60,
        what="their wake-ups all published",
    )
    assert_drill_outcome()

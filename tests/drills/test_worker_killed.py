"""Drill: a worker is killed mid-task (SIGKILL of its whole process group, like a lost
machine) under Lite's layout, and nobody starts a replacement by hand: Lite's supervisor
restarts the worker, the lease reaper fails the dead attempt, the retry (or, for the source,
the retry of the same task) runs on the restarted worker, exactly once per attempt."""

from __future__ import annotations

import pytest

from tests.drills.checks import (
    assert_drill_outcome,
    drill_dag,
    events_consumed_upto,
    last_outbox_id,
    source_events_after,
)
from trace_web.orchestration.models import Task, TaskTransition
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery


def ready_again(stack, name: str, old_pid: int) -> bool:
    """The supervisor started a new process and that process reported ready."""
    proc = stack.component(name).proc
    after_restart = stack.log(name).rsplit("supervisor: restarting", 1)
    return (
        proc is not None and proc.pid != old_pid and len(after_restart) == 2
    ) and "ready." in after_restart[1]


def test_killed_batch_worker_is_restarted_and_its_task_retried(lite_stack, org):
    stack = lite_stack.start()
    dag_sync(org=org, yaml_text=drill_dag(batch_seconds=8), activate=True)
    task = job_run_manual(org=org, dag_name="drill", job_name="batch")
    stack.wait_for(
        lambda: Task.objects.filter(pk=task.pk, status="Running").exists(),
        timeout=60,
        what="batch task running",
    )
    old_pid = stack.kill("worker-platform")
    stack.wait_for(lambda: ready_again(stack, "worker-platform", old_pid), what="restarted")
    stack.wait_for(
        lambda: Task.objects.filter(pk=task.pk, status="Completed").exists(),
        timeout=90,
        what="the task completed on the restarted worker",
    )
    task.refresh_from_db()
    assert task.attempt == 2 and task.worker_id.startswith("platform@")
    failure = TaskTransition.objects.get(task=task, attempt=1, to_status="Failed")
    assert "stopped heartbeating" in failure.reason
    assert_drill_outcome()


def test_killed_stream_worker_is_restarted_and_the_source_resumes(lite_stack, org):
    stack = lite_stack.start()
    dag_sync(org=org, yaml_text=drill_dag(), activate=True)
    stack.wait_for(
        lambda: Task.objects.filter(job__name="consume", status="Completed").count() >= 3,
        timeout=90,
        what="the source's events consumed",
    )
    source = Task.objects.get(job__name="source", status="Running")
    old_pid = stack.kill("worker-stream")
    stack.wait_for(lambda: ready_again(stack, "worker-stream", old_pid), what="restarted")
    stack.wait_for(
        lambda: Task.objects.filter(pk=source.pk, attempt=2, status="Running").exists(),
        timeout=60,
        what="the source's attempt 2 running",
    )
    upto = last_outbox_id()
    stack.wait_for(lambda: source_events_after(upto) >= 3, timeout=60, what="events flowing")
    stack.wait_for(lambda: events_consumed_upto(upto), timeout=60, what="every event consumed")
    assert TaskTransition.objects.get(task=source, attempt=1, to_status="Failed").reason.startswith(
        "attempt 1 failed"
    )
    assert Task.objects.filter(job__name="source").count() == 1  # retried in place
    assert_drill_outcome()

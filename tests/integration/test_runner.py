"""The worker wrapper called in-process (what a Celery worker does for each wake-up), and
PerUpdate routing: cursor-driven consumers coalesce events while queued and never lose any."""

from __future__ import annotations

import pytest

from tests.dags import PER_UPDATE, noop_dag
from trace_operators.registry import OPERATORS
from trace_tasks.runner import task_run
from trace_web.datasets.models import DatasetCursor
from trace_web.orchestration.models import Task, TaskInput
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_drain
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import task_claim, task_complete, task_events


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def test_refused_completion_fails_the_task_with_the_real_error(org, monkeypatch):
    monkeypatch.setitem(OPERATORS, "bad_outputs", "tests.operators.bad_outputs")
    yaml_text = noop_dag().replace(
        "operator: noop\n    config", "operator: bad_outputs\n    config", 1
    )
    dag_sync(org=org, yaml_text=yaml_text, activate=True)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    outcome = task_run(task_id=task.pk, worker_id="w")
    task.refresh_from_db()
    assert outcome.status == "failed"
    assert task.status == "Failed" and task.next_retry_at is None
    assert "completion refused" in task.error and "out of range" in task.error


def test_duplicate_run_of_a_finished_task_does_nothing(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    assert task_run(task_id=task.pk).status == "completed"
    assert task_run(task_id=task.pk).status == "not_claimed"
    assert task.transitions.filter(to_status="Running").count() == 1


def emit(lease, cursor):
    task_events(lease=lease, events=[{"output": 0, "cursor": cursor}])
    outbox_drain()


def test_per_update_consumer_coalesces_while_queued_and_never_skips(org):
    dag_sync(org=org, yaml_text=PER_UPDATE, activate=True)
    producer = task_claim(
        task_id=job_run_manual(org=org, dag_name="stream", job_name="produce").pk, worker_id="p"
    )
    emit(producer.lease, 10)
    emit(producer.lease, 20)
    consumers = Task.objects.filter(job__name="consume")
    assert consumers.count() == 1  # the second event widened the queued task
    first = consumers.get()
    assert TaskInput.objects.get(task=first).cursor_to == 20 and first.cursor["upto"] == 20
    claimed = task_claim(task_id=first.pk, worker_id="c")
    emit(producer.lease, 30)  # the first consumer is running: a new task, not a fold
    assert consumers.count() == 2
    task_complete(lease=claimed.lease)
    cursor = DatasetCursor.objects.get(consumer_job="consume")
    assert cursor.position == 20
    second = consumers.exclude(pk=first.pk).get()
    assert TaskInput.objects.get(task=second).cursor_to == 30
    task_complete(lease=task_claim(task_id=second.pk, worker_id="c").lease)
    cursor.refresh_from_db()
    assert cursor.position == 30

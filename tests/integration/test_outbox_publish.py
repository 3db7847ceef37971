"""Publishing wake-ups is bounded: with the broker down (refusing) or hung (accepting, never
answering), a task creation's after-commit publish costs one short try, then the breaker
skips publishing; rows stay Pending with no try counted, and the drain loop publishes them
once the broker is back."""

from __future__ import annotations

import socket

import pytest
import redis

from tests.dags import noop_dag
from tests.faults import PrivateRedis, free_port
from tests.processes import broker_key
from trace_tasks import publisher
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_drain
from trace_web.orchestration.services.sources import job_run_manual


@pytest.fixture(autouse=True)
def _fresh_breaker():
    publisher._breaker.reset()
    yield
    publisher._breaker.reset()


def wake_rows(tasks):
    return [
        Outbox.objects.get(kind=OutboxKind.WAKE_TASK, payload__task_id=task.pk) for task in tasks
    ]


def create(org, count, django_capture_on_commit_callbacks):
    tasks = []
    for _ in range(count):
        with django_capture_on_commit_callbacks(execute=True):  # the after-commit fast path
            tasks.append(job_run_manual(org=org, dag_name="chain", job_name="extract"))
    return tasks


def test_a_refusing_broker_is_tried_once_then_skipped(
    org, settings, django_capture_on_commit_callbacks
):
    settings.TRACE_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    rows = wake_rows(create(org, 5, django_capture_on_commit_callbacks))
    assert [row.tries for row in rows] == [1, 0, 0, 0, 0]
    assert "refused" in rows[0].last_error.lower()
    assert all(row.status == OutboxStatus.PENDING for row in rows)


def test_a_hung_broker_costs_one_bounded_publish(org, settings, django_capture_on_commit_callbacks):
    settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS = 0.5
    with socket.create_server(("127.0.0.1", 0)) as hung:  # accepts, never answers
        settings.TRACE_BROKER_URL = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        dag_sync(org=org, yaml_text=noop_dag(), activate=True)
        # Without the timeout this would wait on the silent socket for ever.
        rows = wake_rows(create(org, 3, django_capture_on_commit_callbacks))
    assert [row.tries for row in rows] == [1, 0, 0]
    assert "timeout" in rows[0].last_error.lower()


def test_the_drain_loop_waits_out_the_breaker_then_publishes_everything(
    org, settings, tmp_path, django_capture_on_commit_callbacks
):
    broker = PrivateRedis(tmp_path / "redis")
    settings.TRACE_BROKER_URL = broker.url()  # not started yet: down
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    tasks = create(org, 4, django_capture_on_commit_callbacks)
    assert outbox_drain() == 0  # breaker open: wake-ups not even tried
    assert [row.tries for row in wake_rows(tasks)] == [1, 0, 0, 0]
    broker.start()
    try:
        publisher._breaker.reset()  # its pause is over
        Outbox.objects.update(available_at=Outbox.objects.order_by("id").first().created_at)
        assert outbox_drain() == 4
        assert all(row.status == OutboxStatus.DONE for row in wake_rows(tasks))
        assert redis.Redis.from_url(broker.url()).llen(broker_key("platform")) == 4
    finally:
        broker.stop()

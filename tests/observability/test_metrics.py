"""GET /metrics against real Postgres (state and data DB): each backlog gauge of TRACE.md
section 8 reads what the databases hold at the scrape, in the Prometheus text format; the
bearer token guards it when set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from tests.alerts.factories import DeliveryFactory
from tests.dags import noop_dag
from tests.e2e.test_sqs_broker import sqs_broker  # noqa: F401 - a fixture
from tests.integration.test_chain_sync import fixed
from trace_chain import hot_store
from trace_web.alerts.models import DeliveryStatus
from trace_web.chain_sync.services import chain_sync_apply
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus, Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def scrape(client: Client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_task_gauges_count_per_queue_and_age_the_oldest_due_and_the_lease_lag(org, hot_engine):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    waiting, overdue, later = (
        job_run_manual(org=org, dag_name="chain", job_name="extract") for _ in range(3)
    )
    now = timezone.now()
    Task.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(seconds=90))
    Task.objects.filter(pk=overdue.pk).update(
        status="Running", lease_expires_at=now - timedelta(seconds=40)
    )
    # A retry not yet due counts in the depth, not in the age.
    Task.objects.filter(pk=later.pk).update(
        created_at=now - timedelta(hours=1), next_retry_at=now + timedelta(minutes=5)
    )
    got = scrape(Client())
    platform = (("queue", "platform"),)
    assert got[("trace_tasks", (("queue", "platform"), ("status", "Queued")))] == 2
    assert got[("trace_tasks", (("queue", "platform"), ("status", "Running")))] == 1
    assert got[("trace_tasks", (("queue", "udf"), ("status", "Queued")))] == 0
    assert 90 <= got[("trace_queue_oldest_seconds", platform)] < 90 + 60
    assert 40 <= got[("trace_lease_lag_seconds", platform)] < 40 + 60
    assert got[("trace_lease_lag_seconds", (("queue", "udf"),))] == 0


def test_outbox_sink_and_delivery_backlogs(db, hot_engine):
    now = timezone.now()
    due = Outbox.objects.create(kind=OutboxKind.ALERT_SINK, payload={}, available_at=now)
    Outbox.objects.filter(pk=due.pk).update(created_at=now - timedelta(seconds=30))
    Outbox.objects.create(
        kind=OutboxKind.WAKE_TASK, payload={}, available_at=now, status=OutboxStatus.FAILED
    )
    Outbox.objects.create(  # backing off: pending, but not yet due, so no age
        kind=OutboxKind.WAKE_TASK, payload={}, available_at=now + timedelta(minutes=1)
    )
    DeliveryFactory(status=DeliveryStatus.PENDING, next_attempt_at=now - timedelta(seconds=20))
    DeliveryFactory(status=DeliveryStatus.PENDING, next_attempt_at=now + timedelta(minutes=5))
    DeliveryFactory(status=DeliveryStatus.FAILED)
    DeliveryFactory(status=DeliveryStatus.DELIVERED)
    got = scrape(Client())
    assert got[("trace_outbox_rows", (("kind", "alert_sink"), ("status", "Pending")))] == 1
    assert got[("trace_outbox_rows", (("kind", "wake_task"), ("status", "Failed")))] == 1
    assert got[("trace_outbox_rows", (("kind", "wake_task"), ("status", "Pending")))] == 1
    assert got[("trace_outbox_oldest_pending_seconds", (("kind", "wake_task"),))] == 0
    assert 30 <= got[("trace_alert_sink_lag_seconds", ())] < 90
    assert got[("trace_deliveries", (("status", "pending"),))] == 2
    assert got[("trace_deliveries", (("status", "failed"),))] == 1
    assert got[("trace_deliveries", (("status", "sending"),))] == 0
    assert 20 <= got[("trace_delivery_backlog_oldest_seconds", ())] < 80
    assert got[("trace_alert_dead_letters_pending", ())] == 0


def test_chain_gauges_from_the_followers_status_and_chain_sync_backlog(org, hot_engine):
    hot_store.hot_status_update(hot_engine, chain_id=5, head_block=120, tip_block=117)
    chain_sync_apply(org=org, yaml_text=fixed(to_block=25, datasets=("blocks",)))
    got = scrape(Client())
    assert got[("trace_metrics_data_db_up", ())] == 1
    chain = (("chain_id", "5"),)
    assert got[("trace_chain_head_block", chain)] == 120
    assert got[("trace_chain_hot_tip_block", chain)] == 117
    assert got[("trace_chain_tip_lag_blocks", chain)] == 3
    assert 0 <= got[("trace_chain_status_age_seconds", chain)] < 60
    stream = (("chain_sync", "history"), ("dataset", "blocks"), ("org", org.slug))
    assert got[("trace_chain_sync_backlog_blocks", stream)] == 25  # cursor 0, target 25
    assert got[("trace_chain_sync_failed_ranges", stream)] == 0


def test_without_the_data_db_the_state_gauges_still_answer(db, monkeypatch):
    import sqlalchemy as sa

    from trace_chain.db import data_db_url, sqlalchemy_url

    gone = sqlalchemy_url(data_db_url()).set(database="trace_no_such_database")
    monkeypatch.setattr("trace_chain.db.data_engine", lambda: sa.create_engine(gone))
    got = scrape(Client())
    assert got[("trace_metrics_data_db_up", ())] == 0
    assert not any(name.startswith("trace_chain_head") for name, _ in got)
    assert got[("trace_alert_dead_letters_pending", ())] == 0


def test_the_token_guards_the_endpoint_when_set(db, hot_engine, settings):
    settings.TRACE_METRICS_TOKEN = "scrape-me"
    client = Client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert ("trace_alert_dead_letters_pending", ()) in scrape(
        client, HTTP_AUTHORIZATION="Bearer scrape-me"
    )
    assert client.post("/metrics").status_code == 405


def test_worker_gauges_count_running_and_recently_finished_tasks_per_celery_node(org, hot_engine):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    tasks = [job_run_manual(org=org, dag_name="chain", job_name="extract") for _ in range(5)]
    now = timezone.now()
    a, b = "platform@host-a", "platform@host-b"
    # Two processes of one node count as one worker; an old finish is outside the window.
    for task, status, worker, started, finished in (
        (tasks[0], "Running", f"{a}:101:7", now, None),
        (tasks[1], "Running", f"{a}:102:7", now, None),
        (tasks[2], "Completed", f"{b}:103:7", now - timedelta(seconds=12), now),
        (tasks[3], "Failed", f"{b}:103:7", now - timedelta(seconds=3), now),
        (
            tasks[4],
            "Completed",
            f"{b}:104:7",
            now - timedelta(hours=2, seconds=50),
            now - timedelta(hours=2),
        ),
    ):
        Task.objects.filter(pk=task.pk).update(
            status=status, worker_id=worker, started_at=started, finished_at=finished
        )
    got = scrape(Client())
    assert got[("trace_worker_running_tasks", (("worker", a),))] == 2
    assert ("trace_worker_running_tasks", (("worker", b),)) not in got
    assert got[("trace_worker_finished_tasks", (("status", "Completed"), ("worker", b)))] == 1
    assert got[("trace_worker_finished_tasks", (("status", "Failed"), ("worker", b)))] == 1
    assert got[("trace_worker_task_seconds", (("worker", b),))] == pytest.approx(15)


def test_broker_queue_depth_counts_wakeups_not_yet_taken(db, hot_engine, settings):
    from tests.plugin_services import delete_broker_keys
    from trace_tasks.publisher import send_wake

    delete_broker_keys(settings.TRACE_BROKER_URL, settings.TRACE_BROKER_KEY_PREFIX)
    before = scrape(Client())
    assert before[("trace_metrics_broker_up", ())] == 1
    assert before[("trace_broker_queue_messages", (("queue", "platform"),))] == 0
    for task_id in (1, 2, 3):
        send_wake(task_id=task_id, queue="platform")
    send_wake(task_id=4, queue="udf")
    got = scrape(Client())
    assert got[("trace_broker_queue_messages", (("queue", "platform"),))] == 3
    assert got[("trace_broker_queue_messages", (("queue", "udf"),))] == 1
    assert got[("trace_broker_queue_messages", (("queue", "stream"),))] == 0


def test_without_the_broker_the_database_gauges_still_answer(db, hot_engine, settings):
    from tests.faults import free_port

    settings.TRACE_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.TRACE_BROKER_PUBLISH_TIMEOUT_SECONDS = 0.5
    got = scrape(Client())
    assert got[("trace_metrics_broker_up", ())] == 0
    assert not [key for key in got if key[0] == "trace_broker_queue_messages"]
    assert got[("trace_tasks", (("queue", "platform"), ("status", "Queued")))] == 0


@pytest.mark.usefixtures("sqs_broker")
def test_broker_queue_depth_on_sqs(db, hot_engine):
    from trace_tasks.publisher import send_wake

    for task_id in (1, 2):
        send_wake(task_id=task_id, queue="platform")
    got = scrape(Client())
    assert got[("trace_metrics_broker_up", ())] == 1
    assert got[("trace_broker_queue_messages", (("queue", "platform"),))] == 2
    assert got[("trace_broker_queue_messages", (("queue", "delivery"),))] == 0

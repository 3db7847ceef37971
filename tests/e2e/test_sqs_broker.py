"""The Celery broker on SQS (moto's server over HTTP on loopback, queues made as Terraform makes
them, predefined by URL): a real worker with the ECS worker flags runs a DAG end to end through
the lease protocol, and every wake-up is deleted from its queue once handled (acknowledged)."""

from __future__ import annotations

import pytest

from tests import processes
from tests.aws import aws_test_env, sqs_broker_env, sqs_depth, sqs_queues_create
from tests.chain.test_object_store import moto_s3_server as moto_server
from tests.dags import noop_dag
from tests.waiting import wait_for
from trace_tasks.queues import Queue
from trace_web.orchestration.models import Task, TaskStatus
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery


@pytest.fixture
def sqs_broker(settings, monkeypatch):
    """This process and the workers it starts publish and consume through SQS on moto."""
    from trace_tasks.celery_app import app, broker_transport_options

    aws_test_env(monkeypatch)
    with moto_server() as endpoint:
        urls = sqs_queues_create(endpoint)
        env = sqs_broker_env(endpoint, urls)
        settings.TRACE_BROKER_URL = env["TRACE_BROKER_URL"]
        settings.TRACE_SQS_REGION = env["TRACE_SQS_REGION"]
        settings.TRACE_SQS_QUEUE_URLS = env["TRACE_SQS_QUEUE_URLS"]
        monkeypatch.setitem(app.conf, "broker_transport_options", broker_transport_options())
        yield endpoint, urls, env


def test_a_dag_runs_end_to_end_over_sqs(transactional_db, org, sqs_broker, tmp_path, request):
    endpoint, urls, env = sqs_broker
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    # With the flags ECS starts a worker with (terraform/modules/compute: worker_flags).
    argv = ["worker", "-Q", Queue.PLATFORM.value, "-n", "sqs@%h", "--concurrency", "1"]
    flags = ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = processes.ServiceProcess(
        "sqs", processes.celery_argv(*argv, *flags), tmp_path, ready_marker="ready.", env=env
    )
    request.addfinalizer(worker.stop)
    # Queued, and its wake-up published to SQS right after the commit (the outbox flush).
    upstream = job_run_manual(org=org, dag_name="chain", job_name="extract")
    downstream = wait_for(
        lambda: Task.objects.filter(job__name="transform", status="Completed").first(),
        timeout=60,
        what="downstream task completed over SQS",
    )
    upstream.refresh_from_db()
    assert upstream.status == TaskStatus.COMPLETED
    for task in (upstream, downstream):
        assert [t.to_status for t in task.transitions.all()] == ["Queued", "Running", "Completed"]
        assert task.worker_id.startswith("sqs@")
    assert "sqs://" in worker.log() and "redis://" not in worker.log()
    # Both wake-ups were acknowledged: deleted from the queue, none left in flight.
    wait_for(lambda: sqs_depth(endpoint, urls["platform"]) == 0, what="platform queue drained")

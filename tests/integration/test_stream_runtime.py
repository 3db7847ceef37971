"""Long-running sources in-process: their wake-ups are routed to the stream queue, and a worker
that shuts down hands their attempts back (fenced, no attempt burned) while batch attempts
finish; the monitor then starts a successor after the normal pause."""

from __future__ import annotations

import threading

import pytest

from trace_tasks import runner
from trace_tasks.queues import Queue, queue_for
from trace_web.errors import StaleAttempt
from trace_web.orchestration.models import Outbox, OutboxKind, Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual, sources_monitor
from trace_web.orchestration.services.tasks import task_claim, task_release

DAG = """
name: streams
jobs:
  - name: follow
    activation: source
    source: {kind: always_on}
    operator: noop
    outputs: 0
    config: {sleep_seconds: 60}
  - name: batch
    activation: manual
    operator: noop
    outputs: 0
    config: {sleep_seconds: 1}
"""


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    yield
    runner._long_running.stopping.clear()  # the process-wide "worker stopping" flag


def wake_queue(task: Task) -> str:
    return Outbox.objects.get(kind=OutboxKind.WAKE_TASK, payload__task_id=task.pk).payload["queue"]


def test_queue_is_derived_from_the_job():
    assert queue_for(runtime="platform", source_kind="always_on") is Queue.STREAM
    assert queue_for(runtime="platform", source_kind="cron") is Queue.PLATFORM
    assert queue_for(runtime="platform", source_kind="") is Queue.PLATFORM
    # Untrusted sources stay with untrusted code; the stream pool runs trusted code only.
    assert queue_for(runtime="udf", source_kind="always_on") is Queue.UDF
    assert queue_for(runtime="dispatcher", source_kind="always_on") is Queue.DISPATCHER


def test_an_always_on_jobs_wake_ups_go_to_the_stream_queue(org, settings):
    settings.TRACE_SOURCE_RESTART_SECONDS = 0
    dag_sync(org=org, yaml_text=DAG, activate=True)
    assert sources_monitor() == 1
    source = Task.objects.get(job__name="follow")
    batch = job_run_manual(org=org, dag_name="streams", job_name="batch")
    assert (wake_queue(source), wake_queue(batch)) == ("stream", "platform")


def test_release_is_fenced_and_counts_no_failure(org, settings):
    settings.TRACE_SOURCE_RESTART_SECONDS = 3600  # a failure's pause would block the restart
    dag_sync(org=org, yaml_text=DAG, activate=True)
    sources_monitor()
    source = Task.objects.get(job__name="follow")
    claimed = task_claim(task_id=source.pk, worker_id="stream@host:1:1")
    stale = claimed.lease.__class__(
        task_id=claimed.lease.task_id,
        attempt=claimed.lease.attempt,
        lease_token="00000000-0000-0000-0000-000000000000",
    )
    with pytest.raises(StaleAttempt):
        task_release(lease=stale, reason="x")
    assert Task.objects.get(pk=source.pk).status == "Running"
    task_release(lease=claimed.lease, reason=runner.RELEASE_REASON)
    source.refresh_from_db()
    assert (source.status, source.attempt, source.lease_token) == ("Canceled", 1, None)
    settings.TRACE_SOURCE_RESTART_SECONDS = 0  # the normal pause, no failure streak to double
    assert sources_monitor() == 1
    assert Task.objects.filter(job__name="follow", status="Queued").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_stopping_worker_hands_back_its_source_and_lets_batch_work_finish(org, monkeypatch):
    dag_sync(org=org, yaml_text=DAG, activate=True)
    sources_monitor()
    source = Task.objects.get(job__name="follow")
    batch = job_run_manual(org=org, dag_name="streams", job_name="batch")
    outcomes: dict[str, str] = {}
    # Both operators are known to be running when the worker stops, whatever the machine's
    # load: each says when it starts, and the batch one holds until the stop has been asked.
    started = {"follow": threading.Event(), "batch": threading.Event()}
    stop_asked = threading.Event()
    real_operator_get = runner.operator_get

    def gated_operator_get(name):
        operator = real_operator_get(name)

        def run(ctx):
            started[ctx.job_name].set()
            if ctx.job_name == "batch" and not stop_asked.wait(timeout=60):
                raise RuntimeError("the worker was never asked to stop")
            return operator(ctx)

        return run

    monkeypatch.setattr(runner, "operator_get", gated_operator_get)

    def run(name: str, task_id: int) -> None:
        outcomes[name] = runner.task_run(task_id=task_id, worker_id=f"w:{name}").status

    threads = [
        threading.Thread(target=run, args=("source", source.pk)),
        threading.Thread(target=run, args=("batch", batch.pk)),
    ]
    for thread in threads:
        thread.start()
    for name, event in started.items():
        assert event.wait(timeout=60), f"{name} never started"
    assert Task.objects.filter(pk__in=[source.pk, batch.pk], status="Running").count() == 2
    assert runner.worker_stopping() == 1  # the source only
    stop_asked.set()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == {"source": "released", "batch": "completed"}
    source.refresh_from_db()
    assert (source.status, source.attempt) == ("Canceled", 1)
    assert source.transitions.last().reason == runner.RELEASE_REASON
    assert Task.objects.get(pk=batch.pk).status == "Completed"

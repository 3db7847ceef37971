"""End to end through real Celery workers, beat, Redis and Postgres: the acceptance drills of
the orchestration core (runs, reaping, duplicate wake-ups, dispatcher restarts, sources)."""

from __future__ import annotations

import itertools

import pytest
import redis
from django.core.management import call_command

from tests.dags import noop_dag
from tests.processes import broker_key
from tests.waiting import wait_for
from trace_tasks.publisher import send_wake
from trace_web.orchestration.models import Outbox, OutboxStatus, Task, TaskStatus, TaskTransition
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual

pytestmark = pytest.mark.celery


def task_status(task_id):
    return Task.objects.get(pk=task_id).status


def test_noop_dag_runs_upstream_then_downstream(services, org, tmp_path):
    dag_file = tmp_path / "dag.yaml"
    dag_file.write_text(noop_dag())
    call_command("sync_dag", str(dag_file), "--org", org.slug, "--activate")
    services.worker("w1")
    call_command("run_job", "chain", "extract", "--org", org.slug)
    upstream = Task.objects.get(job__name="extract")
    downstream = wait_for(
        lambda: Task.objects.filter(job__name="transform", status="Completed").first(),
        what="downstream task completed",
    )
    upstream.refresh_from_db()
    assert upstream.status == TaskStatus.COMPLETED
    assert [t.to_status for t in upstream.transitions.all()] == ["Queued", "Running", "Completed"]
    assert [t.to_status for t in downstream.transitions.all()] == ["Queued", "Running", "Completed"]
    assert downstream.trigger == "event"
    assert upstream.worker_id.startswith("w1@")


def test_duplicate_wakeups_execute_each_attempt_once(services, org, settings):
    dag_sync(org=org, yaml_text=noop_dag(extract_config="{sleep_seconds: 0.5}"), activate=True)
    workers = [services.worker("w1", concurrency=3), services.worker("w2", concurrency=3)]
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    for _ in range(20):
        send_wake(task_id=task.pk, queue="platform")
    wait_for(lambda: task_status(task.pk) == "Completed", what="task completed")
    # Wait for the outcome, not for a while: each of the 20 duplicates is handled (and finds
    # nothing to claim), and the broker holds no wake-up, queued or delivered but unacked.
    broker = redis.Redis.from_url(settings.TRACE_BROKER_URL)

    def not_claimed():
        return sum(w.log().count("'not_claimed'") for w in workers)

    wait_for(
        lambda: (
            not_claimed() >= 20
            and broker.llen(broker_key("platform")) == 0
            and broker.hlen(broker_key("unacked")) == 0
        ),
        what="every duplicate wake-up consumed",
    )
    assert not_claimed() == 20
    runs = TaskTransition.objects.filter(task=task, to_status="Running")
    assert runs.count() == 1
    downstream = wait_for(lambda: Task.objects.filter(job__name="transform").first())
    wait_for(lambda: task_status(downstream.pk) == "Completed")
    assert Task.objects.filter(job__name="transform").count() == 1


def test_killed_worker_is_reaped_and_task_retried_on_another_worker(services, org):
    dag_sync(
        org=org,
        activate=True,
        yaml_text=noop_dag(extract_config="{sleep_seconds: 30, fail_attempts: []}").replace(
            "operator: noop\n    config: {sleep_seconds: 30",
            "operator: noop\n    max_attempts: 2\n    config: {sleep_seconds: 30",
        ),
    )
    services.dispatcher()
    services.beat()
    victim = services.worker("victim")
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    wait_for(lambda: task_status(task.pk) == "Running", what="task running on victim")
    assert Task.objects.get(pk=task.pk).worker_id.startswith("victim@")
    victim.kill()
    survivor = services.worker("survivor")
    wait_for(
        lambda: Task.objects.filter(pk=task.pk, attempt=2, status="Running").exists(),
        timeout=40,
        what="attempt 2 running elsewhere",
    )
    first_failure = TaskTransition.objects.get(task=task, attempt=1, to_status="Failed")
    assert "stopped heartbeating" in first_failure.reason
    survivor.kill()  # attempt 2 dies too: max_attempts (2) is exhausted
    final = wait_for(
        lambda: Task.objects.filter(
            pk=task.pk, status="Failed", next_retry_at__isnull=True
        ).first(),
        timeout=40,
        what="terminal failure",
    )
    assert final.attempt == 2
    assert "stopped heartbeating" in final.error


def test_dispatcher_killed_midway_loses_no_outbox_work(services, org, settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False  # only the dispatcher publishes here
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    tasks = [job_run_manual(org=org, dag_name="chain", job_name="extract") for _ in range(40)]
    assert Outbox.objects.filter(status=OutboxStatus.PENDING).count() == 40
    services.worker("w1", concurrency=4)
    first = services.dispatcher("dispatcher-1")
    services.beat()
    wait_for(
        lambda: Outbox.objects.filter(status=OutboxStatus.DONE).exists(),
        what="dispatcher started draining",
    )
    first.kill()
    services.dispatcher("dispatcher-2")
    ids = [t.pk for t in tasks]
    wait_for(
        lambda: Task.objects.filter(job__name="transform", status="Completed").count() == 40,
        timeout=60,
        what="all 40 downstream tasks completed",
    )
    assert Task.objects.filter(pk__in=ids, status="Completed").count() == 40
    wait_for(
        lambda: not Outbox.objects.exclude(status=OutboxStatus.DONE).exists(),
        what="the outbox drained completely",
    )
    for task_id in ids:
        assert TaskTransition.objects.filter(task_id=task_id, to_status="Running").count() == 1


def test_cron_source_fires_on_schedule_through_beat(services, org):
    dag_sync(
        org=org,
        activate=True,
        yaml_text="""
name: ticker
jobs:
  - name: tick
    activation: source
    source: {kind: cron, every_seconds: 1}
    operator: noop
    outputs: 0
""",
    )
    services.worker("w1")
    services.dispatcher()
    services.beat()
    wait_for(
        lambda: Task.objects.filter(job__name="tick", status="Completed").count() >= 2,
        timeout=30,
        what="two cron firings",
    )
    assert set(Task.objects.filter(job__name="tick").values_list("trigger", flat=True)) == {"cron"}


def always_on_dag(name: str, follow_settings: str) -> str:
    """A noop always_on source `follow` emitting to a reactive noop `react`."""
    return f"""
name: {name}
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: noop
    outputs: 1
    update_strategy: replace
    {follow_settings}
  - name: react
    activation: reactive
    operator: noop
    outputs: 0
    inputs: [{{from: {{job: follow, output: 0}}}}]
"""


def test_always_on_source_is_kept_running_and_restarted(services, org):
    dag_sync(
        org=org,
        activate=True,
        yaml_text=always_on_dag(
            "follower",
            "max_attempts: 1\n    config: {emit_count: 3, emit_every_seconds: 0.2, "
            "fail_attempts: [1]}",
        ),
    )
    services.worker("w1", concurrency=3)
    services.stream_worker()
    services.dispatcher()
    services.beat()
    # Attempt 1 of every singleton task fails at once (max_attempts 1): the monitor restarts
    # it with a new task; there is never more than one live singleton.
    wait_for(
        lambda: Task.objects.filter(job__name="follow", status="Failed").count() >= 2,
        timeout=30,
        what="restarts after failures",
    )
    assert_never_two_running(Task.objects.filter(job__name="follow"))


def assert_never_two_running(tasks):
    """From the recorded transitions: no two attempts of these tasks were Running at once."""
    intervals = []
    for task in tasks:
        transitions = list(task.transitions.order_by("id"))
        for current, following in zip(transitions, [*transitions[1:], None], strict=True):
            if current.to_status == "Running":
                intervals.append((current.at, following.at if following else None))
    intervals.sort(key=lambda interval: interval[0])
    assert len(intervals) >= 2, intervals  # both callers saw a restart: a pair to compare
    for (_, end), (next_start, _) in itertools.pairwise(intervals):
        assert end is not None and end <= next_start, intervals


def test_always_on_emits_events_and_survives_a_killed_worker(services, org):
    dag_sync(
        org=org,
        activate=True,
        yaml_text=always_on_dag("stream", "config: {emit_count: 1000, emit_every_seconds: 0.3}"),
    )
    services.dispatcher()
    services.beat()
    services.worker("w1")  # the reactive consumer's batch tasks
    victim = services.stream_worker("victim")
    wait_for(
        lambda: Task.objects.filter(job__name="react", status="Completed").count() >= 3,
        timeout=40,
        what="downstream tasks from the follower's events",
    )
    follower = Task.objects.get(job__name="follow")
    assert follower.status == "Running" and follower.attempt == 1
    assert follower.worker_id.startswith("victim@")
    victim.kill()
    services.stream_worker("rescuer")
    wait_for(
        lambda: Task.objects.filter(pk=follower.pk, status="Running", attempt=2).exists(),
        timeout=40,
        what="follower running again after missed heartbeats",
    )
    reacted = Task.objects.filter(job__name="react").count()
    wait_for(
        lambda: Task.objects.filter(job__name="react").count() > reacted + 2,
        timeout=30,
        what="events flowing again",
    )
    assert Task.objects.filter(job__name="follow").count() == 1  # one singleton, retried in place
    # The killed attempt ended (reaped) before the rescuer's attempt started.
    assert_never_two_running(Task.objects.filter(job__name="follow"))

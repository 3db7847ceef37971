"""Retention against real Postgres: finished tasks (with transitions and inputs) and published
outbox rows older than their retention are deleted in batches, and nothing that fencing,
dedupe, a chain_sync ledger, lineage or the source monitor still needs is."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.dags import noop_dag
from trace_web.chain_sync.models import RangeStatus, ScheduledRange
from trace_web.chain_sync.services import chain_sync_apply, chain_sync_plan
from trace_web.datasets.models import DatasetVersion, PartitionVersion
from trace_web.errors import NotFound, StaleAttempt
from trace_web.orchestration.models import (
    Job,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Task,
    TaskInput,
    TaskTransition,
)
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_drain
from trace_web.orchestration.services.retention import outbox_prune, state_prune, tasks_prune
from trace_web.orchestration.services.sources import (
    RESTART_HISTORY,
    _restart_pause,
    job_run_manual,
)
from trace_web.orchestration.services.tasks import (
    task_cancel,
    task_claim,
    task_complete,
    task_create,
    task_fail,
    task_heartbeat,
)

HOUR = timedelta(hours=1)
ALWAYS_ON = """
name: sources
jobs:
  - name: follow
    activation: source
    source: {kind: always_on}
    operator: noop
    outputs: 0
"""
CHAIN_SYNC = """
kind: chain_sync
name: history
chain_id: 31337
mode: fixed_target
from_block: 0
to_block: 20
streams:
  - {dataset: blocks, chunk_size: 10, max_inflight: 2, rpc_pool: devchain}
"""


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    settings.TRACE_TASK_RETENTION_SECONDS = 3600
    settings.TRACE_OUTBOX_RETENTION_SECONDS = 3600


@pytest.fixture
def dag(org):
    return dag_sync(org=org, yaml_text=noop_dag(), activate=True).version


def run(org, job="extract"):
    return job_run_manual(org=org, dag_name="chain", job_name=job)


def completed(org, job="extract"):
    task = run(org, job)
    task_complete(lease=task_claim(task_id=task.pk, worker_id="w").lease)
    return task


def age(*tasks, by=2 * HOUR):
    Task.objects.filter(pk__in=[t.pk for t in tasks]).update(finished_at=timezone.now() - by)


def exists(task) -> bool:
    return Task.objects.filter(pk=task.pk).exists()


def test_finished_tasks_past_retention_go_with_their_transitions_and_inputs(org, dag):
    done = completed(org)
    outbox_drain()  # routes done's event: a transform task with a pinned input
    routed = Task.objects.get(job__name="transform")
    task_complete(lease=task_claim(task_id=routed.pk, worker_id="w").lease)
    canceled = run(org)
    task_cancel(task_id=canceled.pk, org_id=org.pk)
    failed = run(org)
    task_fail(lease=task_claim(task_id=failed.pk, worker_id="w").lease, error="x", retryable=False)
    recent = completed(org)
    age(done, routed, canceled, failed)
    assert TaskInput.objects.filter(task=routed).exists()

    assert tasks_prune() == 4
    assert {t.pk for t in Task.objects.all()} == {recent.pk}
    assert not TaskTransition.objects.exclude(task=recent).exists()
    assert not TaskInput.objects.exists()
    assert tasks_prune() == 0


def test_live_tasks_are_never_pruned_whatever_their_timestamps(org, dag, settings):
    settings.TRACE_RETRY_BACKOFF_BASE_SECONDS = 600
    queued = run(org)
    running = run(org)
    claimed = task_claim(task_id=running.pk, worker_id="w")
    retrying = run(org)
    task_fail(lease=task_claim(task_id=retrying.pk, worker_id="w").lease, error="flaky")
    live = (queued, running, retrying)
    age(*live, by=30 * 24 * HOUR)  # even a stray finished_at does not make them finished
    Task.objects.filter(pk__in=[t.pk for t in live]).update(
        created_at=timezone.now() - 30 * 24 * HOUR
    )
    assert tasks_prune() == 0
    assert all(exists(t) for t in live)
    task_heartbeat(lease=claimed.lease)  # the running attempt's fencing is intact


def test_a_pruned_attempt_that_reports_late_is_refused_and_changes_nothing(org, dag):
    task = run(org)
    lease = task_claim(task_id=task.pk, worker_id="w").lease
    task_complete(lease=lease)
    age(task)
    assert tasks_prune() == 1
    outbox_rows = Outbox.objects.count()
    with pytest.raises(StaleAttempt):
        task_complete(lease=lease)
    with pytest.raises(StaleAttempt):
        task_fail(lease=lease, error="late")
    with pytest.raises(NotFound):
        task_heartbeat(lease=lease)
    assert not Task.objects.exists()
    assert Outbox.objects.count() == outbox_rows


def test_an_event_task_stays_while_its_outbox_row_may_be_replayed(org, dag):
    producer = completed(org)
    outbox_drain()
    routed = Task.objects.get(job__name="transform")
    task_complete(lease=task_claim(task_id=routed.pk, worker_id="w").lease)
    event = Outbox.objects.get(kind=OutboxKind.ROUTE_EVENT, payload__producer_task_id=producer.pk)
    assert routed.dedupe_key.startswith(f"event:{event.pk}:job:")
    age(routed)
    for status in (OutboxStatus.PENDING, OutboxStatus.FAILED):
        Outbox.objects.filter(pk=event.pk).update(status=status, available_at=timezone.now())
        tasks_prune()
        assert exists(routed), status
    # Replayed: the dedupe key the kept task holds stops a second routing.
    Outbox.objects.filter(pk=event.pk).update(status=OutboxStatus.PENDING)
    outbox_drain()
    assert Task.objects.filter(job__name="transform").count() == 1
    assert Outbox.objects.get(pk=event.pk).status == OutboxStatus.DONE
    tasks_prune()  # published for good now: the task may go
    assert not exists(routed)


def test_a_task_whose_chain_sync_range_is_not_settled_stays(org):
    chain_sync_apply(org=org, yaml_text=CHAIN_SYNC)
    chain_sync_plan()
    first = ScheduledRange.objects.get(range_start=0)
    task = Task.objects.get(pk=first.task_id)
    task_complete(lease=task_claim(task_id=task.pk, worker_id="w").lease)
    age(task)  # e.g. the sync was paused before the planner settled the range
    tasks_prune()
    assert exists(task)
    chain_sync_plan()
    first.refresh_from_db()
    assert first.status == RangeStatus.DONE
    tasks_prune()
    assert not exists(task)
    first.refresh_from_db()
    assert first.status == RangeStatus.DONE  # the ledger keeps its own record


def test_the_task_that_committed_a_partition_version_stays(org, dag):
    lineage, other = completed(org), completed(org)
    PartitionVersion.objects.create(
        dataset_version=DatasetVersion.objects.get(dataset__job_name="extract"),
        partition_key="p0",
        task_id=lineage.pk,
        attempt=1,
    )
    age(lineage, other)
    assert tasks_prune() == 1
    assert exists(lineage) and not exists(other)


def test_the_source_monitor_keeps_the_history_it_paces_restarts_by(org):
    dag_sync(org=org, yaml_text=ALWAYS_ON, activate=True)
    job = Job.objects.get(name="follow")
    tasks = []
    for _ in range(RESTART_HISTORY + 3):
        task, _ = task_create(job=job, trigger="always_on")
        task_fail(
            lease=task_claim(task_id=task.pk, worker_id="w").lease, error="x", retryable=False
        )
        tasks.append(task)
    age(*tasks)

    def pause():
        return _restart_pause(list(Task.objects.filter(job=job).order_by("-id")[:RESTART_HISTORY]))

    before = pause()
    assert tasks_prune() == 3
    assert [t.pk for t in Task.objects.filter(job=job).order_by("id")] == [t.pk for t in tasks[3:]]
    assert pause() == before


def test_outbox_keeps_pending_failed_and_recent_rows(org, dag):
    old = timezone.now() - 2 * HOUR
    make = lambda status, done_at: Outbox.objects.create(  # noqa: E731
        kind=OutboxKind.WAKE_TASK,
        payload={"task_id": 1, "queue": "platform"},
        status=status,
        available_at=old,
        done_at=done_at,
    )
    published = make(OutboxStatus.DONE, old)
    fresh = make(OutboxStatus.DONE, timezone.now())
    pending = make(OutboxStatus.PENDING, None)
    failed = make(OutboxStatus.FAILED, None)
    Outbox.objects.filter(pk__in=[pending.pk, failed.pk]).update(created_at=old)
    assert outbox_prune() == 1
    assert not Outbox.objects.filter(pk=published.pk).exists()
    assert set(Outbox.objects.values_list("pk", flat=True)) == {fresh.pk, pending.pk, failed.pk}


def test_pruning_goes_in_batches(org, dag, settings):
    settings.TRACE_PRUNE_BATCH_SIZE = 2
    tasks = [completed(org) for _ in range(5)]
    age(*tasks)
    Outbox.objects.update(status=OutboxStatus.DONE, done_at=timezone.now() - 2 * HOUR)
    outbox_rows = Outbox.objects.count()
    assert outbox_rows > 4
    assert [tasks_prune() for _ in range(4)] == [2, 2, 1, 0]
    assert state_prune(max_batches=1) == 2  # one round: one outbox batch, no task left
    assert Outbox.objects.count() == outbox_rows - 2
    assert state_prune() == outbox_rows - 2  # the rest, round after round
    assert not Outbox.objects.exists()


def test_the_pruner_runs_on_beat_with_an_expiry():
    from django.conf import settings

    import trace_tasks.dispatcher  # noqa: F401  registers the dispatcher's tasks
    from trace_tasks.celery_app import app

    entry = app.conf.beat_schedule["state-pruner"]
    assert entry["task"] == "trace.dispatch.prune_state"
    assert entry["task"] in app.tasks
    assert entry["options"] == {
        "queue": "dispatcher",
        "expires": settings.TRACE_PRUNE_EVERY_SECONDS,
    }

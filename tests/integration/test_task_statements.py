"""The lease protocol's single-statement path (services.task_statements) against real
Postgres: it writes exactly what the locking ORM path writes, it is fenced the same way, and a
task that ends inside one heartbeat interval sends no heartbeat."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from trace_tasks.runner import task_run
from trace_web.errors import StaleAttempt
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus, Task, TaskStatus
from trace_web.orchestration.selectors import active_job
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.tasks import (
    PinnedInput,
    TaskScope,
    task_cancel,
    task_claim,
    task_complete,
    task_create,
    task_heartbeat,
)
from trace_web.orchestration.services.tokens import Lease

# `plain` completes in one statement (no outputs, no cap); `capped` claims and completes
# through the locking path (max_concurrency); `outputs` completes through it (a publication).
DAG = """
name: lease
jobs:
  - {name: plain, activation: manual, operator: noop, outputs: 0, timeout_seconds: 30,
     heartbeat_timeout_seconds: 9}
  - {name: capped, activation: manual, operator: noop, outputs: 0, timeout_seconds: 30,
     heartbeat_timeout_seconds: 9, scaling: {max_concurrency: 3}}
  - {name: outputs, activation: manual, operator: noop, timeout_seconds: 30,
     heartbeat_timeout_seconds: 9}
"""


@pytest.fixture(autouse=True)
def _no_fast_path(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def jobs(org):
    dag_sync(org=org, yaml_text=DAG, activate=True)
    return {name: active_job(org_id=org.pk, dag_name="lease", job_name=name) for name in DAG_JOBS}


DAG_JOBS = ("plain", "capped", "outputs")


def dataset(org, job_name: str):
    from trace_web.datasets.models import Dataset

    return Dataset.objects.create(org=org, dag_name="other", job_name=job_name, output_index=0)


def history(task_id: int) -> list[tuple]:
    task = Task.objects.get(pk=task_id)
    return [
        (t.attempt, t.from_status, t.to_status, t.worker_id, t.reason)
        for t in task.transitions.all()
    ]


def test_create_writes_the_task_its_inputs_its_transition_and_its_wakeup_at_once(org, jobs):
    datasets = [dataset(org, f"ds{i}") for i in range(2)]
    pinned = [
        PinnedInput(dataset_id=datasets[1].pk, partition_key="p1", cursor_from=3, cursor_to=9),
        PinnedInput(dataset_id=datasets[0].pk),
    ]
    task, created = task_create(
        job=jobs["plain"],
        trigger="manual",
        scope=TaskScope(range_start=10, range_end=20),
        payload={"k": "v"},
        inputs=pinned,
    )
    assert created
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.attempt, stored.max_attempts) == (
        TaskStatus.QUEUED,
        1,
        jobs["plain"].max_attempts,
    )
    assert (stored.range_start, stored.range_end, stored.payload) == (10, 20, {"k": "v"})
    assert stored.created_at == task.created_at and stored.last_woken_at is not None
    assert [
        (i.dataset_id, i.partition_key, i.cursor_from, i.cursor_to)
        for i in stored.inputs.order_by("id")
    ] == [(datasets[1].pk, "p1", 3, 9), (datasets[0].pk, None, None, None)]
    assert history(task.pk) == [(1, "", "Queued", "", "created by manual")]
    wake = Outbox.objects.get(kind=OutboxKind.WAKE_TASK)
    assert wake.payload == {"task_id": task.pk, "queue": "platform"}
    assert (wake.status, wake.tries) == (OutboxStatus.PENDING, 0)
    # The returned instance is the stored row, usable as one.
    task.refresh_from_db()
    assert task.job_id == jobs["plain"].pk


def test_a_taken_dedupe_key_writes_nothing_and_returns_the_first_task(jobs):
    first, created = task_create(job=jobs["plain"], trigger="event", dedupe_key="k1")
    again, created_again = task_create(job=jobs["plain"], trigger="event", dedupe_key="k1")
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert Task.objects.count() == 1
    assert Outbox.objects.count() == 1
    assert len(history(first.pk)) == 1


@pytest.mark.parametrize("job", ["plain", "capped"])
def test_both_claim_paths_write_the_same_lease_and_transition(jobs, job):
    task, _ = task_create(job=jobs[job], trigger="manual")
    before = timezone.now()
    claimed = task_claim(task_id=task.pk, worker_id="w-" + job)
    stored = Task.objects.get(pk=task.pk)
    assert stored.status == TaskStatus.RUNNING
    assert before <= stored.started_at <= timezone.now()
    assert stored.lease_expires_at == stored.started_at + timedelta(seconds=9)
    assert stored.deadline_at == stored.started_at + timedelta(seconds=30)
    assert str(stored.lease_token) == claimed.lease.lease_token
    assert stored.worker_id == "w-" + job
    assert claimed.lease_seconds == 9
    assert claimed.task.job.dag_version.name == "lease"
    assert history(task.pk)[-1] == (1, "Queued", "Running", "w-" + job, "claimed")
    assert task_claim(task_id=task.pk, worker_id="w2") is None  # one lease per attempt
    assert Task.objects.get(pk=task.pk).worker_id == "w-" + job


def test_the_claim_hands_the_attempt_its_pinned_inputs_and_grants(org, jobs):
    from trace_web.orchestration.services.tokens import capability_token_verify

    b, a = (dataset(org, n) for n in ("b", "a"))
    task, _ = task_create(
        job=jobs["plain"],
        trigger="manual",
        inputs=[PinnedInput(dataset_id=b.pk, cursor_to=5), PinnedInput(dataset_id=a.pk)],
    )
    claimed = task_claim(task_id=task.pk, worker_id="w")
    assert [(i["dataset_id"], i["cursor_to"]) for i in claimed.inputs] == [(b.pk, 5), (a.pk, None)]
    grants = capability_token_verify(claimed.capability_token).claims["datasets"]
    assert [g["dataset_id"] for g in grants] == sorted([a.pk, b.pk])


@pytest.mark.parametrize("job", ["plain", "outputs"])
def test_both_completion_paths_finish_the_attempt_alike(jobs, job):
    task, _ = task_create(job=jobs[job], trigger="manual")
    claimed = task_claim(task_id=task.pk, worker_id="w")
    before = timezone.now()
    done = task_complete(lease=claimed.lease)
    stored = Task.objects.get(pk=task.pk)
    assert (done.pk, done.status, stored.status) == (task.pk, TaskStatus.COMPLETED, "Completed")
    assert (stored.lease_token, stored.lease_expires_at) == (None, None)
    assert before <= stored.finished_at <= timezone.now()
    assert len(stored.outputs) == (0 if job == "plain" else 1)
    assert history(task.pk)[-1] == (1, "Running", "Completed", "w", "")


def test_an_explicit_empty_report_completes_a_job_with_outputs_in_one_statement(jobs):
    task, _ = task_create(job=jobs["outputs"], trigger="manual")
    claimed = task_claim(task_id=task.pk, worker_id="w")
    task_complete(lease=claimed.lease, outputs=[])
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.outputs) == (TaskStatus.COMPLETED, [])
    assert not Outbox.objects.filter(kind=OutboxKind.ROUTE_EVENT).exists()


def _stale_leases(claimed) -> dict[str, Lease]:
    lease = claimed.lease
    return {
        "wrong token": Lease(lease.task_id, lease.attempt, str(uuid.uuid4())),
        "old attempt": Lease(lease.task_id, lease.attempt - 1, lease.lease_token),
        "other task": Lease(lease.task_id + 10_000, lease.attempt, lease.lease_token),
    }


@pytest.mark.parametrize("stale", ["wrong token", "old attempt", "other task"])
@pytest.mark.parametrize("job", ["plain", "outputs"])
def test_a_stale_lease_neither_completes_nor_heartbeats(jobs, job, stale):
    task, _ = task_create(job=jobs[job], trigger="manual")
    claimed = task_claim(task_id=task.pk, worker_id="w")
    lease = _stale_leases(claimed)[stale]
    expires = Task.objects.get(pk=task.pk).lease_expires_at
    with pytest.raises(StaleAttempt):
        task_complete(lease=lease)
    if stale != "other task":  # an unknown task is NotFound, tested with the API
        with pytest.raises(StaleAttempt):
            task_heartbeat(lease=lease)
    stored = Task.objects.get(pk=task.pk)
    assert (stored.status, stored.lease_expires_at) == (TaskStatus.RUNNING, expires)
    assert history(task.pk)[-1][2] == "Running"


@pytest.mark.parametrize("job", ["plain", "outputs"])
def test_a_canceled_attempt_cannot_complete_on_either_path(org, jobs, job):
    task, _ = task_create(job=jobs[job], trigger="manual")
    claimed = task_claim(task_id=task.pk, worker_id="w")
    task_cancel(task_id=task.pk, org_id=org.pk)
    with pytest.raises(StaleAttempt):
        task_complete(lease=claimed.lease)
    assert Task.objects.get(pk=task.pk).status == TaskStatus.CANCELED


def test_a_heartbeat_extends_the_lease_by_the_jobs_own_length(jobs):
    task, _ = task_create(job=jobs["plain"], trigger="manual")
    claimed = task_claim(task_id=task.pk, worker_id="w")
    before = timezone.now()
    expires = task_heartbeat(lease=claimed.lease)
    assert before + timedelta(seconds=9) <= expires <= timezone.now() + timedelta(seconds=9)
    assert Task.objects.get(pk=task.pk).lease_expires_at == expires


@pytest.mark.django_db(transaction=True)
def test_a_task_that_ends_inside_one_heartbeat_interval_sends_no_heartbeat(
    org, settings, monkeypatch
):
    dag_sync(
        org=org,
        activate=True,
        yaml_text="""
name: beats
jobs:
  - {name: quick, activation: manual, operator: noop, outputs: 0}
  - {name: slow, activation: manual, operator: noop, outputs: 0, config: {sleep_seconds: 1.6}}
""",
    )
    settings.TRACE_HEARTBEAT_SECONDS = 0.5
    sent: list[int] = []
    real = task_heartbeat

    def counting(*, lease):
        sent.append(lease.task_id)
        return real(lease=lease)

    monkeypatch.setattr("trace_tasks.runner.task_heartbeat", counting)
    quick, _ = task_create(
        job=active_job(org_id=org.pk, dag_name="beats", job_name="quick"), trigger="manual"
    )
    slow, _ = task_create(
        job=active_job(org_id=org.pk, dag_name="beats", job_name="slow"), trigger="manual"
    )
    assert task_run(task_id=quick.pk, worker_id="w").status == "completed"
    assert sent == []
    assert task_run(task_id=slow.pk, worker_id="w").status == "completed"
    assert sent and set(sent) == {slow.pk}  # the slow one kept its lease by heartbeats

"""The guarantees of the task lifecycle that a mutation audit found undefended, each proved
against real Postgres (concurrent sessions where the guarantee is about races): remove the
line that keeps it and a test here goes red."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from tests.dags import noop_dag
from tests.waiting import wait_for
from trace_web.errors import StaleAttempt
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus, Task, TaskStatus
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_add, outbox_drain
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import (
    task_cancel,
    task_claim,
    task_complete,
    task_events,
    tasks_reap_expired,
    tasks_rewake_stale,
)


@pytest.fixture(autouse=True)
def _no_fast_path(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def deploy(org, yaml_text=None):
    return dag_sync(org=org, yaml_text=yaml_text or noop_dag(), activate=True).version


def run(org, dag="chain", job="extract"):
    return job_run_manual(org=org, dag_name=dag, job_name=job)


def in_threads(count: int, call) -> list:
    """`call(i)` in `count` threads, each with its own database session, released together."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call(index)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_of_one_attempt_give_exactly_one_lease(org):
    deploy(org)
    for _ in range(10):  # each round a fresh task, claimed by 6 sessions at once
        task = run(org)
        claims = in_threads(6, lambda i, t=task: task_claim(task_id=t.pk, worker_id=f"w{i}"))
        winners = [c for c in claims if c is not None]
        assert len(winners) == 1, [c.lease for c in winners]
        transitions = Task.objects.get(pk=task.pk).transitions.filter(to_status="Running")
        assert transitions.count() == 1


@pytest.mark.django_db(transaction=True)
def test_max_concurrency_holds_under_concurrent_claims(org):
    deploy(
        org,
        """
name: capped
jobs:
  - {name: work, activation: manual, operator: noop, outputs: 0, scaling: {max_concurrency: 2}}
""",
    )
    tasks = [run(org, "capped", "work") for _ in range(8)]
    claims = in_threads(8, lambda i: task_claim(task_id=tasks[i].pk, worker_id=f"w{i}"))
    assert sum(c is not None for c in claims) == 2
    assert Task.objects.filter(status=TaskStatus.RUNNING).count() == 2


def test_the_reaper_stops_a_task_past_its_deadline_even_while_it_heartbeats(org):
    deploy(
        org,
        """
name: slow
jobs:
  - {name: work, activation: manual, operator: noop, outputs: 0, timeout_seconds: 60}
""",
    )
    task = run(org, "slow", "work")
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    assert claimed.task.deadline_at is not None
    assert tasks_reap_expired() == 0  # lease and deadline both ahead
    # The lease is fresh (it heartbeats), but the deadline has passed.
    Task.objects.filter(pk=task.pk).update(
        deadline_at=timezone.now() - timedelta(seconds=1),
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert tasks_reap_expired() == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED and "timed out after 60s" in task.error
    with pytest.raises(StaleAttempt):
        task_complete(lease=claimed.lease)


def test_a_lost_wakeup_is_sent_again_and_a_fresh_one_is_not(org, settings):
    deploy(org)
    stale, fresh = run(org), run(org)
    Outbox.objects.update(status=OutboxStatus.DONE)  # the first wake-ups went out (and got lost)
    long_ago = timezone.now() - timedelta(seconds=settings.TRACE_REWAKE_AFTER_SECONDS + 5)
    Task.objects.filter(pk=stale.pk).update(last_woken_at=long_ago)
    assert tasks_rewake_stale() == 1
    pending = Outbox.objects.filter(status=OutboxStatus.PENDING, kind=OutboxKind.WAKE_TASK)
    assert [row.payload["task_id"] for row in pending] == [stale.pk]
    assert Task.objects.get(pk=stale.pk).last_woken_at > long_ago
    assert Task.objects.get(pk=fresh.pk).last_woken_at < Task.objects.get(pk=stale.pk).last_woken_at
    assert tasks_rewake_stale() == 0  # just woken: not again until it is stale once more


def test_one_failing_outbox_row_neither_blocks_nor_undoes_the_others(org, monkeypatch, settings):
    # A backoff no loaded machine outruns between the drain and the checks below.
    settings.TRACE_OUTBOX_BACKOFF_BASE_SECONDS = 60
    deploy(org)
    tasks = [run(org) for _ in range(3)]
    Outbox.objects.all().delete()
    rows = [
        outbox_add(kind=OutboxKind.WAKE_TASK, payload={"task_id": t.pk, "queue": "platform"})
        for t in tasks
    ]
    sent: list[int] = []

    def send_wake(*, task_id, queue):
        # A side effect in the same transaction as the row: kept when the row succeeds,
        # undone when it fails (its savepoint), never undoing another row's.
        Task.objects.filter(pk=task_id).update(worker_id="woken")
        if task_id == tasks[1].pk:
            with connection.cursor() as cursor:  # a database error, which aborts a transaction
                cursor.execute("SELECT 1 / 0")
        sent.append(task_id)

    monkeypatch.setattr("trace_tasks.publisher.send_wake", send_wake)
    assert outbox_drain() == 2
    assert sent == [tasks[0].pk, tasks[2].pk]  # the row after the failing one went out too
    states = {r.pk: (r.status, r.tries) for r in Outbox.objects.filter(pk__in=[r.pk for r in rows])}
    assert states == {
        rows[0].pk: (OutboxStatus.DONE, 1),
        rows[1].pk: (OutboxStatus.PENDING, 1),
        rows[2].pk: (OutboxStatus.DONE, 1),
    }
    woken = dict(Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("pk", "worker_id"))
    assert woken == {tasks[0].pk: "woken", tasks[1].pk: "", tasks[2].pk: "woken"}
    failed = Outbox.objects.get(pk=rows[1].pk)
    assert failed.available_at > timezone.now()  # backed off: not retried in a tight loop
    assert "division by zero" in failed.last_error
    assert outbox_drain() == 0  # nothing due: the failing row waits for its backoff
    assert Outbox.objects.get(pk=rows[1].pk).tries == 1


def test_a_canceled_running_task_refuses_its_later_completion_and_events(org):
    deploy(org)
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    task_cancel(task_id=task.pk, org_id=org.pk, reason="by test")
    with pytest.raises(StaleAttempt):
        task_events(lease=claimed.lease, events=[{"output": 0, "partition_key": "p"}])
    with pytest.raises(StaleAttempt):
        task_complete(lease=claimed.lease)
    task.refresh_from_db()
    assert (task.status, task.lease_token, task.outputs) == (TaskStatus.CANCELED, None, [])
    assert not Outbox.objects.filter(kind=OutboxKind.ROUTE_EVENT).exists()
    assert [t.to_status for t in task.transitions.all()] == ["Queued", "Running", "Canceled"]


@pytest.mark.django_db(transaction=True)
def test_a_failing_fast_path_neither_fails_the_caller_nor_loses_the_wakeup(
    org, settings, monkeypatch
):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True
    deploy(org)
    calls: list[int] = []

    def broker_down(*, task_id, queue):
        calls.append(task_id)
        raise ConnectionError("broker down")

    monkeypatch.setattr("trace_tasks.publisher.send_wake", broker_down)
    task = run(org)  # commits; the on-commit publish fails
    close_old_connections()
    assert calls == [task.pk]  # the fast path was tried, right after commit
    row = Outbox.objects.get(kind=OutboxKind.WAKE_TASK, payload__task_id=task.pk)
    assert (row.status, row.tries) == (OutboxStatus.PENDING, 1)  # kept for the drain loop
    assert Task.objects.get(pk=task.pk).status == TaskStatus.QUEUED
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kw: calls.append(-1))
    Outbox.objects.filter(pk=row.pk).update(available_at=timezone.now())
    assert outbox_drain() == 1  # the guarantee: the drain loop publishes it
    assert Outbox.objects.get(pk=row.pk).status == OutboxStatus.DONE


SLEEPER = """
name: sleeper
jobs:
  - {name: work, activation: manual, operator: noop, outputs: 0, config: {sleep_seconds: 120}}
"""


def run_in_thread(task_id: int) -> tuple[threading.Thread, list]:
    from trace_tasks.runner import task_run

    outcome: list = []

    def work() -> None:
        try:
            outcome.append(task_run(task_id=task_id, worker_id="w-thread"))
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.django_db(transaction=True)
def test_a_canceled_attempt_stops_its_operator_at_the_next_heartbeat(org):
    deploy(org, SLEEPER)
    task = run(org, "sleeper", "work")
    thread, outcome = run_in_thread(task.pk)
    wait_for(lambda: Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING)
    task_cancel(task_id=task.pk, org_id=org.pk, reason="by test")
    thread.join(timeout=30)  # the operator would sleep 120 s if nobody stopped it
    assert not thread.is_alive()
    assert outcome[0].status == "lease_lost"
    assert Task.objects.get(pk=task.pk).status == TaskStatus.CANCELED


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_cannot_heartbeat_stops_when_its_lease_runs_out_by_its_own_clock(
    org, monkeypatch
):
    from django.db import OperationalError

    deploy(org, SLEEPER)
    task = run(org, "sleeper", "work")

    def unreachable(*, lease):
        raise OperationalError("the database is unreachable")

    monkeypatch.setattr("trace_tasks.runner.task_heartbeat", unreachable)
    thread, outcome = run_in_thread(task.pk)
    thread.join(timeout=30)  # lease is 4 s in tests; the operator would sleep 120 s
    assert not thread.is_alive()
    assert outcome[0].status == "lease_lost"
    # It reported nothing: the reaper, not this worker, decides what happens to the attempt.
    stored = Task.objects.get(pk=task.pk)
    assert stored.status == TaskStatus.RUNNING and stored.finished_at is None

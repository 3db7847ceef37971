"""The task lifecycle services against real Postgres: claim, heartbeat, fencing, retries,
reaping, cancel, concurrency caps, the outbox and the capability-token endpoints."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.dags import noop_dag
from trace_web.errors import NotFound, StaleAttempt, ValidationFailed
from trace_web.orchestration.models import Outbox, OutboxStatus, Task, TaskStatus
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_drain
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import (
    task_cancel,
    task_claim,
    task_complete,
    task_events,
    task_fail,
    task_heartbeat,
    task_lease_check,
    task_lock_current,
    task_release,
    task_retry,
    task_run_now,
    tasks_reap_expired,
    tasks_requeue_due,
)
from trace_web.orchestration.services.tokens import Lease, capability_token_verify


@pytest.fixture(autouse=True)
def _no_fast_path(settings):
    # Service tests publish explicitly; no wake-ups leave for a broker.
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def dag(org):
    return dag_sync(org=org, yaml_text=noop_dag(), activate=True).version


def run(org, job="extract", **kwargs):
    return job_run_manual(org=org, dag_name="chain", job_name=job, **kwargs)


def statuses(task):
    return [(t.attempt, t.from_status, t.to_status) for t in task.transitions.all()]


def test_claim_complete_records_transitions_and_routes_downstream(org, dag):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    assert claimed.task.status == TaskStatus.RUNNING
    assert claimed.lease.attempt == 1
    task_complete(lease=claimed.lease)
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETED
    assert statuses(task) == [
        (1, "", "Queued"),
        (1, "Queued", "Running"),
        (1, "Running", "Completed"),
    ]
    assert not Task.objects.filter(job__name="transform").exists()
    outbox_drain()  # the dispatcher routes the committed output's event
    downstream = Task.objects.get(job__name="transform")
    assert downstream.status == TaskStatus.QUEUED
    assert downstream.trigger == "event"
    assert downstream.inputs.get().dataset.job_name == "extract"
    outbox_drain()
    outbox_drain()  # routing again changes nothing
    assert Task.objects.filter(job__name="transform").count() == 1


def test_second_claim_of_same_attempt_is_refused(org, dag):
    task = run(org)
    assert task_claim(task_id=task.pk, worker_id="w1") is not None
    assert task_claim(task_id=task.pk, worker_id="w2") is None
    task.refresh_from_db()
    assert task.worker_id == "w1"


def test_stale_lease_is_rejected_and_changes_nothing(org, dag):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    wrong_token = Lease(task.pk, 1, str(uuid.uuid4()))
    wrong_attempt = Lease(task.pk, 2, claimed.lease.lease_token)
    for lease in (wrong_token, wrong_attempt):
        with pytest.raises(StaleAttempt):
            task_complete(lease=lease)
        with pytest.raises(StaleAttempt):
            task_heartbeat(lease=lease)
        with pytest.raises(StaleAttempt):
            task_events(lease=lease, events=[{"output": 0, "partition_key": "p"}])
        with pytest.raises(StaleAttempt):
            task_fail(lease=lease, error="x")
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING
    assert task.outputs == []
    assert not Outbox.objects.filter(kind="route_event").exists()


def test_failure_retries_with_backoff_then_fails_for_good(org, dag, settings):
    settings.TRACE_RETRY_BACKOFF_BASE_SECONDS = 30
    settings.TRACE_RETRY_BACKOFF_MAX_SECONDS = 600
    task = run(org)
    for attempt in (1, 2, 3):
        claimed = task_claim(task_id=task.pk, worker_id=f"w{attempt}")
        assert claimed.lease.attempt == attempt
        task_fail(lease=claimed.lease, error=f"boom {attempt}")
        task.refresh_from_db()
        assert task.status == TaskStatus.FAILED
        if attempt < 3:
            delay = (task.next_retry_at - timezone.now()).total_seconds()
            ceiling = min(600, 30 * 2 ** (attempt - 1))
            assert ceiling / 2 - 1 <= delay <= ceiling  # exponential with jitter
            assert tasks_requeue_due() == 0  # not due yet
            Task.objects.filter(pk=task.pk).update(next_retry_at=timezone.now())
            assert tasks_requeue_due() == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.next_retry_at is None
    assert task.attempt == 3
    assert "boom 3" in task.error
    # The old attempt's lease cannot touch the finished task.
    with pytest.raises(StaleAttempt):
        task_complete(lease=claimed.lease)


def test_permanent_failure_does_not_retry(org, dag):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    task_fail(lease=claimed.lease, error="bad config", retryable=False)
    task.refresh_from_db()
    assert (task.status, task.next_retry_at, task.attempt) == ("Failed", None, 1)


def test_reaper_fails_expired_lease_and_retry_gets_new_attempt(org, dag):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="dead-worker")
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert tasks_reap_expired() == 1
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert "dead-worker stopped heartbeating" in task.error
    Task.objects.filter(pk=task.pk).update(next_retry_at=timezone.now())
    tasks_requeue_due()
    second = task_claim(task_id=task.pk, worker_id="w2")
    assert second.lease.attempt == 2
    with pytest.raises(StaleAttempt):  # the reaped attempt is fenced off
        task_complete(lease=claimed.lease)
    task_complete(lease=second.lease)
    task.refresh_from_db()
    assert task.status == TaskStatus.COMPLETED


def test_heartbeat_extends_lease(org, dag, settings):
    settings.TRACE_LEASE_SECONDS = 120
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() + timedelta(seconds=1))
    expires = task_heartbeat(lease=claimed.lease)
    assert expires > timezone.now() + timedelta(seconds=60)
    assert tasks_reap_expired() == 0


def test_max_concurrency_caps_running_tasks(org):
    dag_sync(
        org=org,
        activate=True,
        yaml_text="""
name: capped
jobs:
  - name: work
    activation: manual
    operator: noop
    outputs: 0
    scaling: {max_concurrency: 2}
""",
    )
    tasks = [job_run_manual(org=org, dag_name="capped", job_name="work") for _ in range(3)]
    first = [task_claim(task_id=t.pk, worker_id="w") for t in tasks]
    assert [c is not None for c in first] == [True, True, False]
    assert Task.objects.get(pk=tasks[2].pk).status == TaskStatus.QUEUED
    Outbox.objects.update(status=OutboxStatus.DONE)
    task_complete(lease=first[0].lease)
    # Finishing frees a slot and wakes the waiting task.
    assert Outbox.objects.filter(
        status=OutboxStatus.PENDING, kind="wake_task", payload__task_id=tasks[2].pk
    ).exists()
    assert task_claim(task_id=tasks[2].pk, worker_id="w") is not None


def test_outputs_are_validated_against_the_job(org, dag):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    with pytest.raises(ValidationFailed, match="out of range"):
        task_complete(lease=claimed.lease, outputs=[{"output": 3}])
    with pytest.raises(ValidationFailed, match="unknown field"):
        task_complete(lease=claimed.lease, outputs=[{"output": 0, "rows": 1}])
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING  # rejected whole, nothing half-written


@pytest.mark.parametrize(
    "output, where, message",
    [
        ({"output": True}, ".output", "must be an integer, got True"),
        ({"range_start": 1, "range_end": "x"}, ".range_end", "must be an integer, got 'x'"),
        ({"range_start": "5", "range_end": 7}, ".range_start", "must be an integer, got '5'"),
        ({"range_start": -1, "range_end": 7}, ".range_start", "must be >= 0"),
        ({"range_start": 7, "range_end": 7}, ".range_end", "must be above range_start"),
        ({"range_start": 7}, "", "range_start and range_end go together"),
        ({"range_start": 0, "range_end": 2**63}, ".range_end", f"must be <= {2**63 - 1}"),
        ({"partition_key": 5}, ".partition_key", "must be a string, got 5"),
        ({"partition_key": "k" * 201}, ".partition_key", "must be at most 200 characters"),
        ({"cursor": 10**30}, ".cursor", f"must be <= {2**63 - 1}"),
        ({"cursor": True}, ".cursor", "must be an integer, got True"),
        ({"cursor": {"block": 7}}, ".cursor", "must be an integer"),
        ({"cursor": -1}, ".cursor", "must be >= 0"),
        ({"attributes": ["a"]}, ".attributes", "must be a mapping"),
        ({"partition_key": "p", "publication": [{"location": "x"}]}, ".publication", "must be a"),
        ({"partition_key": "p", "publication": {"location": 5}}, ".publication.location", "must"),
        (
            {"partition_key": "p", "publication": {"row_count": "9"}},
            ".publication.row_count",
            "must",
        ),
        (
            {"partition_key": "p", "publication": {"config_hash": "c" * 65}},
            ".publication.config_hash",
            "must be at most 64 characters",
        ),
        ({"partition_key": "p", "publication": {"manifest": "m"}}, ".publication.manifest", "must"),
        ({"partition_key": "p", "publication": {"size": 1}}, ".publication.size", "unknown field"),
        ("not an object", "", "must be a mapping"),
    ],
)
def test_wrongly_typed_outputs_are_refused_naming_the_field(org, dag, output, where, message):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    with pytest.raises(ValidationFailed) as refused:
        task_complete(lease=claimed.lease, outputs=[{"output": 0}, output])
    assert any(e.startswith(f"outputs[1]{where}: {message}") for e in refused.value.details), (
        refused.value.details
    )
    with pytest.raises(ValidationFailed) as refused:
        task_events(lease=claimed.lease, events=[output])
    assert any(e.startswith(f"events[0]{where}") for e in refused.value.details)
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING
    assert not Outbox.objects.filter(kind="route_event").exists()  # nothing half-committed


def test_every_problem_of_a_report_is_listed_at_once(org, dag):
    claimed = task_claim(task_id=run(org).pk, worker_id="w1")
    with pytest.raises(ValidationFailed) as refused:
        task_events(
            lease=claimed.lease,
            events=[{"cursor": "x"}, {"type": "bogus"}, {"type": "invalidation", "output": 0}],
        )
    assert refused.value.details == [
        "events[0].cursor: must be an integer, got 'x'",
        "events[1]: type must be 'output' (the default) or 'invalidation'",
        "events[2]: an invalidation needs a range or a partition",
    ]


def test_outbox_row_that_keeps_failing_ends_failed_and_visible(org, dag, settings, monkeypatch):
    settings.TRACE_OUTBOX_MAX_TRIES = 3
    run(org)

    def broker_down(**kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr("trace_tasks.publisher.send_wake", broker_down)
    row = Outbox.objects.get(kind="wake_task")
    for expected_tries in (1, 2, 3):
        Outbox.objects.filter(pk=row.pk).update(available_at=timezone.now())
        assert outbox_drain() == 0
        row.refresh_from_db()
        assert row.tries == expected_tries
        assert "broker unreachable" in row.last_error
    assert row.status == OutboxStatus.FAILED


def test_capability_token_names_exactly_one_attempt(org, dag):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    capability = capability_token_verify(claimed.capability_token)
    assert capability.lease == claimed.lease
    assert capability.org_id == org.pk
    assert capability.claims["sub"] == f"task:{task.pk}"
    assert capability.claims["aud"] == "trace.task"


def test_publication_must_point_into_the_jobs_own_prefix(org, other_org, dag, settings):
    from trace_chain.object_store import object_store_from_url

    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    root = object_store_from_url(settings.TRACE_OBJECT_STORE_URL).uri()
    own = f"{root}orgs/{org.pk}/{task.job.dag_version.name}/{task.job.name}/"
    assert capability_token_verify(claimed.capability_token).claims["prefixes"] == [own]
    refused = (
        "file:///etc/",
        "s3://someone-elses-bucket/x/",
        f"{root}p/",  # inside the store, outside the job's prefix
        f"{root}orgs/{other_org.pk}/{task.job.dag_version.name}/{task.job.name}/p/",
        f"{own}../../../../etc/",
        f"{own}%2e%2e/%2e%2e/%2e%2e/{other_org.pk}/x/",  # what a reader may unquote to ..
        f"{own}p?x#y",
        f"{own}a//b/",
        f"{own}./p/",
    )
    for location in refused:
        with pytest.raises(ValidationFailed, match="outside the object store prefixes"):
            task_complete(
                lease=claimed.lease,
                outputs=[
                    {"output": 0, "partition_key": "p", "publication": {"location": location}}
                ],
            )
    task_complete(
        lease=claimed.lease,
        outputs=[{"output": 0, "partition_key": "p", "publication": {"location": f"{own}p/"}}],
    )
    assert Task.objects.get(pk=task.pk).status == TaskStatus.COMPLETED


CAPPED = """
name: capped
jobs:
  - name: work
    activation: manual
    operator: noop
    outputs: 0
    scaling: {max_concurrency: 1}
"""


def test_a_released_attempt_ends_canceled_and_frees_its_slot(org):
    dag_sync(org=org, activate=True, yaml_text=noop_dag())
    elsewhere = run(org)  # another job's queued task, older: not this slot's to take
    dag_sync(org=org, activate=True, yaml_text=CAPPED)
    first, waiting = (job_run_manual(org=org, dag_name="capped", job_name="work") for _ in "ab")
    claimed = task_claim(task_id=first.pk, worker_id="w1")
    assert task_claim(task_id=waiting.pk, worker_id="w2") is None  # the cap: one at a time
    Outbox.objects.update(status=OutboxStatus.DONE)
    released = task_release(lease=claimed.lease, reason="worker shutting down")
    task = Task.objects.get(pk=first.pk)
    assert (released.pk, released.status) == (first.pk, TaskStatus.CANCELED)
    assert (task.status, task.attempt, task.lease_token, task.lease_expires_at) == (
        TaskStatus.CANCELED,
        1,
        None,
        None,
    )
    assert task.next_retry_at is None and task.finished_at is not None
    last = task.transitions.last()
    assert (last.attempt, last.from_status, last.to_status) == (1, "Running", "Canceled")
    assert (last.reason, last.worker_id) == ("worker shutting down", "w1")
    assert Outbox.objects.filter(
        status=OutboxStatus.PENDING, kind="wake_task", payload__task_id=waiting.pk
    ).exists()
    assert not Outbox.objects.filter(
        status=OutboxStatus.PENDING, payload__task_id=elsewhere.pk
    ).exists()
    assert task_claim(task_id=waiting.pk, worker_id="w2") is not None
    with pytest.raises(StaleAttempt):  # fenced: the released attempt is over
        task_release(lease=claimed.lease, reason="again")
    assert Task.objects.get(pk=first.pk).transitions.count() == 3


def test_a_task_waiting_for_its_retry_is_run_now_not_retried(org, dag, settings):
    settings.TRACE_RETRY_BACKOFF_BASE_SECONDS = 600
    task = run(org)
    task_fail(lease=task_claim(task_id=task.pk, worker_id="w1").lease, error="boom")
    with pytest.raises(ValidationFailed) as refused:
        task_retry(task_id=task.pk, org_id=org.pk)
    assert str(refused.value) == (
        f"task {task.pk} is Failed (it waits for its automatic retry: use run-now to start it "
        "now); only a task that failed for good or was canceled can be retried"
    )
    ran = task_run_now(task_id=task.pk, org_id=org.pk)
    task.refresh_from_db()
    assert (ran.pk, task.status, task.attempt, task.next_retry_at) == (
        task.pk,
        TaskStatus.QUEUED,
        2,
        None,
    )
    assert task.transitions.last().reason == "run now"
    with pytest.raises(ValidationFailed) as refused:
        task_run_now(task_id=task.pk, org_id=org.pk)
    assert str(refused.value) == (
        f"task {task.pk} is Queued: it is already queued; only a Failed task waiting for its "
        "retry can be run now"
    )


def test_a_task_failed_for_good_or_canceled_is_retried_with_a_fresh_budget(org, dag):
    failed, canceled, running = run(org), run(org), run(org)
    lease = task_claim(task_id=failed.pk, worker_id="w1").lease
    task_fail(lease=lease, error="bad config", retryable=False)
    task_cancel(task_id=canceled.pk, org_id=org.pk)
    task_claim(task_id=running.pk, worker_id="w2")
    for task in (failed, canceled):
        retried = task_retry(task_id=task.pk, org_id=org.pk, reason="fixed it")
        task.refresh_from_db()
        assert (retried.pk, task.status, task.attempt) == (task.pk, TaskStatus.QUEUED, 2)
        assert task.max_attempts == 4  # attempt 2 and the job's two automatic retries after it
        assert task.transitions.last().reason == "fixed it"
    with pytest.raises(ValidationFailed) as refused:
        task_retry(task_id=running.pk, org_id=org.pk)
    assert str(refused.value) == (
        f"task {running.pk} is Running; only a task that failed for good or was canceled can "
        "be retried"
    )
    with pytest.raises(ValidationFailed, match="it is running; only a Failed task waiting"):
        task_run_now(task_id=running.pk, org_id=org.pk)
    task_cancel(task_id=canceled.pk, org_id=org.pk)
    with pytest.raises(ValidationFailed, match=r"Canceled: it has finished \(retry it instead\)"):
        task_run_now(task_id=canceled.pk, org_id=org.pk)


def test_an_operator_acts_only_on_its_own_orgs_tasks(org, other_org, dag):
    task = run(org)
    task_cancel(task_id=task.pk, org_id=org.pk)
    for action in (task_retry, task_run_now):
        for task_id, org_id in ((task.pk, other_org.pk), (task.pk + 1000, org.pk)):
            with pytest.raises(NotFound) as missing:
                action(task_id=task_id, org_id=org_id)
            assert str(missing.value) == f"no task {task_id}"
    task.refresh_from_db()
    assert (task.status, task.attempt) == (TaskStatus.CANCELED, 1)


def test_only_the_current_lease_passes_the_lease_check_and_locks_the_row(org, dag):
    task = run(org)
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    assert task_lease_check(lease=claimed.lease) is None
    assert task_lock_current(lease=claimed.lease).pk == task.pk
    wrong = Lease(task.pk, 1, str(uuid.uuid4()))
    task_complete(lease=claimed.lease)
    for lease in (claimed.lease, wrong):
        with pytest.raises(StaleAttempt) as stale:
            task_lease_check(lease=lease)
        assert str(stale.value) == f"task {task.pk} attempt 1: lease is not current"
        with pytest.raises(StaleAttempt, match=f"task {task.pk} attempt 1: lease is not current"):
            task_lock_current(lease=lease)

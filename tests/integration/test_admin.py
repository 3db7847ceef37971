"""The admin as an operator uses it, through Django's test client: changelist POSTs with an
action name cancel, retry and run tasks and jobs, activate and roll back DAG versions. Every
action goes through the services, so the state and the recorded transitions are asserted; a
refusal is an error message on the page, never a 500."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from tests.dags import noop_dag
from trace_web.orchestration.models import (
    DagPointer,
    DagVersion,
    Job,
    Outbox,
    OutboxKind,
    Task,
    TaskStatus,
)
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual, sources_monitor
from trace_web.orchestration.services.tasks import (
    task_claim,
    task_complete,
    task_fail,
    tasks_requeue_due,
)

ALWAYS_ON = """
name: sources
jobs:
  - name: follow
    activation: source
    source: {kind: always_on}
    operator: noop
    outputs: 0
"""


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def admin_client(db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def dag(org):
    return dag_sync(org=org, yaml_text=noop_dag(), activate=True).version


def act(client, model: str, action: str, *rows):
    """POST the changelist form as the admin's action bar does; returns the messages shown."""
    response = client.post(
        f"/admin/{model}/",
        {"action": action, "_selected_action": [str(r.pk) for r in rows]},
        follow=True,  # the changelist shows (and so consumes) the messages
    )
    assert [code for _, code in response.redirect_chain] == [302]
    assert response.status_code == 200, response.content[:500]
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def transitions(task):
    return [(t.attempt, t.from_status, t.to_status, t.reason) for t in task.transitions.all()]


def wakes(task):
    return Outbox.objects.filter(kind=OutboxKind.WAKE_TASK, payload__task_id=task.pk).count()


def fail_for_good(task, error="boom"):
    claimed = task_claim(task_id=task.pk, worker_id="w1")
    task_fail(lease=claimed.lease, error=error, retryable=False)
    task.refresh_from_db()
    return task


def test_cancel_a_queued_task(admin_client, org, dag):
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    shown = act(admin_client, "orchestration/task", "cancel", task)
    task.refresh_from_db()
    assert task.status == TaskStatus.CANCELED
    assert transitions(task)[-1] == (1, "Queued", "Canceled", "canceled by root (admin)")
    assert shown == [("success", f"task {task.pk} (extract): canceled")]


def test_retry_of_a_task_that_failed_for_good_queues_a_new_attempt_with_a_fresh_budget(
    admin_client, org, dag
):
    task = fail_for_good(job_run_manual(org=org, dag_name="chain", job_name="extract"))
    assert task.error == "boom" and task.finished_at is not None
    before = wakes(task)
    shown = act(admin_client, "orchestration/task", "retry", task)
    task.refresh_from_db()
    assert task.status == TaskStatus.QUEUED
    assert task.attempt == 2
    assert task.max_attempts == 1 + 3  # the new attempt and the job's 2 automatic retries
    assert task.error == "" and task.finished_at is None
    assert transitions(task)[-1] == (2, "Failed", "Queued", "retried by root (admin)")
    assert "failed for good" in transitions(task)[-2][3]  # attempt 1's error stays here
    assert wakes(task) == before + 1  # the wake-up is in the outbox, same transaction
    assert shown == [("success", f"task {task.pk} (extract): queued as attempt 2 of 4")]
    # The new attempt runs as any other.
    claimed = task_claim(task_id=task.pk, worker_id="w2")
    assert claimed.lease.attempt == 2


def test_retry_of_a_canceled_task(admin_client, org, dag):
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    act(admin_client, "orchestration/task", "cancel", task)
    act(admin_client, "orchestration/task", "retry", task)
    task.refresh_from_db()
    assert (task.status, task.attempt) == (TaskStatus.QUEUED, 2)
    assert [t[1:3] for t in transitions(task)] == [
        ("", "Queued"),
        ("Queued", "Canceled"),
        ("Canceled", "Queued"),
    ]


def test_refusals_are_error_messages_and_change_nothing(admin_client, org, dag):
    done = job_run_manual(org=org, dag_name="chain", job_name="extract")
    task_complete(lease=task_claim(task_id=done.pk, worker_id="w").lease)
    queued = job_run_manual(org=org, dag_name="chain", job_name="extract")
    shown = act(admin_client, "orchestration/task", "retry", done, queued)
    assert [level for level, _ in shown] == ["error", "error"]
    assert any(f"task {done.pk} is Completed" in text for _, text in shown)
    assert any(f"task {queued.pk} is Queued" in text for _, text in shown)
    shown = act(admin_client, "orchestration/task", "cancel", done)
    assert shown == [
        ("error", f"task {done.pk} (extract): task {done.pk} already finished (Completed)")
    ]
    shown = act(admin_client, "orchestration/task", "run_now", queued)
    assert shown[0][0] == "error" and "already queued" in shown[0][1]
    for task in (done, queued):
        before = transitions(task)
        task.refresh_from_db()
        assert transitions(task) == before
    assert Task.objects.get(pk=done.pk).status == TaskStatus.COMPLETED
    assert Task.objects.get(pk=queued.pk).status == TaskStatus.QUEUED


def test_run_now_requeues_a_failed_task_waiting_for_its_backoff(admin_client, org, dag, settings):
    settings.TRACE_RETRY_BACKOFF_BASE_SECONDS = 600
    settings.TRACE_RETRY_BACKOFF_MAX_SECONDS = 600
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    task_fail(lease=task_claim(task_id=task.pk, worker_id="w1").lease, error="flaky")
    task.refresh_from_db()
    assert task.next_retry_at > timezone.now()
    assert tasks_requeue_due() == 0  # not due for minutes
    shown = act(admin_client, "orchestration/task", "run_now", task)
    task.refresh_from_db()
    assert (task.status, task.attempt, task.next_retry_at) == (TaskStatus.QUEUED, 2, None)
    assert task.max_attempts == 3  # the automatic budget, unchanged
    assert transitions(task)[-1] == (2, "Failed", "Queued", "run now by root (admin)")
    assert shown == [("success", f"task {task.pk} (extract): queued as attempt 2")]


def test_a_task_completed_on_attempt_2_shows_no_error_of_attempt_1(org, dag):
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    task_fail(lease=task_claim(task_id=task.pk, worker_id="w1").lease, error="attempt 1 broke")
    Task.objects.filter(pk=task.pk).update(next_retry_at=timezone.now())
    assert tasks_requeue_due() == 1
    task.refresh_from_db()
    assert task.error == ""  # cleared when the next attempt was queued
    task_complete(lease=task_claim(task_id=task.pk, worker_id="w2").lease)
    task.refresh_from_db()
    assert (task.status, task.attempt, task.error) == (TaskStatus.COMPLETED, 2, "")
    assert any("attempt 1 broke" in reason for *_, reason in transitions(task))


def test_job_actions_run_cancel_and_retry_its_tasks(admin_client, org, dag):
    extract = Job.objects.get(name="extract")
    shown = act(admin_client, "orchestration/job", "run_now", extract)
    run = Task.objects.get(job=extract)
    assert (run.trigger, run.status) == ("manual", TaskStatus.QUEUED)
    assert shown == [("success", f"{extract}: task {run.pk} queued")]

    running = job_run_manual(org=org, dag_name="chain", job_name="extract")
    claimed = task_claim(task_id=running.pk, worker_id="w1")
    failed = fail_for_good(job_run_manual(org=org, dag_name="chain", job_name="extract"))
    shown = act(admin_client, "orchestration/job", "cancel_tasks", extract)
    assert shown == [("success", f"{extract}: 2 live task(s) canceled")]
    statuses = dict(Task.objects.filter(job=extract).values_list("pk", "status"))
    assert statuses == {
        run.pk: TaskStatus.CANCELED,
        running.pk: TaskStatus.CANCELED,
        failed.pk: TaskStatus.FAILED,
    }
    assert Task.objects.get(pk=running.pk).lease_token is None  # the worker's lease is gone
    assert claimed.lease.lease_token

    shown = act(admin_client, "orchestration/job", "retry_tasks", extract)
    assert shown == [("success", f"{extract}: 1 failed task(s) queued again")]
    failed.refresh_from_db()
    assert (failed.status, failed.attempt) == (TaskStatus.QUEUED, 2)
    assert Task.objects.get(pk=run.pk).status == TaskStatus.CANCELED  # canceled: left alone


def test_job_actions_refuse_old_versions_and_always_on_sources(admin_client, org, dag):
    dag_sync(org=org, yaml_text=noop_dag(extract_config="{sleep_seconds: 0}"), activate=True)
    old = Job.objects.get(name="extract", dag_version__version=1)
    shown = act(admin_client, "orchestration/job", "run_now", old)
    assert shown[0][0] == "error" and "v2 is active" in shown[0][1]
    dag_sync(org=org, yaml_text=ALWAYS_ON, activate=True)
    assert sources_monitor() == 1
    follow = Job.objects.get(name="follow")
    for action in ("run_now", "retry_tasks"):
        shown = act(admin_client, "orchestration/job", action, follow)
        assert shown[0][0] == "error" and "always_on" in shown[0][1], shown
    assert not Task.objects.filter(job=old).exists()
    assert Task.objects.filter(job=follow).count() == 1  # still the monitor's one singleton
    task = Task.objects.get(job=follow)
    act(admin_client, "orchestration/task", "cancel", task)
    shown = act(admin_client, "orchestration/task", "retry", task)
    assert shown[0][0] == "error" and "source monitor" in shown[0][1]


def test_activate_and_roll_back_dag_versions_with_the_active_one_listed(admin_client, org, dag):
    v2 = dag_sync(org=org, yaml_text=noop_dag(extract_config="{sleep_seconds: 0}")).version
    listing = admin_client.get("/admin/orchestration/dagversion/")
    assert listing.status_code == 200
    shown = act(admin_client, "orchestration/dagversion", "activate", v2)
    assert shown == [("success", f"{v2}: v2 is the active version of 'chain'")]
    pointer = DagPointer.objects.get(org=org, name="chain")
    assert (pointer.current_id, pointer.previous_id) == (v2.pk, dag.pk)
    assert pointer.updated_by.username == "root"

    listing = admin_client.get("/admin/orchestration/dagversion/")
    admin_view = listing.context["cl"]
    active = {v.version: admin_view.model_admin.is_active(v) for v in admin_view.result_list}
    assert active == {1: False, 2: True}
    assert 'alt="True"' in listing.content.decode()

    shown = act(admin_client, "orchestration/dagversion", "roll_back", v2)
    assert shown == [("success", "DAG acme:chain: rolled back to v1")]
    assert DagPointer.objects.get(org=org, name="chain").current_id == dag.pk


def test_roll_back_without_a_previous_version_is_an_error_message(admin_client, org, dag):
    shown = act(admin_client, "orchestration/dagversion", "roll_back", dag)
    assert shown == [
        ("error", "DAG acme:chain: DAG 'chain' has no previous version to roll back to")
    ]
    assert DagPointer.objects.get(org=org, name="chain").current_id == dag.pk


def test_actions_need_the_change_permission(org, dag):
    staff = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(
        Permission.objects.get(codename="view_task"),
        Permission.objects.get(codename="view_dagversion"),
    )
    client = Client()
    client.force_login(staff)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    assert client.get("/admin/orchestration/task/").status_code == 200
    v2 = dag_sync(org=org, yaml_text=noop_dag(extract_config="{sleep_seconds: 0}")).version
    for model, action, row in (("task", "cancel", task), ("dagversion", "activate", v2)):
        response = client.post(
            f"/admin/orchestration/{model}/", {"action": action, "_selected_action": [row.pk]}
        )
        assert response.status_code == 200  # the list again: it offers this user no action
        assert action not in response.context["cl"].model_admin.get_actions(response.wsgi_request)
    assert Task.objects.get(pk=task.pk).status == TaskStatus.QUEUED
    assert DagPointer.objects.get(org=org, name="chain").current_id == dag.pk
    staff.user_permissions.add(Permission.objects.get(codename="change_task"))
    client.force_login(get_user_model().objects.get(pk=staff.pk))
    act(client, "orchestration/task", "cancel", task)
    assert Task.objects.get(pk=task.pk).status == TaskStatus.CANCELED


def test_labels(admin_client):
    index = admin_client.get("/admin/").content.decode()
    assert "Outbox rows" in index and "Outboxs" not in index
    assert "Chain sync" in index and "Chain_Sync" not in index
    assert DagVersion._meta.app_config.verbose_name == "Orchestration"


def test_chain_sync_action_schedules_failed_ranges_again(admin_client, org):
    from trace_web.chain_sync.models import ChainSync, RangeStatus, ScheduledRange
    from trace_web.chain_sync.services import chain_sync_apply, chain_sync_plan

    chain_sync_apply(
        org=org,
        yaml_text="""
kind: chain_sync
name: history
chain_id: 31337
mode: fixed_target
from_block: 0
to_block: 10
streams:
  - {dataset: blocks, chunk_size: 10, max_inflight: 1, rpc_pool: devchain}
""",
    )
    chain_sync_plan()
    failed = fail_for_good(Task.objects.get(pk=ScheduledRange.objects.get().task_id))
    chain_sync_plan()
    assert ScheduledRange.objects.get().status == RangeStatus.FAILED
    shown = act(
        admin_client, "chain_sync/chainsync", "retry_failed_ranges", ChainSync.objects.get()
    )
    assert shown == [("success", "acme:history: 1 failed range(s) scheduled again")]
    scheduled = ScheduledRange.objects.get()
    assert scheduled.status == RangeStatus.SCHEDULED and scheduled.task_id != failed.pk
    assert Task.objects.get(pk=scheduled.task_id).status == TaskStatus.QUEUED

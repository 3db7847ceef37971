"""Sources and task-scoped endpoints: webhook (secret per source), manual runs, cron schedules
in beat's tables, always_on singletons, and the capability-token HTTP API."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from tests.dags import noop_dag
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual, sources_monitor
from trace_web.orchestration.services.tasks import task_claim, task_fail

SOURCES = """
name: sources
jobs:
  - name: hook
    activation: source
    source: {kind: webhook}
    operator: noop
    outputs: 0
  - name: nightly
    activation: source
    source: {kind: cron, schedule: "30 2 * * *"}
    operator: noop
    outputs: 0
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
def sources_dag(org):
    return dag_sync(org=org, yaml_text=SOURCES, activate=True).version


def test_webhook_with_bad_secret_is_401_and_creates_nothing(sources_dag, api, org):
    secret = api.post("/v1/dags/sources/jobs/hook/webhook-secret").json()
    url = secret["url"]
    anonymous = APIClient()
    for header in ({}, {"HTTP_X_TRACE_WEBHOOK_SECRET": "wrong"}):
        response = anonymous.post(url, {"a": 1}, format="json", **header)
        assert response.status_code == 401
    assert not Task.objects.filter(job__name="hook").exists()
    ok = anonymous.post(url, {"a": 1}, format="json", HTTP_X_TRACE_WEBHOOK_SECRET=secret["secret"])
    assert ok.status_code == 202
    task = Task.objects.get(pk=ok.json()["task_id"])
    assert (task.trigger, task.payload, task.status) == ("webhook", {"a": 1}, "Queued")


def test_webhook_takes_json_only(sources_dag, api):
    secret = api.post("/v1/dags/sources/jobs/hook/webhook-secret").json()
    anonymous = APIClient()
    headers = {"HTTP_X_TRACE_WEBHOOK_SECRET": secret["secret"]}
    form = anonymous.post(secret["url"], {"a": "1"}, **headers)  # multipart form
    assert form.status_code == 415
    upload = anonymous.post(secret["url"], {"f": io.BytesIO(b"data")}, **headers)
    assert upload.status_code == 415
    broken = anonymous.generic(
        "POST", secret["url"], b"{not json", content_type="application/json", **headers
    )
    assert broken.status_code == 400
    # A wrong secret is a 401 whatever the body, before the body is even parsed.
    wrong = {"HTTP_X_TRACE_WEBHOOK_SECRET": "wrong"}
    assert anonymous.post(secret["url"], {"a": "1"}, **wrong).status_code == 401
    assert (
        anonymous.generic(
            "POST", secret["url"], b"{not json", content_type="application/json", **wrong
        ).status_code
        == 401
    )
    assert not Task.objects.filter(job__name="hook").exists()
    listed = anonymous.post(secret["url"], [1, 2], format="json", **headers)
    assert Task.objects.get(pk=listed.json()["task_id"]).payload == {"body": [1, 2]}


def test_webhook_secret_rotation_needs_admin(sources_dag, client_for, org):
    member = client_for(org, "member")
    assert member.post("/v1/dags/sources/jobs/hook/webhook-secret").status_code == 403


def test_manual_run_by_command_and_api(org, api, capsys):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    call_command("run_job", "chain", "extract", "--org", org.slug, "--range", "100:200")
    assert "queued" in capsys.readouterr().out
    by_command = Task.objects.get(trigger="manual")
    assert (by_command.range_start, by_command.range_end) == (100, 200)
    response = api.post(
        "/v1/dags/chain/jobs/extract/runs",
        {"payload": {"k": "v"}, "scope": {"partition_key": "p1"}},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["partition_key"] == "p1"
    bad = api.post(
        "/v1/dags/chain/jobs/extract/runs",
        {"scope": {"range_start": 5, "range_end": 5}},
        format="json",
    )
    assert bad.status_code == 400 and "end is exclusive" in bad.json()["detail"]
    assert api.post("/v1/dags/chain/jobs/nope/runs", {}, format="json").status_code == 404


def test_cron_job_becomes_an_editable_beat_entry(sources_dag, org):
    entry = PeriodicTask.objects.get(name=f"cron:{org.slug}:sources:nightly")
    assert entry.task == "trace.dispatch.source_fire"
    assert (entry.crontab.minute, entry.crontab.hour) == ("30", "2")
    assert json.loads(entry.kwargs) == {
        "org_id": org.pk,
        "dag_name": "sources",
        "job_name": "nightly",
    }
    # A new version without the cron job removes its schedule.
    dag_sync(org=org, yaml_text=SOURCES.split("  - name: nightly")[0], activate=True)
    assert not PeriodicTask.objects.filter(name__startswith="cron:").exists()


def test_always_on_monitor_keeps_exactly_one_live_task(sources_dag, settings):
    settings.TRACE_SOURCE_RESTART_SECONDS = 0
    assert sources_monitor() == 1
    assert sources_monitor() == 0  # already alive
    task = Task.objects.get(job__name="follow")
    claimed = task_claim(task_id=task.pk, worker_id="w")
    assert sources_monitor() == 0  # running
    Task.objects.filter(pk=task.pk).update(max_attempts=1)
    task_fail(lease=claimed.lease, error="crashed")
    assert sources_monitor() == 1  # restarted with a new task
    assert Task.objects.filter(job__name="follow", status="Queued").count() == 1


def test_always_on_of_a_deactivated_version_is_stopped(sources_dag, org, settings):
    settings.TRACE_SOURCE_RESTART_SECONDS = 0
    sources_monitor()
    old = Task.objects.get(job__name="follow")
    dag_sync(org=org, yaml_text=SOURCES + "    config: {v: 2}\n", activate=True)
    sources_monitor()
    old.refresh_from_db()
    assert old.status == "Canceled"
    live = Task.objects.filter(job__name="follow", status="Queued")
    assert live.count() == 1 and live.get().job.dag_version.version == 2


def test_task_endpoints_with_capability_token(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    claimed = task_claim(task_id=task.pk, worker_id="udf-runtime")
    client = APIClient()
    assert client.post("/v1/task/heartbeat").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")
    assert client.post("/v1/task/heartbeat").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {claimed.capability_token}")
    assert client.post("/v1/task/heartbeat").status_code == 200
    events = client.post(
        "/v1/task/events",
        {"events": [{"output": 0, "partition_key": "blk-1", "cursor": 1}]},
        format="json",
    )
    assert events.status_code == 200
    assert events.json()["accepted"][0]["partition_key"] == "blk-1"
    bad = client.post("/v1/task/events", {"events": [{"output": 7}]}, format="json")
    assert bad.status_code == 400
    done = client.post("/v1/task/complete", {}, format="json")
    assert done.json()["status"] == "Completed"
    # The attempt is over: the same token can change nothing any more.
    assert client.post("/v1/task/heartbeat").status_code == 409
    assert client.post("/v1/task/complete", {}, format="json").status_code == 409
    task.refresh_from_db()
    assert task.finished_at <= timezone.now()


def test_task_list_filters_and_refuses_bad_parameters(org, api):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    for _ in range(3):
        assert api.post("/v1/dags/chain/jobs/extract/runs", {}, format="json").status_code == 201
    listed = api.get("/v1/tasks", {"job": "extract", "status": "Queued", "limit": 2}).json()
    assert len(listed) == 2 and {t["job"] for t in listed} == {"extract"}
    assert api.get("/v1/tasks", {"status": "Running"}).json() == []
    for bad in ({"limit": "abc"}, {"limit": -1}, {"limit": 5000}, {"status": "Sleeping"}):
        response = api.get("/v1/tasks", bad)
        assert response.status_code == 400, bad
        (error,) = response.json()["errors"]
        assert error.startswith(f"{next(iter(bad))}: ")


@pytest.mark.parametrize(
    "body, problem",
    [
        (b'{"a": "x\\u0000y"}', "NUL"),
        (b'{"a": "\\ud800"}', "surrogates"),
        (b'{"a": 1e999}', "finite"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_webhook_bodies_postgres_cannot_store_are_a_400(sources_dag, api, body, problem):
    secret = api.post("/v1/dags/sources/jobs/hook/webhook-secret").json()
    response = APIClient().generic(
        "POST",
        secret["url"],
        body,
        content_type="application/json",
        HTTP_X_TRACE_WEBHOOK_SECRET=secret["secret"],
    )
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error" and problem in response.json()["detail"]
    assert not Task.objects.filter(job__name="hook").exists()


def test_a_nul_in_the_webhook_path_is_no_such_webhook(sources_dag, api):
    response = APIClient().post("/v1/hooks/ac%00me/sources/hook", {}, format="json")
    assert (response.status_code, response.json()["error"]) == (404, "not_found"), response.json()

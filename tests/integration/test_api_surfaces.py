"""What a user reaches for after the first deploy: the `/` page, API docs served from our own
static files, a DAG described in one call, the org's chain syncs, paging and time filters on
the task list, and `trace tasks` in a shell. Each read is scoped to the caller's org."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from tests.dags import noop_dag
from trace_web.chain_sync.services import chain_sync_apply
from trace_web.orchestration.models import Task, TaskStatus
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import task_claim, task_fail
from trace_web.orgs.models import Role

CHAIN_SYNC = """
kind: chain_sync
name: {name}
chain_id: 31337
mode: fixed_target
from_block: 0
to_block: 25
streams:
  - {{dataset: blocks, chunk_size: 10, max_inflight: 2, rpc_pool: devchain}}
"""


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def next_link(response) -> str | None:
    header = response.headers.get("Link")
    if header is None:
        return None
    match = re.fullmatch(r'<(http://testserver(/[^>]+))>; rel="next"', header)
    assert match, header
    return match.group(2)


# --- the / page and the docs ---------------------------------------------------------------


def test_home_page_links_every_surface(settings, db):
    settings.TRACE_FLOWER_URL = "http://flower.example:5566/"
    response = Client().get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    for href in (
        "/admin/",
        "/v1/schema/docs/",
        "/v1/schema/redoc/",
        "/v1/schema/",
        "http://flower.example:5566/",
        "/metrics",
    ):
        assert f'href="{href}"' in page, href
    assert Client().post("/").status_code == 405


@pytest.mark.parametrize(
    ("page", "script"),
    [
        ("/v1/schema/docs/", "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"),
        ("/v1/schema/redoc/", "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"),
    ],
)
def test_api_docs_load_their_scripts_from_this_server(db, page, script):
    client = Client()
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    sources = re.findall(r'src="([^"]+)"', html)
    assert f"/static/{script}" in sources
    assert all(src.startswith("/static/") for src in sources), sources  # no CDN, works offline
    served = client.get(f"/static/{script}")
    assert served.status_code == 200
    assert len(b"".join(served.streaming_content)) > 10_000


# --- GET /v1/dags/{name} -------------------------------------------------------------------


def test_dag_detail_describes_versions_active_jobs_and_yaml(org, api):
    first = noop_dag()
    dag_sync(org=org, yaml_text=first, activate=True)
    dag_sync(org=org, yaml_text=noop_dag(extract_config="{sleep_seconds: 0}"))
    body = api.get("/v1/dags/chain").json()
    assert body["name"] == "chain"
    assert (body["active_version"], body["latest_version"], body["shown_version"]) == (1, 2, 1)
    assert [(v["version"], v["active"]) for v in body["versions"]] == [(2, False), (1, True)]
    assert body["yaml"] == first
    jobs = {job["name"]: job for job in body["jobs"]}
    assert set(jobs) == {"extract", "transform"}
    assert jobs["transform"]["activation"] == "reactive"
    assert jobs["transform"]["inputs"] == [
        {"from_job": "extract", "from_output": 0, "from_dataset": None, "where": {}}
    ]
    shown = api.get("/v1/dags/chain", {"version": 2}).json()
    assert shown["shown_version"] == 2 and "sleep_seconds: 0" in shown["yaml"]
    assert api.get("/v1/dags/chain", {"version": 9}).status_code == 404
    for bad in ("abc", "0", str(2**70)):
        refused = api.get("/v1/dags/chain", {"version": bad})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid"


def test_dag_detail_without_an_active_version_shows_the_latest(org, api):
    dag_sync(org=org, yaml_text=noop_dag())
    body = api.get("/v1/dags/chain").json()
    assert (body["active_version"], body["shown_version"]) == (None, 1)
    assert all(not v["active"] for v in body["versions"])


def test_another_orgs_dag_is_a_404_that_leaks_nothing(org, other_org, client_for):
    dag_sync(org=other_org, yaml_text=noop_dag("secret-dag"), activate=True)
    acme = client_for(org, Role.VIEWER)
    response = acme.get("/v1/dags/secret-dag")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no DAG named 'secret-dag'"}
    assert acme.get("/v1/dags/secret-dag", {"version": 1}).status_code == 404


# --- GET /v1/chain-syncs -------------------------------------------------------------------


def test_chain_sync_list_is_the_orgs_own_with_a_summary(org, other_org, client_for):
    chain_sync_apply(org=org, yaml_text=CHAIN_SYNC.format(name="history"))
    chain_sync_apply(org=other_org, yaml_text=CHAIN_SYNC.format(name="theirs"))
    acme = client_for(org, Role.VIEWER)
    body = acme.get("/v1/chain-syncs").json()
    assert [s["name"] for s in body] == ["history"]
    summary = body[0]
    assert summary["mode"] == "fixed_target" and summary["plan_target"] == 25
    assert (summary["streams"], summary["done_blocks"], summary["complete"]) == (1, 0, False)
    assert acme.get("/v1/chain-syncs/theirs").status_code == 404
    assert (
        client_for(other_org, Role.VIEWER, username="g").get("/v1/chain-syncs").json()[0]["name"]
        == "theirs"
    )


# --- GET /v1/tasks: cursor paging and time filters -----------------------------------------


def test_task_list_pages_with_a_next_link_until_the_last_page(org, other_org, api):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dag_sync(org=other_org, yaml_text=noop_dag(), activate=True)
    ours = [job_run_manual(org=org, dag_name="chain", job_name="extract").pk for _ in range(5)]
    job_run_manual(org=other_org, dag_name="chain", job_name="extract")  # never listed
    seen, url, pages = [], "/v1/tasks?limit=2&status=Queued", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        seen += [t["id"] for t in response.json()]
        url, pages = next_link(response), pages + 1
        if url:
            assert "status=Queued" in url and "limit=2" in url  # the same query, next page
    assert seen == sorted(ours, reverse=True)
    assert pages == 3  # 2 + 2 + 1: the short last page has no Link
    assert api.get(f"/v1/tasks?before_id={ours[2]}").json()[0]["id"] == ours[1]


def test_task_list_time_filters(org, api):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    old, recent = (job_run_manual(org=org, dag_name="chain", job_name="extract") for _ in "ab")
    Task.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    cutoff = (timezone.now() - timedelta(days=1)).isoformat()
    after = api.get("/v1/tasks", {"created_after": cutoff}).json()
    before = api.get("/v1/tasks", {"created_before": cutoff}).json()
    assert [t["id"] for t in after] == [recent.pk]
    assert [t["id"] for t in before] == [old.pk]


@pytest.mark.parametrize(
    "query",
    [
        {"before_id": "0"},
        {"before_id": str(2**70)},
        {"before_id": "x"},
        {"created_after": "yesterday"},
        {"created_after": "9999-12-31T23:59:59-05:00"},  # beyond the last representable UTC
        {"created_before": "2026-13-01T00:00:00"},
    ],
)
def test_bad_task_list_parameters_are_a_400_naming_the_field(org, api, query):
    response = api.get("/v1/tasks", query)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert body["errors"][0].startswith(f"{next(iter(query))}: ")


# --- trace tasks -----------------------------------------------------------------------------


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("tasks", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_tasks_command_lists_cancels_retries_and_runs_now(org, other_org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dag_sync(org=other_org, yaml_text=noop_dag(), activate=True)
    queued = job_run_manual(org=org, dag_name="chain", job_name="extract")
    failing = job_run_manual(org=org, dag_name="chain", job_name="extract")
    task_fail(lease=task_claim(task_id=failing.pk, worker_id="w").lease, error="rpc went away")
    theirs = job_run_manual(org=other_org, dag_name="chain", job_name="extract")

    out, _ = run_cli("list", "--org", org.slug)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "DAG.JOB", "STATUS"]
    assert [int(line.split()[0]) for line in lines[1:]] == [failing.pk, queued.pk]
    assert "rpc went away" in lines[1] and "1/3" in lines[1]
    out, _ = run_cli("list", "--org", org.slug, "--limit", "1")
    assert out.splitlines()[-1] == f"more: --before-id {failing.pk}"
    out, _ = run_cli("list", "--org", org.slug, "--status", "Queued")
    assert [int(line.split()[0]) for line in out.splitlines()[1:]] == [queued.pk]

    out, _ = run_cli("run-now", str(failing.pk), "--org", org.slug)
    assert out.strip() == f"task {failing.pk}: Queued, attempt 2"
    out, _ = run_cli("cancel", str(queued.pk), "--org", org.slug)
    assert out.strip() == f"task {queued.pk}: Canceled, attempt 1"
    out, _ = run_cli("retry", str(queued.pk), "--org", org.slug)
    assert out.strip() == f"task {queued.pk}: Queued, attempt 2"
    queued.refresh_from_db()
    assert queued.transitions.last().reason.startswith("retried by ")
    assert queued.transitions.last().reason.endswith("(trace tasks)")

    # Another org's task is not found; a refusal is a message and a failing exit.
    with pytest.raises(CommandError, match="1 of 2 task"):
        run_cli("cancel", str(theirs.pk), str(failing.pk), "--org", org.slug)
    theirs.refresh_from_db()
    assert theirs.status == TaskStatus.QUEUED
    assert Task.objects.get(pk=failing.pk).status == TaskStatus.CANCELED


def test_tasks_command_refusals_name_the_task(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    queued = job_run_manual(org=org, dag_name="chain", job_name="extract")
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("tasks", "retry", str(queued.pk), "--org", org.slug, stderr=err)
    assert err.getvalue().startswith(f"task {queued.pk}: task {queued.pk} is Queued")
    for bad, message in (
        (["--created-after", "soon"], "--created-after: Datetime has wrong format"),
        (["--before-id", str(2**70)], "--before-id: "),
        (["--limit", "0"], "--limit: "),
        (["--dag", "a\x00"], "--dag: "),
    ):
        with pytest.raises(CommandError, match=message):
            call_command("tasks", "list", "--org", org.slug, *bad)
    with pytest.raises(CommandError):
        call_command("tasks", "cancel", "0", "--org", org.slug)
    for slug in ("nope", "ac\x00me", "a" * 300):
        with pytest.raises(CommandError, match="no org"):
            call_command("tasks", "list", "--org", slug)
        with pytest.raises(CommandError, match="no org"):
            call_command("chain_sync", "status", "--job", "x", "--org", slug)

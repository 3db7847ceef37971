"""Tenancy and roles: a user of one org sees and changes nothing of another, through any
endpoint; roles gate writes; the OpenAPI schema is served."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.dags import noop_dag
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orgs.models import Role


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def globex_task(other_org):
    dag_sync(org=other_org, yaml_text=noop_dag("secret-dag"), activate=True)
    return job_run_manual(org=other_org, dag_name="secret-dag", job_name="extract")


def test_org_a_cannot_see_or_touch_org_b(org, other_org, globex_task, client_for):
    acme = client_for(org, Role.ADMIN)
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    assert [d["name"] for d in acme.get("/v1/dags").json()] == ["chain"]
    assert acme.get("/v1/dags/secret-dag/versions").status_code == 404
    assert all(t["dag"] != "secret-dag" for t in acme.get("/v1/tasks").json())
    assert acme.get(f"/v1/tasks/{globex_task.pk}").status_code == 404
    assert acme.post(f"/v1/tasks/{globex_task.pk}/cancel").status_code == 404
    assert acme.put("/v1/dags/secret-dag/active", {"version": 1}, format="json").status_code == 404
    assert acme.post("/v1/dags/secret-dag/jobs/extract/runs", {}, format="json").status_code == 404
    assert all(d["dag"] != "secret-dag" for d in acme.get("/v1/datasets").json())
    # Deploying a DAG of the same name creates acme's own, leaving globex's alone.
    acme.post("/v1/dags/secret-dag/versions", {"yaml": noop_dag("secret-dag")}, format="json")
    globex_task.refresh_from_db()
    assert globex_task.status == "Queued"
    assert Task.objects.filter(org=other_org).count() == 1


def test_org_header_cannot_reach_an_org_you_are_not_in(org, other_org, client_for):
    acme = client_for(org, Role.ADMIN)
    response = acme.get("/v1/tasks", HTTP_X_TRACE_ORG=other_org.slug)
    assert response.status_code == 403


def test_roles_gate_writes(org, client_for):
    viewer = client_for(org, Role.VIEWER)
    member = client_for(org, Role.MEMBER)
    denied = viewer.post("/v1/dags/chain/versions", {"yaml": noop_dag()}, format="json")
    assert denied.status_code == 403
    assert (
        member.post(
            "/v1/dags/chain/versions", {"yaml": noop_dag(), "activate": True}, format="json"
        ).status_code
        == 201
    )
    assert viewer.get("/v1/dags/chain/versions").status_code == 200
    assert viewer.post("/v1/dags/chain/jobs/extract/runs", {}, format="json").status_code == 403
    run = member.post(
        "/v1/dags/chain/jobs/extract/runs", {"payload": {"why": "test"}}, format="json"
    )
    assert run.status_code == 201
    assert member.post(f"/v1/tasks/{run.json()['id']}/cancel").json()["status"] == "Canceled"


def test_anonymous_and_token_auth(org, client_for):
    # docs/orchestration.md: a missing credential is a 403 on the org endpoints.
    anonymous = APIClient().get("/v1/tasks")
    assert (anonymous.status_code, anonymous.json()["error"]) == (403, "not_authenticated")
    member = client_for(org, Role.MEMBER, username="tok")
    token = (
        APIClient().post("/v1/auth/token", {"username": "tok", "password": "pw"}).json()["token"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/v1/tasks").status_code == 200
    assert member.user.username == "tok"


def test_openapi_schema_is_served(api):
    response = api.get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/v1/dags/{name}/versions" in paths
    assert "/v1/task/complete" in paths


def test_every_api_error_has_the_one_documented_shape(org, api):
    anonymous = APIClient()
    refused = [
        api.get("/v1/tasks", {"limit": "abc"}),  # input check
        api.post("/v1/dags/chain/versions", {"activate": "maybe"}, format="json"),
        api.generic("POST", "/v1/dags/chain/versions", b"{", content_type="application/json"),
        api.get("/v1/tasks/999999"),  # a service's NotFound
        anonymous.get("/v1/tasks"),  # not signed in
        anonymous.post("/v1/task/heartbeat"),  # no capability token
    ]
    for response in refused:
        body = response.json()
        assert response.status_code >= 400
        assert set(body) <= {"error", "detail", "errors"} and {"error", "detail"} <= set(body)
        assert isinstance(body["error"], str) and body["error"], body
    invalid = refused[1].json()
    assert invalid["error"] == "invalid"
    assert any(e.startswith("yaml: ") for e in invalid["errors"])
    assert any(e.startswith("activate: ") for e in invalid["errors"])
    assert refused[2].json()["error"] == "parse_error"

"""Each hostile input that once reached a 500 or poisoned state (issue "The foundation under
real use", deliverable 1), by name: now a 4xx in the JSON error shape that writes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from tests.dags import noop_dag
from tests.hostile.conftest import assert_error_shape, row_counts
from trace_web.datasets.models import Dataset
from trace_web.orchestration.models import DagVersion, Outbox, Task
from trace_web.orchestration.services.tasks import task_claim
from trace_web.orgs.models import Role

DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECTS = '{"a":' * 5_000 + "1" + "}" * 5_000


def post_raw(client: APIClient, path: str, body: str | bytes, content_type="application/json"):
    return client.generic("POST", path, body, content_type=content_type)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(DEEP_LIST, id="100000-nested-lists"),
        pytest.param(DEEP_OBJECTS, id="5000-nested-objects"),
        pytest.param('{"username": ' + DEEP_OBJECTS + ', "password": "x"}', id="in-username"),
        pytest.param('{"username": "\\u0000", "password": "x"}', id="nul-username"),
        pytest.param('{"username": "\\ud800", "password": "x"}', id="surrogate-username"),
    ],
)
def test_sign_in_with_hostile_json_is_a_400_not_a_recursion_error(db, body):
    before = row_counts()
    response = post_raw(APIClient(), "/v1/auth/token", body)
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"
    assert_error_shape(response, "sign-in")
    assert row_counts() == before


def test_sign_in_refuses_a_wrong_password_the_same_way_as_an_unknown_user(db, client_for, org):
    client_for(org, Role.MEMBER, username="known")
    wrong = APIClient().post("/v1/auth/token", {"username": "known", "password": "no"})
    unknown = APIClient().post("/v1/auth/token", {"username": "nobody", "password": "no"})
    assert wrong.status_code == unknown.status_code == 400
    assert wrong.json() == unknown.json()
    ok = APIClient().post("/v1/auth/token", {"username": "known", "password": "pw"})
    assert ok.status_code == 200 and len(ok.json()["token"]) == 40


@pytest.mark.parametrize(
    "yaml_text, error",
    [
        pytest.param(
            "name: chain\njobs: " + "[" * 20_000 + "]" * 20_000 + "\n",
            "yaml: nested more than 64 levels deep at line 2",
            id="yaml-nested-20000-deep",
        ),
        pytest.param("name: chain\u008b\n", "yaml: unacceptable character #x008b", id="c1-control"),
        pytest.param(
            noop_dag().replace("name: chain", 'name: chain\ndescription: "\\ud800"'),
            "description: text may not contain unpaired surrogates",
            id="surrogate-in-description",
        ),
        pytest.param(
            noop_dag(extract_config='{note: "a\\ud800"}'),
            "jobs[0].config.note: text may not contain unpaired surrogates",
            id="surrogate-in-config",
        ),
        pytest.param(
            noop_dag(extract_config='{note: "a\\0b"}'),
            "jobs[0].config.note: text may not contain NUL (\\u0000)",
            id="nul-in-config",
        ),
    ],
)
def test_dag_yaml_postgres_cannot_store_is_a_400_naming_the_field(world, yaml_text, error):
    before = row_counts()
    for response in (
        world.admin.post("/v1/dags/chain/versions", {"yaml": yaml_text}, format="json"),
        post_raw(world.admin, "/v1/dags/chain/versions", yaml_text, "application/yaml"),
    ):
        assert response.status_code == 400, response.json()
        assert any(e.startswith(error) for e in response.json()["errors"]), response.json()
    assert row_counts() == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chains/99999999999999999999999/status",
        "/v1/chains/9223372036854775808/status",  # 2**63: one past bigint
        "/v1/tasks/99999999999999999999999",
        "/v1/tasks/9223372036854775808/cancel",
    ],
)
def test_ids_past_bigint_are_a_json_404_not_a_data_error(world, path):
    response = world.admin.get(path) if "cancel" not in path else world.admin.post(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def _claims(world, **changes):
    lease = world.claimed.lease
    now = timezone.now()
    claims = {
        "aud": "trace.task",
        "sub": f"task:{lease.task_id}",
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "org_id": world.claimed.task.org_id,
        "task_id": lease.task_id,
        "attempt": lease.attempt,
        "lease_token": lease.lease_token,
        "datasets": [],
        "prefixes": [],
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"org_id": None}, id="no-org_id"),
        pytest.param({"task_id": "1"}, id="task_id-a-string"),
        pytest.param({"task_id": 1.5}, id="task_id-a-float"),
        pytest.param({"attempt": "x"}, id="attempt-not-an-integer"),
        pytest.param({"attempt": 2**70}, id="attempt-huge"),
        pytest.param({"lease_token": "not-a-uuid-but-36-characters-long-xx"}, id="lease-not-uuid"),
        pytest.param({"lease_token": 7}, id="lease-not-a-string"),
        pytest.param({"sub": "task:999999"}, id="sub-names-another-task"),
        pytest.param({"org_id": [1]}, id="org_id-a-list"),
        pytest.param({"colour": "red"}, id="unknown-claim"),
    ],
)
def test_signed_tokens_with_malformed_claims_are_401(world, changes):
    token = jwt.encode(_claims(world, **changes), settings.TRACE_TASK_TOKEN_SECRET, "HS256")
    before = row_counts()
    for path, body in (
        ("/v1/task/heartbeat", None),
        ("/v1/task/events", {"events": [{"output": 0, "partition_key": "p"}]}),
        ("/v1/task/complete", {}),
        ("/v1/task/fail", {"error": "x"}),
    ):
        response = world.runtime(token).post(path, body, format="json")
        assert response.status_code == 401, (path, response.json())
        assert response.json()["error"] == "unauthenticated"
    assert row_counts() == before
    # The same claims, well formed, are accepted: the refusal was about the claims.
    good = jwt.encode(_claims(world), settings.TRACE_TASK_TOKEN_SECRET, "HS256")
    assert world.runtime(good).post("/v1/task/heartbeat").status_code == 200


@pytest.mark.parametrize(
    "cursor, message",
    [
        pytest.param(10**30, f"must be <= {2**63 - 1}", id="cursor-10**30"),
        pytest.param(True, "must be an integer, got True", id="cursor-true"),
        pytest.param("12", "must be an integer, got '12'", id="cursor-a-string"),
        pytest.param({"upto": 5}, "must be an integer", id="cursor-an-object"),
    ],
)
def test_reported_cursors_are_typed_and_bounded_at_the_api(world, cursor, message):
    before = row_counts()
    runtime = world.runtime()
    events = runtime.post(
        "/v1/task/events", {"events": [{"output": 0, "cursor": cursor}]}, format="json"
    )
    complete = runtime.post(
        "/v1/task/complete", {"outputs": [{"output": 0, "cursor": cursor}]}, format="json"
    )
    assert (events.status_code, complete.status_code) == (400, 400)
    assert events.json()["errors"][0].startswith(f"events[0].cursor: {message}")
    assert complete.json()["errors"][0].startswith(f"outputs[0].cursor: {message}")
    assert row_counts() == before  # no route_event row left to fail in the outbox
    assert Task.objects.get(pk=world.claimed.task.pk).status == "Running"


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("every_seconds", 99999999999999999999, "jobs[0].source.every_seconds: must be <="),
        ("timeout_seconds", 10**12, "jobs[0].timeout_seconds: must be <="),
        ("heartbeat_timeout_seconds", 10**12, "jobs[0].heartbeat_timeout_seconds: must be <="),
        ("max_concurrency", 10**12, "jobs[0].scaling.max_concurrency: must be <="),
    ],
)
def test_numeric_dag_fields_are_bounded_at_deploy(world, field, value, error):
    job = {"source": {"kind": "cron", "every_seconds": value}}
    if field == "max_concurrency":
        job = {"source": {"kind": "cron", "every_seconds": 60}, "scaling": {field: value}}
    elif field != "every_seconds":
        job = {"source": {"kind": "cron", "every_seconds": 60}, field: value}
    import json

    yaml_text = json.dumps(
        {
            "name": "bounded",
            "jobs": [
                {"name": "tick", "activation": "source", "operator": "noop", "outputs": 0, **job}
            ],
        }
    )
    before = row_counts()
    response = world.admin.post(
        "/v1/dags/bounded/versions", {"yaml": yaml_text, "activate": True}, format="json"
    )
    assert response.status_code == 400
    assert any(e.startswith(error) for e in response.json()["errors"]), response.json()
    assert row_counts() == before


def test_a_body_over_the_cap_is_a_json_413(world, settings):
    big = '{"yaml": "' + "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) + '"}'
    for path in ("/v1/dags/chain/versions", "/v1/auth/token", "/v1/task/complete"):
        client = world.runtime() if path.startswith("/v1/task/") else world.admin
        response = post_raw(client, path, big)
        assert response.status_code == 413, path
        assert response.json()["error"] == "too_large"
    yaml_body = "name: chain\n#" + "a" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = post_raw(world.admin, "/v1/dags/chain/versions", yaml_body, "application/yaml")
    assert response.status_code == 413 and response.json()["error"] == "too_large"


@pytest.mark.parametrize("path", ["/v1/", "/v1/dags/x", "/v1/datasets/x", "/v1/nothing/here"])
def test_unknown_routes_answer_the_json_error_shape(world, path):
    response = world.admin.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_database_errors_never_echo_sql(db):
    from django.db import DataError

    from trace_web.errors import api_exception_handler

    exc = DataError('value "99" is out of range for type integer\nSELECT * FROM orgs_org WHERE')
    response = api_exception_handler(exc, {})
    assert response.status_code == 400
    assert "SELECT" not in response.data["detail"] and "orgs_org" not in response.data["detail"]


def test_the_role_error_names_roles_as_the_api_spells_them(world, org, client_for):
    viewer = client_for(org, Role.VIEWER)
    response = viewer.post("/v1/dags/chain/versions", {"yaml": noop_dag()}, format="json")
    assert response.status_code == 403
    assert response.json()["detail"] == "role 'viewer' may not do this; needs 'member' or higher"


def test_unknown_fields_in_a_run_are_refused_not_dropped(world):
    before = row_counts()
    response = world.admin.post(
        "/v1/dags/chain/jobs/extract/runs",
        {"payload": {}, "scop": {"range_start": 0, "range_end": 5}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"] == ["scop: unknown field"]
    nested = world.admin.post(
        "/v1/dags/chain/jobs/extract/runs", {"scope": {"range_begin": 0}}, format="json"
    )
    assert nested.json()["errors"] == ["scope.range_begin: unknown field"]
    assert row_counts() == before


def test_datasets_listed_only_where_the_role_may_read(world, org, client_for):
    published = noop_dag("pub") + (
        "publish:\n"
        "  pub.admins: {job: extract, output: 0, read_roles: [admin]}\n"
        "  pub.all: {job: transform, output: 0}\n"
    )
    deployed = world.admin.post("/v1/dags/pub/versions", {"yaml": published}, format="json")
    assert deployed.status_code == 201, deployed.json()
    names = lambda client: {d["name"] for d in client.get("/v1/datasets").json()}  # noqa: E731
    viewer = client_for(org, Role.VIEWER)
    assert "pub.admins" in names(world.admin) and "pub.all" in names(world.admin)
    assert "pub.admins" not in names(viewer) and "pub.all" in names(viewer)
    assert Dataset.objects.filter(published_name="pub.admins").exists()


def test_a_webhook_replayed_with_its_idempotency_key_makes_one_task(world):
    url = f"/v1/hooks/{world.org_slug}/sources/hook"
    headers = {"HTTP_X_TRACE_WEBHOOK_SECRET": world.webhook_secret}
    hook = APIClient()
    first = hook.post(url, {"n": 1}, format="json", HTTP_IDEMPOTENCY_KEY="delivery-7", **headers)
    replays = [
        hook.post(url, {"n": 1}, format="json", HTTP_IDEMPOTENCY_KEY="delivery-7", **headers)
        for _ in range(2)
    ]
    other = hook.post(url, {"n": 2}, format="json", HTTP_IDEMPOTENCY_KEY="delivery-8", **headers)
    assert first.status_code == 202 and other.status_code == 202
    assert [r.status_code for r in replays] == [200, 200]
    assert {r.json()["task_id"] for r in replays} == {first.json()["task_id"]}
    assert Task.objects.filter(job__name="hook").count() == 2
    without_key = [hook.post(url, {"n": 3}, format="json", **headers) for _ in range(2)]
    assert [r.status_code for r in without_key] == [202, 202]  # no key: each call is new
    bad = hook.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="x" * 201, **headers)
    assert bad.status_code == 400 and bad.json()["errors"] == [
        "Idempotency-Key: must be 1 to 200 visible ASCII characters"
    ]
    assert Task.objects.filter(job__name="hook").count() == 4


def test_an_org_header_no_org_could_have_is_a_403_not_a_database_error(world):
    for slug in ("ac\x00me", "a" * 300, "ünïcode"):
        response = world.admin.get("/v1/tasks", HTTP_X_TRACE_ORG=slug)
        assert response.status_code == 403, slug
        assert response.json()["error"] == "forbidden"


def test_a_stale_lease_token_that_is_not_a_uuid_is_refused_not_a_crash(world):
    claims = _claims(world, lease_token=str(uuid.uuid4()))
    token = jwt.encode(claims, settings.TRACE_TASK_TOKEN_SECRET, "HS256")
    response = world.runtime(token).post("/v1/task/complete", {}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "stale_attempt"
    assert task_claim(task_id=world.queued_task_id, worker_id="again") is not None
    assert not Outbox.objects.filter(kind="route_event").exists()
    assert DagVersion.objects.filter(name="chain").count() == 1


def test_a_data_db_that_is_unreachable_is_a_503_not_a_500(world, monkeypatch):
    import sqlalchemy as sa

    from trace_chain import db

    unreachable = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setattr(db, "data_engine", lambda: unreachable)
    response = world.admin.get("/v1/chains/31337/status")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable" and response["Retry-After"] == "5"

"""The OpenAPI schema (/v1/schema/): drf-spectacular generates it without a single warning or
error, it is valid, every operation documents the body it answers with, and what the views
really return has exactly the documented shape."""

from __future__ import annotations

import contextlib
import io
from datetime import datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tests.dags import noop_dag
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import task_claim
from trace_web.orgs.models import Role

SOURCES = """
name: sources
jobs:
  - name: hook
    activation: source
    source: {kind: webhook}
    operator: noop
    outputs: 0
"""
CHAIN_SYNC = """
kind: chain_sync
name: history
chain_id: 31337
mode: fixed_target
from_block: 0
to_block: 25
streams:
  - {dataset: blocks, chunk_size: 10, max_inflight: 2, rpc_pool: devchain}
"""
METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(autouse=True)
def _no_broker(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        generated = SchemaGenerator().get_schema(request=None, public=True)
    GENERATOR_STATS.reset()
    return generated


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def json_schema(schema: dict, content: dict) -> dict:
    return resolve(schema, content["application/json"]["schema"])


def operation(schema: dict, method: str, path: str) -> dict:
    return schema["paths"][path][method]


def response_schema(schema: dict, method: str, path: str, code: str) -> dict:
    return json_schema(schema, operation(schema, method, path)["responses"][code]["content"])


def is_download(content: dict) -> bool:
    """A file download (a query export): a binary body, documented as such."""
    body = content.get("application/octet-stream", {}).get("schema", {})
    return body.get("type") == "string" and body.get("format") == "binary"


def properties(schema: dict, node: dict) -> set[str]:
    node = resolve(schema, node)
    if node.get("type") == "array":
        node = resolve(schema, node["items"])
    return set(node.get("properties", {}))


def mismatches(schema: dict, node: dict, value: Any, where: str = "body") -> list[str]:
    """Where `value` differs from the documented `node` (keys, types, nullability)."""
    node = resolve(schema, node)
    if "allOf" in node:  # spectacular wraps a $ref to add nullable/description
        node = {
            **resolve(schema, node["allOf"][0]),
            **{k: v for k, v in node.items() if k != "allOf"},
        }
    options = node.get("oneOf") or node.get("anyOf")  # anyOf: pydantic's models (OpenAPI 3.1)
    types = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
    if value is None:
        nullable = node.get("nullable") or "null" in types or not node
        if nullable or any(not mismatches(schema, o, None, where) for o in options or []):
            return []
        return [f"{where}: null, documented not nullable"]
    if options:
        if any(not mismatches(schema, option, value, where) for option in options):
            return []
        return [f"{where}: matches none of {options}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{where}: {value!r} not in {node['enum']}"]
    kind = next((t for t in types if t != "null"), None)
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        documented = node.get("properties", {})
        extra = set(value) - set(documented) if "additionalProperties" not in node else set()
        missing = set(node.get("required", [])) - set(value)
        if extra or missing:
            return [f"{where}: undocumented keys {sorted(extra)}, missing {sorted(missing)}"]
        return [
            problem
            for key in sorted(value)
            for problem in mismatches(
                schema,
                documented.get(key, node.get("additionalProperties", {})),
                value[key],
                f"{where}.{key}",
            )
        ]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not an array"]
        return [
            problem
            for index, item in enumerate(value)
            for problem in mismatches(schema, node["items"], item, f"{where}[{index}]")
        ]
    checks = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "object": lambda v: isinstance(v, dict),
    }
    if kind in checks and not checks[kind](value):
        return [f"{where}: {value!r} is not {kind}"]
    if node.get("format") == "date-time":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return [f"{where}: {value!r} is not a date-time"]
    return []


def assert_documented(schema, method, path, response):
    code = str(response.status_code)
    responses = operation(schema, method, path)["responses"]
    assert code in responses, f"{method.upper()} {path} answered {code}, not documented"
    node = responses[code]["content"]["application/json"]["schema"]
    problems = mismatches(schema, node, response.json())
    assert not problems, f"{method.upper()} {path} {code}:\n" + "\n".join(problems)


def test_spectacular_reports_no_warning_or_error(tmp_path):
    GENERATOR_STATS.reset()  # it caches messages process-wide; other tests generate too
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            call_command(
                "spectacular",
                "--validate",
                "--fail-on-warn",
                "--file",
                str(tmp_path / "schema.yaml"),
            )
    except CommandError as exc:
        pytest.fail(f"{exc}\n{messages.getvalue()}")
    finally:
        GENERATOR_STATS.reset()


def test_every_operation_documents_a_success_body_with_named_properties(schema):
    undocumented = []
    for path, item in schema["paths"].items():
        for method in METHODS & set(item):
            success = [r for code, r in item[method]["responses"].items() if code[0] == "2"]
            if not success or not all(
                "content" in r
                and (
                    is_download(r["content"])
                    or properties(schema, json_schema(schema, r["content"]))
                )
                for r in success
            ):
                undocumented.append(f"{method.upper()} {path}")
    assert not undocumented, f"no documented success body: {undocumented}"


def test_user_operations_document_the_rate_limit_and_it_answers_so(schema, api, monkeypatch):
    for path, item in schema["paths"].items():
        for method in METHODS & set(item):
            org_scoped = any(p["name"] == "X-Trace-Org" for p in item[method].get("parameters", []))
            throttled = org_scoped or path == "/v1/auth/token"  # sign-in: per client address
            assert ("429" in item[method]["responses"]) == throttled, (method, path)
    from django.core.cache import cache
    from rest_framework.test import APIClient
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "2/min", "sign_in": "2/min"})
    cache.clear()
    try:
        responses = [api.get("/v1/tasks") for _ in range(3)]
        sign_ins = [
            APIClient().post("/v1/auth/token", {"username": "x", "password": "y"}, format="json")
            for _ in range(3)
        ]
    finally:
        cache.clear()
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert_documented(schema, "get", "/v1/tasks", responses[2])
    assert [r.status_code for r in sign_ins] == [400, 400, 429]
    assert_documented(schema, "post", "/v1/auth/token", sign_ins[2])


@pytest.mark.parametrize(
    ("method", "path", "request_fields", "code", "response_fields", "errors"),
    [
        (
            "post",
            "/v1/task/complete",
            {"outputs"},
            "200",
            {"task_id", "status", "outputs"},
            {"400", "401", "404", "409"},
        ),
        ("post", "/v1/task/events", {"events"}, "200", {"accepted"}, {"400", "401", "409"}),
        ("post", "/v1/task/fail", {"error", "retryable"}, "200", {"task_id"}, {"401", "409"}),
        ("post", "/v1/task/heartbeat", None, "200", {"lease_expires_at"}, {"401", "409"}),
        (
            "get",
            "/v1/chains/{chain_id}/status",
            None,
            "200",
            {"chain_id", "head_block", "tip_block", "lag_blocks", "reorg_count"},
            {"403", "404"},
        ),
        ("get", "/v1/chain-syncs/{name}", None, "200", {"name", "streams"}, {"403", "404"}),
        ("get", "/v1/chain-syncs", None, "200", {"name", "plan_target", "eta_seconds"}, {"403"}),
        (
            "get",
            "/v1/dags/{name}",
            None,
            "200",
            {"versions", "active_version", "jobs", "yaml"},
            {"400", "403", "404"},
        ),
        ("post", "/v1/auth/token", {"username", "password"}, "200", {"token"}, {"400"}),
        ("get", "/v1/datasets", None, "200", {"name", "latest_generation"}, {"403"}),
        (
            "get",
            "/v1/datasets/{name}",
            None,
            "200",
            {"schema", "versions", "chain"},
            {"403", "404", "503"},
        ),
        ("get", "/v1/dags", None, "200", {"name", "active_version"}, {"403"}),
        ("put", "/v1/dags/{name}/active", {"version", "rollback"}, "200", {"name"}, {"400"}),
        ("post", "/v1/dags/{name}/versions", {"yaml", "activate"}, "201", {"created"}, {"400"}),
        ("post", "/v1/dags/{name}/jobs/{job}/runs", {"payload", "scope"}, "201", {"id"}, {"404"}),
        ("post", "/v1/hooks/{org}/{name}/{job}", None, "202", {"task_id"}, {"401", "404"}),
        (
            "post",
            "/v1/alerts",
            {"name", "chain_id", "condition", "bundle", "channels", "confirmations"},
            "201",
            {"id", "datasets", "channels"},
            {"400", "403", "409", "415"},
        ),
        ("patch", "/v1/alerts/{alert_id}", {"enabled"}, "200", {"id"}, {"400", "404", "409"}),
        ("get", "/v1/alerts/{alert_id}/events", None, "200", {"state", "block_hash"}, {"404"}),
        (
            "post",
            "/v1/alerts/{alert_id}/backtest",
            {"range_start", "range_end", "deliver"},
            "202",
            {"task_id"},
            {"400", "404", "409"},
        ),
        (
            "post",
            "/v1/alerts/{alert_id}/deliveries/{delivery_id}/retry",
            None,
            "200",
            {"status", "attempt"},
            {"404", "409"},
        ),
        ("post", "/v1/channels", {"kind", "target"}, "201", {"secret", "has_secret"}, {"400"}),
        ("post", "/v1/channels/{channel_id}/rotate-secret", None, "200", {"secret"}, {"400"}),
    ],
)
def test_key_operations_document_request_and_response(
    schema, method, path, request_fields, code, response_fields, errors
):
    op = operation(schema, method, path)
    if request_fields is not None:
        assert request_fields <= properties(
            schema, json_schema(schema, op["requestBody"]["content"])
        )
    assert response_fields <= properties(schema, response_schema(schema, method, path, code))
    assert errors <= set(op["responses"])
    for error in errors:  # every error has the one documented body
        body = json_schema(schema, op["responses"][error]["content"])
        assert {"error", "detail"} <= properties(schema, body), (error, body)


def test_capability_token_endpoints_answer_as_documented(schema, org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    runtime = APIClient()
    claimed = task_claim(
        task_id=job_run_manual(org=org, dag_name="chain", job_name="extract").pk, worker_id="w"
    )
    runtime.credentials(HTTP_AUTHORIZATION=f"Bearer {claimed.capability_token}")

    def post(path, body=None):
        response = runtime.post(path, body, format="json")
        assert_documented(schema, "post", path, response)
        return response

    assert post("/v1/task/heartbeat").status_code == 200
    events = [
        {"output": 0, "partition_key": "p1", "cursor": 7},
        {"type": "invalidation", "output": 0, "partition_key": "p0", "reason": "reorg"},
    ]
    assert len(post("/v1/task/events", {"events": events}).json()["accepted"]) == 2
    assert post("/v1/task/events", {"events": []}).status_code == 400
    assert post("/v1/task/complete", {}).json()["status"] == "Completed"
    assert post("/v1/task/complete", {}).status_code == 409  # the attempt is over
    runtime.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert post("/v1/task/heartbeat").status_code == 401

    failing = task_claim(
        task_id=job_run_manual(org=org, dag_name="chain", job_name="extract").pk, worker_id="w"
    )
    runtime.credentials(HTTP_AUTHORIZATION=f"Bearer {failing.capability_token}")
    assert post("/v1/task/fail", {"error": "boom"}).json()["next_retry_at"] is not None


def test_org_endpoints_answer_as_documented(schema, org, api, client_for, hot_engine):
    from trace_chain.hot_store import hot_follower_org_register, hot_status_update
    from trace_web.chain_sync.services import chain_sync_apply

    def call(method, path, url=None, body=None, client=api):
        response = getattr(client, method)(url or path, body, format="json")
        assert_documented(schema, method, path, response)
        return response

    assert call("get", "/v1/datasets", client=APIClient()).status_code == 403  # not signed in
    viewer = client_for(org, Role.VIEWER)
    assert (
        call("post", "/v1/dags/{name}/versions", "/v1/dags/chain/versions", {}, viewer).status_code
        == 403
    )
    invalid = call(
        "post", "/v1/dags/{name}/versions", "/v1/dags/chain/versions", {"yaml": "jobs: 1"}
    )
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid"

    deployed = call(
        "post", "/v1/dags/{name}/versions", "/v1/dags/chain/versions", {"yaml": noop_dag()}
    )
    assert deployed.status_code == 201
    call("put", "/v1/dags/{name}/active", "/v1/dags/chain/active", {"version": 1})
    call("put", "/v1/dags/{name}/active", "/v1/dags/chain/active", {"version": 1, "rollback": True})
    call("get", "/v1/dags")
    call("get", "/v1/dags/{name}", "/v1/dags/chain")
    assert call("get", "/v1/dags/{name}", "/v1/dags/nope").status_code == 404
    assert call("get", "/v1/dags/{name}", "/v1/dags/chain?version=x").status_code == 400
    call("get", "/v1/dags/{name}/versions", "/v1/dags/chain/versions")
    run = call("post", "/v1/dags/{name}/jobs/{job}/runs", "/v1/dags/chain/jobs/extract/runs", {})
    task_id = run.json()["id"]
    call("get", "/v1/tasks")
    paged = call("get", "/v1/tasks", "/v1/tasks?limit=1&created_after=2020-01-01T00:00:00Z")
    documented_headers = operation(schema, "get", "/v1/tasks")["responses"]["200"]["headers"]
    assert "Link" in paged.headers and "Link" in documented_headers
    call("get", "/v1/tasks/{task_id}", f"/v1/tasks/{task_id}")
    call("post", "/v1/tasks/{task_id}/cancel", f"/v1/tasks/{task_id}/cancel")
    call("post", "/v1/tasks/{task_id}/cancel", f"/v1/tasks/{task_id}/cancel")  # 400: finished
    call("get", "/v1/datasets")

    assert call("get", "/v1/chains/{chain_id}/status", "/v1/chains/31337/status").status_code == 404
    hot_status_update(hot_engine, chain_id=31337, head_block=121, tip_block=118, reorg_depth=2)
    hot_follower_org_register(hot_engine, chain_id=31337, org_id=org.pk)
    assert call("get", "/v1/chains/{chain_id}/status", "/v1/chains/31337/status").status_code == 200
    chain_sync_apply(org=org, yaml_text=CHAIN_SYNC)
    call("get", "/v1/chain-syncs/{name}", "/v1/chain-syncs/history")
    call("get", "/v1/chain-syncs")

    dag_sync(org=org, yaml_text=SOURCES, activate=True)
    secret = call(
        "post",
        "/v1/dags/{name}/jobs/{job}/webhook-secret",
        "/v1/dags/sources/jobs/hook/webhook-secret",
    ).json()
    hook = APIClient().post(
        secret["url"], [1, 2], format="json", HTTP_X_TRACE_WEBHOOK_SECRET=secret["secret"]
    )
    assert_documented(schema, "post", "/v1/hooks/{org}/{name}/{job}", hook)
    assert hook.status_code == 202


def test_token_endpoint_answers_as_documented(schema, client_for, org):
    client_for(org, Role.MEMBER, username="tok")
    anonymous = APIClient()

    def post(body):
        response = anonymous.post("/v1/auth/token", body, format="json")
        assert_documented(schema, "post", "/v1/auth/token", response)
        return response

    assert post({"username": "tok", "password": "pw"}).status_code == 200
    wrong = post({"username": "tok", "password": "nope"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid"
    assert post({"username": "tok"}).status_code == 400
    unparsable = anonymous.generic("POST", "/v1/auth/token", b"{", content_type="application/json")
    assert_documented(schema, "post", "/v1/auth/token", unparsable)
    assert unparsable.status_code == 400

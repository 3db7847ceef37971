"""Org scoping, proved for every operation of the OpenAPI schema: each has a cross-org case
here (another org's name, id or secret), and each org operation refuses a user of two orgs
who does not name one. A new operation without a case fails the first test, so no endpoint
ships unscoped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from tests.dags import noop_dag
from tests.factories import MembershipFactory, UserFactory
from trace_web.chain_sync.services import chain_sync_apply
from trace_web.orchestration.models import DagPointer, Task, TaskStatus, WebhookSecret
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual, webhook_secret_rotate
from trace_web.orgs.models import Role

SOURCES = """
name: sources
jobs:
  - {name: hook, activation: source, source: {kind: webhook}, operator: noop, outputs: 0}
"""
CHAIN_SYNC = """
kind: chain_sync
name: history
chain_id: 31337
mode: fixed_target
to_block: 25
streams: [{dataset: blocks, chunk_size: 10, rpc_pool: devchain}]
"""
FOLLOWER = """
name: follow
jobs:
  - name: follow
    activation: source
    source: {kind: always_on}
    operator: block_follower
    config: {chain_id: 31337, rpc_pool: devchain}
"""
HOT_BLOCK = {
    "chain_id": 31337,
    "block_number": 9,
    "block_hash": "0x" + "ab" * 32,
    "parent_hash": "0x" + "cd" * 32,
    "timestamp": 1_700_000_000,
}
# Not org-scoped, with the reason (their own tests prove what scopes them instead).
NOT_ORG_SCOPED = {
    "POST /v1/auth/token": "sign-in: before any org",
    "POST /v1/task/heartbeat": "scoped to one attempt by its capability token",
    "POST /v1/task/complete": "scoped to one attempt by its capability token",
    "POST /v1/task/fail": "scoped to one attempt by its capability token",
    "POST /v1/task/events": "scoped to one attempt by its capability token",
    "POST /v1/task/query": "reads exactly the inputs its capability token pins (tests/query)",
    "GET /v1/task/query/results/{result_id}": "only its own task's exports (tests/query)",
    "POST /v1/task/buffer-publish": "writes under its own attempt's prefix only (tests/udf)",
}


@dataclass
class Orgs:
    acme: APIClient  # an admin of acme: every case acts as acme
    globex_admin: APIClient
    globex_org: object
    globex_task: Task
    globex_secret: str
    acme_secret: str


@pytest.fixture
def orgs(org, other_org, client_for, settings, hot_engine) -> Orgs:
    from trace_chain.hot_schema import hot_blocks
    from trace_chain.hot_store import hot_follower_org_register, hot_status_update

    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    for target in (org, other_org):
        dag_sync(org=target, yaml_text=SOURCES, activate=True)
    # acme's own, so each list below has rows of acme's and must leave out globex's.
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    job_run_manual(org=org, dag_name="chain", job_name="extract")
    chain_sync_apply(org=org, yaml_text=CHAIN_SYNC.replace("name: history", "name: mine"))
    # Only globex has these: acme reaching them would be a leak.
    dag_sync(org=other_org, yaml_text=noop_dag("secret-dag"), activate=True)
    chain_sync_apply(org=other_org, yaml_text=CHAIN_SYNC)
    hot_status_update(hot_engine, chain_id=31337, head_block=10, tip_block=9)
    hot_follower_org_register(hot_engine, chain_id=31337, org_id=other_org.pk)
    dag_sync(org=other_org, yaml_text=FOLLOWER, activate=True)
    with hot_engine.begin() as conn:
        conn.execute(hot_blocks.insert().values(HOT_BLOCK))
    return Orgs(
        acme=client_for(org, Role.ADMIN),
        globex_admin=client_for(other_org, Role.ADMIN),
        globex_org=other_org,
        globex_task=job_run_manual(org=other_org, dag_name="secret-dag", job_name="extract"),
        globex_secret=webhook_secret_rotate(org=other_org, dag_name="sources", job_name="hook"),
        acme_secret=webhook_secret_rotate(org=org, dag_name="sources", job_name="hook"),
    )


def dags_list(o: Orgs) -> None:
    assert {row["name"] for row in o.acme.get("/v1/dags").json()} == {
        "chain",
        "sources",
        "chain-sync-mine",
    }


def dag_get(o: Orgs) -> None:
    assert o.acme.get("/v1/dags/secret-dag").status_code == 404
    assert o.acme.get("/v1/dags/secret-dag?version=1").status_code == 404


def chain_syncs_list(o: Orgs) -> None:
    assert [row["name"] for row in o.acme.get("/v1/chain-syncs").json()] == ["mine"]


def dag_versions_get(o: Orgs) -> None:
    assert o.acme.get("/v1/dags/secret-dag/versions").status_code == 404


def dag_versions_post(o: Orgs) -> None:
    response = o.acme.post(
        "/v1/dags/secret-dag/versions", {"yaml": noop_dag("secret-dag")}, format="json"
    )
    assert response.status_code == 201 and response.json()["version"] == 1  # acme's own
    globex = DagPointer.objects.get(org=o.globex_org, name="secret-dag")
    assert globex.current.version == 1 and globex.current.org_id == o.globex_org.pk


def dag_active_put(o: Orgs) -> None:
    assert (
        o.acme.put("/v1/dags/secret-dag/active", {"version": 1}, format="json").status_code == 404
    )


def job_runs_post(o: Orgs) -> None:
    response = o.acme.post("/v1/dags/secret-dag/jobs/extract/runs", {}, format="json")
    assert response.status_code == 404
    assert Task.objects.filter(org=o.globex_org).count() == 1


def webhook_secret_post(o: Orgs) -> None:
    o.acme.post("/v1/dags/secret-dag/jobs/extract/webhook-secret")  # no such job of acme's
    before = WebhookSecret.objects.get(org=o.globex_org).secret_sha256
    # Rotating acme's own source leaves globex's secret (same DAG and job names) alone.
    assert o.acme.post("/v1/dags/sources/jobs/hook/webhook-secret").status_code == 200
    assert WebhookSecret.objects.get(org=o.globex_org).secret_sha256 == before


def hooks_post(o: Orgs) -> None:
    slug = o.globex_org.slug
    for secret in (o.acme_secret, ""):  # acme's own secret does not open globex's source
        response = APIClient().post(
            f"/v1/hooks/{slug}/sources/hook", {}, format="json", HTTP_X_TRACE_WEBHOOK_SECRET=secret
        )
        assert response.status_code == 401
    assert not Task.objects.filter(org=o.globex_org, job__name="hook").exists()


def tasks_list(o: Orgs) -> None:
    assert [row["dag"] for row in o.acme.get("/v1/tasks").json()] == ["chain"]


def task_get(o: Orgs) -> None:
    assert o.acme.get(f"/v1/tasks/{o.globex_task.pk}").status_code == 404


def task_cancel_post(o: Orgs) -> None:
    assert o.acme.post(f"/v1/tasks/{o.globex_task.pk}/cancel").status_code == 404
    assert Task.objects.get(pk=o.globex_task.pk).status == TaskStatus.QUEUED


def datasets_list(o: Orgs) -> None:
    dags = {row["dag"] for row in o.acme.get("/v1/datasets").json()}
    assert "chain" in dags and "secret-dag" not in dags


def dataset_get(o: Orgs) -> None:
    name = "/v1/datasets/secret-dag.extract[0]"
    assert o.acme.get(name).status_code == 404
    assert o.globex_admin.get(name).status_code == 200  # it is there, globex's own


def integrity_checks_list(o: Orgs) -> None:
    from django.utils import timezone

    from trace_web.datasets.models import Dataset, IntegrityCheck

    def check(org, dag: str) -> None:
        IntegrityCheck.objects.create(
            org=org,
            dataset=Dataset.objects.get(org=org, dag_name=dag, job_name="extract"),
            dag_name=dag,
            job_name="extract",
            task_id=1,
            attempt=1,
            chain_id=31337,
            range_start=0,
            range_end=10,
            status="mismatch",
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )

    check(o.globex_org, "secret-dag")
    check(Dataset.objects.get(dag_name="chain", job_name="extract").org, "chain")
    for query in ("", "?chain_id=31337", "?dag=secret-dag"):
        rows = o.acme.get(f"/v1/integrity-checks{query}").json()
        assert [row["dag"] for row in rows] == ([] if "secret" in query else ["chain"])
    assert len(o.globex_admin.get("/v1/integrity-checks").json()) == 1  # globex's own


def chain_status_get(o: Orgs) -> None:
    # Only globex follows the chain: that it does is globex's business.
    assert o.acme.get("/v1/chains/31337/status").status_code == 404


def query_post(o: Orgs) -> None:
    # Only globex follows chain 31337 and its hot block is there; acme reads none of it.
    sql = {"sql": "SELECT count(*) FROM blocks"}
    response = o.acme.post("/v1/query", sql, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["rows"] == [[0]]
    globex = o.globex_admin.post("/v1/query", sql, format="json")
    assert globex.json()["rows"] == [[1]]


def query_result_get(o: Orgs) -> None:
    from django.utils import timezone

    from trace_chain.object_store import object_store_from_env
    from trace_web.query.models import QueryResult

    key = f"query-results/{o.globex_org.pk}/theirs.csv"
    object_store_from_env().put_bytes(b"secret\n", key)
    record = QueryResult.objects.create(
        org=o.globex_org,
        user=o.globex_admin.handler._force_user,
        sql_sha256="0" * 64,
        format="csv",
        key=key,
        row_count=1,
        bytes=7,
        expires_at=timezone.now() + timezone.timedelta(hours=1),
    )
    assert o.acme.get(f"/v1/query/results/{record.pk}").status_code == 404
    assert o.globex_admin.get(f"/v1/query/results/{record.pk}").status_code == 200


def chain_sync_get(o: Orgs) -> None:
    assert o.acme.get("/v1/chain-syncs/history").status_code == 404


def _globex_bundle(o: Orgs):
    from tests.udf_bundles import bundle
    from trace_web.udf.services import bundle_upload

    data = bundle()
    return data, bundle_upload(org=o.globex_org, data=data).bundle


def udf_bundles_list(o: Orgs) -> None:
    _globex_bundle(o)
    assert o.acme.get("/v1/udf/bundles").json() == []


def udf_bundle_get(o: Orgs) -> None:
    _, theirs = _globex_bundle(o)
    assert o.acme.get(f"/v1/udf/bundles/{theirs.sha256}").status_code == 404
    assert o.acme.get("/v1/udf/bundles/demo@1.0.0").status_code == 404
    assert o.globex_admin.get("/v1/udf/bundles/demo@1.0.0").status_code == 200


def udf_bundle_post(o: Orgs) -> None:
    from trace_web.udf.models import Bundle

    data, theirs = _globex_bundle(o)
    # The same bytes and name@version are acme's own bundle: neither "already stored" nor 409.
    response = o.acme.generic("POST", "/v1/udf/bundles", data, content_type="application/zip")
    assert response.status_code == 201, response.json()
    mine = Bundle.objects.exclude(pk=theirs.pk).get()
    assert mine.org_id != o.globex_org.pk and mine.key != theirs.key


def udf_signing_policy_get(o: Orgs) -> None:
    from trace_web.udf.services import signing_policy_set

    key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    signing_policy_set(org=o.globex_org, keys={"theirs": key}, require_signed=True)
    assert o.acme.get("/v1/udf/signing-policy").json() == {"keys": [], "require_signed": False}


def udf_signing_policy_put(o: Orgs) -> None:
    from trace_web.udf.models import SigningKey
    from trace_web.udf.services import signing_policy_set

    key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    signing_policy_set(org=o.globex_org, keys={"theirs": key}, require_signed=True)
    body = {"keys": {}, "require_signed": False}
    assert o.acme.put("/v1/udf/signing-policy", body, format="json").status_code == 200
    assert list(SigningKey.objects.values_list("name", flat=True)) == ["theirs"]
    assert o.globex_admin.get("/v1/udf/signing-policy").json()["require_signed"] is True


@dataclass
class GlobexAlerts:
    """globex's alert, channel, event and failed delivery, with acme's own of each kind and
    the same names, so a list that leaked would show globex's and a lookup by name could
    find theirs."""

    alert: object
    channel: object
    event: object
    delivery: object
    acme_alert: object
    acme_channel: object


def _alerts(o: Orgs) -> GlobexAlerts:
    from django.utils import timezone

    from tests.udf_bundles import bundle
    from trace_web.alerts.models import AlertEvent, Channel, Delivery
    from trace_web.alerts.services import alert_definition_create, channel_create
    from trace_web.udf.services import bundle_upload

    made = {}
    for who, org in (("globex", o.globex_org), ("acme", o.acme.user.org_memberships.get().org)):
        bundle_upload(org=org, data=bundle())
        channel = channel_create(
            org=org, spec={"name": "hook", "kind": "webhook", "target": "http://127.0.0.1:9/hook"}
        ).channel
        spec = {"name": "watch", "chain_id": 31337, "bundle": "demo@1.0.0", "datasets": ["logs"]}
        made[who] = (alert_definition_create(org=org, spec={**spec, "channels": ["hook"]}), channel)
    alert, channel = made["globex"]
    event = AlertEvent.objects.create(
        org=o.globex_org,
        definition=alert,
        dedupe_key="d",
        match_key="m",
        chain_id=31337,
        block_number=9,
        block_hash="0x" + "ab" * 32,
        producer_task_id=1,
        producer_attempt=1,
    )
    delivery = Delivery.objects.create(
        org=o.globex_org,
        event=event,
        channel=channel,
        status="failed",
        attempt=12,
        next_attempt_at=timezone.now(),
    )
    assert Channel.objects.filter(name="hook").count() == 2
    return GlobexAlerts(alert, channel, event, delivery, *made["acme"])


def alerts_list(o: Orgs) -> None:
    a = _alerts(o)
    assert [row["id"] for row in o.acme.get("/v1/alerts").json()] == [a.acme_alert.pk]


def alerts_post(o: Orgs) -> None:
    from trace_web.alerts.models import AlertDefinition

    a = _alerts(o)
    body = {"name": "new", "chain_id": 1, "bundle": "demo@1.0.0", "datasets": ["logs"]}
    # globex's channel by id is no channel of acme's; by name, acme's own is the one found.
    response = o.acme.post("/v1/alerts", {**body, "channels": [a.channel.pk]}, format="json")
    assert response.json()["errors"] == [f"channels[0]: no channel {a.channel.pk} in this org"]
    created = o.acme.post("/v1/alerts", {**body, "channels": ["hook"]}, format="json").json()
    assert created["channels"][0]["id"] == a.acme_channel.pk
    mine = AlertDefinition.objects.get(pk=created["id"])
    assert mine.org_id != o.globex_org.pk and mine.bundle.org_id == mine.org_id


def alert_get(o: Orgs) -> None:
    a = _alerts(o)
    assert o.acme.get(f"/v1/alerts/{a.alert.pk}").status_code == 404
    assert o.globex_admin.get(f"/v1/alerts/{a.alert.pk}").status_code == 200


def alert_patch(o: Orgs) -> None:
    a = _alerts(o)
    response = o.acme.patch(f"/v1/alerts/{a.alert.pk}", {"enabled": False}, format="json")
    assert response.status_code == 404
    a.alert.refresh_from_db()
    assert a.alert.enabled is True


def alert_put(o: Orgs) -> None:
    a = _alerts(o)
    body = {"name": "taken", "chain_id": 1, "bundle": "demo@1.0.0", "datasets": ["logs"]}
    assert o.acme.put(f"/v1/alerts/{a.alert.pk}", body, format="json").status_code == 404
    a.alert.refresh_from_db()
    assert a.alert.name == "watch"


def alert_delete(o: Orgs) -> None:
    from trace_web.alerts.models import AlertDefinition

    a = _alerts(o)
    assert o.acme.delete(f"/v1/alerts/{a.alert.pk}").status_code == 404
    assert AlertDefinition.objects.filter(pk=a.alert.pk).exists()


def alert_events_get(o: Orgs) -> None:
    a = _alerts(o)
    assert o.acme.get(f"/v1/alerts/{a.alert.pk}/events").status_code == 404
    assert o.acme.get(f"/v1/alerts/{a.acme_alert.pk}/events").json() == []
    assert len(o.globex_admin.get(f"/v1/alerts/{a.alert.pk}/events").json()) == 1


def alert_deliveries_get(o: Orgs) -> None:
    a = _alerts(o)
    assert o.acme.get(f"/v1/alerts/{a.alert.pk}/deliveries").status_code == 404
    assert o.acme.get(f"/v1/alerts/{a.acme_alert.pk}/deliveries").json() == []


def alert_delivery_retry_post(o: Orgs) -> None:
    from trace_web.alerts.models import Delivery

    a = _alerts(o)
    for alert in (a.alert, a.acme_alert):  # theirs, and theirs through acme's own alert
        url = f"/v1/alerts/{alert.pk}/deliveries/{a.delivery.pk}/retry"
        assert o.acme.post(url).status_code == 404
    assert Delivery.objects.get(pk=a.delivery.pk).status == "failed"


def alert_backtest_post(o: Orgs) -> None:
    a = _alerts(o)
    yaml = """
name: alerting
jobs:
  - name: evaluate
    activation: reactive
    runtime: udf
    operator: alert_evaluate
    execution_strategy: PerUpdate
    config: {chain_id: 31337}
    inputs: [{from: {dataset: chain.hot}}]
"""
    dag_sync(org=o.globex_org, yaml_text=yaml, activate=True)
    body = {"range_start": 0, "range_end": 10}
    before = Task.objects.count()
    assert o.acme.post(f"/v1/alerts/{a.alert.pk}/backtest", body, format="json").status_code == 404
    # acme's own alert: globex's job does not evaluate it.
    mine = o.acme.post(f"/v1/alerts/{a.acme_alert.pk}/backtest", body, format="json")
    assert mine.status_code == 409
    assert Task.objects.count() == before


def channels_list(o: Orgs) -> None:
    a = _alerts(o)
    assert [row["id"] for row in o.acme.get("/v1/channels").json()] == [a.acme_channel.pk]


def channels_post(o: Orgs) -> None:
    a = _alerts(o)
    body = {"name": "hook", "kind": "email", "target": "a@example.com"}
    response = o.acme.post("/v1/channels", body, format="json")
    assert response.status_code == 409  # acme's own channel of that name, not globex's
    renamed = o.acme.post("/v1/channels", {**body, "name": "mail"}, format="json")
    assert renamed.status_code == 201
    a.channel.refresh_from_db()
    assert a.channel.kind == "webhook"


def channel_get(o: Orgs) -> None:
    a = _alerts(o)
    assert o.acme.get(f"/v1/channels/{a.channel.pk}").status_code == 404


def channel_patch(o: Orgs) -> None:
    a = _alerts(o)
    response = o.acme.patch(f"/v1/channels/{a.channel.pk}", {"target": "http://e/v"}, format="json")
    assert response.status_code == 404
    a.channel.refresh_from_db()
    assert a.channel.target == "http://127.0.0.1:9/hook"


def channel_put(o: Orgs) -> None:
    a = _alerts(o)
    body = {"name": "hook", "kind": "webhook", "target": "http://evil/"}
    assert o.acme.put(f"/v1/channels/{a.channel.pk}", body, format="json").status_code == 404
    a.channel.refresh_from_db()
    assert a.channel.target == "http://127.0.0.1:9/hook"


def channel_delete(o: Orgs) -> None:
    from trace_web.alerts.models import Channel

    a = _alerts(o)
    assert o.acme.delete(f"/v1/channels/{a.channel.pk}").status_code == 404
    assert Channel.objects.filter(pk=a.channel.pk).exists()


def channel_rotate_secret_post(o: Orgs) -> None:
    from trace_web.alerts.models import Channel

    a = _alerts(o)
    before = Channel.objects.get(pk=a.channel.pk).secret
    assert o.acme.post(f"/v1/channels/{a.channel.pk}/rotate-secret").status_code == 404
    assert Channel.objects.get(pk=a.channel.pk).secret == before


CROSS_ORG_CASES: dict[str, Callable[[Orgs], None]] = {
    "GET /v1/dags": dags_list,
    "GET /v1/dags/{name}": dag_get,
    "GET /v1/chain-syncs": chain_syncs_list,
    "GET /v1/dags/{name}/versions": dag_versions_get,
    "POST /v1/dags/{name}/versions": dag_versions_post,
    "PUT /v1/dags/{name}/active": dag_active_put,
    "POST /v1/dags/{name}/jobs/{job}/runs": job_runs_post,
    "POST /v1/dags/{name}/jobs/{job}/webhook-secret": webhook_secret_post,
    "POST /v1/hooks/{org}/{name}/{job}": hooks_post,
    "GET /v1/tasks": tasks_list,
    "GET /v1/tasks/{task_id}": task_get,
    "POST /v1/tasks/{task_id}/cancel": task_cancel_post,
    "GET /v1/datasets": datasets_list,
    "GET /v1/datasets/{name}": dataset_get,
    "GET /v1/chains/{chain_id}/status": chain_status_get,
    "GET /v1/integrity-checks": integrity_checks_list,
    "GET /v1/chain-syncs/{name}": chain_sync_get,
    "POST /v1/query": query_post,
    "GET /v1/query/results/{result_id}": query_result_get,
    "GET /v1/udf/bundles": udf_bundles_list,
    "POST /v1/udf/bundles": udf_bundle_post,
    "GET /v1/udf/bundles/{ref}": udf_bundle_get,
    "GET /v1/udf/signing-policy": udf_signing_policy_get,
    "PUT /v1/udf/signing-policy": udf_signing_policy_put,
    "GET /v1/alerts": alerts_list,
    "POST /v1/alerts": alerts_post,
    "GET /v1/alerts/{alert_id}": alert_get,
    "PATCH /v1/alerts/{alert_id}": alert_patch,
    "PUT /v1/alerts/{alert_id}": alert_put,
    "DELETE /v1/alerts/{alert_id}": alert_delete,
    "GET /v1/alerts/{alert_id}/events": alert_events_get,
    "GET /v1/alerts/{alert_id}/deliveries": alert_deliveries_get,
    "POST /v1/alerts/{alert_id}/deliveries/{delivery_id}/retry": alert_delivery_retry_post,
    "POST /v1/alerts/{alert_id}/backtest": alert_backtest_post,
    "GET /v1/channels": channels_list,
    "POST /v1/channels": channels_post,
    "GET /v1/channels/{channel_id}": channel_get,
    "PATCH /v1/channels/{channel_id}": channel_patch,
    "PUT /v1/channels/{channel_id}": channel_put,
    "DELETE /v1/channels/{channel_id}": channel_delete,
    "POST /v1/channels/{channel_id}/rotate-secret": channel_rotate_secret_post,
}


def schema_operations() -> dict[str, dict]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        f"{method.upper()} {path}": operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_operation_has_a_cross_org_case_or_a_reason_it_needs_none():
    operations = set(schema_operations())
    missing = operations - set(CROSS_ORG_CASES) - set(NOT_ORG_SCOPED)
    assert not missing, f"operations without a cross-org case: {sorted(missing)}"
    stale = (set(CROSS_ORG_CASES) | set(NOT_ORG_SCOPED)) - operations
    assert not stale, f"cases for operations the schema no longer has: {sorted(stale)}"


@pytest.mark.parametrize("operation", sorted(CROSS_ORG_CASES))
def test_another_orgs_resources_are_out_of_reach(orgs, operation):
    CROSS_ORG_CASES[operation](orgs)


ORG_OPERATIONS = sorted(
    name
    for name, op in schema_operations().items()
    if any(p["name"] == "X-Trace-Org" for p in op.get("parameters", []))
)


@pytest.mark.parametrize("operation", ORG_OPERATIONS)
def test_a_user_of_two_orgs_must_name_one(orgs, org, operation):
    user = UserFactory(username="two-orgs")
    MembershipFactory(org=org, user=user, role=Role.ADMIN)
    MembershipFactory(org=orgs.globex_org, user=user, role=Role.ADMIN)
    client = APIClient()
    client.force_authenticate(user)
    method, path = operation.split(" ", 1)
    concrete = (
        path.replace("{name}", "sources")
        .replace("{job}", "hook")
        .replace("{task_id}", str(orgs.globex_task.pk))
        .replace("{chain_id}", "31337")
        .replace("{result_id}", "00000000-0000-4000-8000-000000000000")
        .replace("{ref}", "demo@1.0.0")
        .replace("{alert_id}", "1")
        .replace("{channel_id}", "1")
        .replace("{delivery_id}", "1")
    )
    before = Task.objects.count()
    response = getattr(client, method.lower())(concrete, {}, format="json")
    assert response.status_code == 403, (operation, response.json())
    assert "several orgs" in response.json()["detail"]
    assert Task.objects.count() == before
    named = getattr(client, method.lower())(concrete, {}, format="json", HTTP_X_TRACE_ORG="acme")
    assert named.status_code != 403 or "several orgs" not in named.json()["detail"]

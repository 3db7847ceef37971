"""What the alerting endpoints answer has exactly the shape the OpenAPI schema documents, for
their successes and their refusals (the schema's own checks are in
tests/integration/test_openapi_schema.py)."""

from __future__ import annotations

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator

from tests.alerts.conftest import alerting_dag, make_delivery, make_event, upload_bundle
from tests.integration.test_openapi_schema import assert_documented
from trace_web.alerts.models import AlertDefinition
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orgs.models import Role


@pytest.fixture(scope="module")
def schema():
    GENERATOR_STATS.reset()
    with GENERATOR_STATS.silence():
        generated = SchemaGenerator().get_schema(request=None, public=True)
    GENERATOR_STATS.reset()
    return generated


def test_alert_and_channel_endpoints_answer_as_documented(schema, org, api, client_for):
    def call(method, path, url=None, body=None, client=api):
        response = getattr(client, method)(url or path, body, format="json")
        assert_documented(schema, method, path, response)
        return response

    upload_bundle(org)
    hook = call(
        "post",
        "/v1/channels",
        body={"name": "h", "kind": "webhook", "target": "http://127.0.0.1:9/"},
    )
    assert hook.status_code == 201 and "secret" in hook.json()
    channel_id = hook.json()["id"]
    assert (
        call("post", "/v1/channels", body={"name": "h", "kind": "sms", "target": "1"}).status_code
        == 400
    )
    assert (
        call(
            "post", "/v1/channels", body={"name": "h", "kind": "sms", "target": "+15550100"}
        ).status_code
        == 409
    )
    channel_url = f"/v1/channels/{channel_id}"
    call("get", "/v1/channels")
    call("get", "/v1/channels/{channel_id}", channel_url)
    call("patch", "/v1/channels/{channel_id}", channel_url, {"enabled": False})
    call(
        "put",
        "/v1/channels/{channel_id}",
        channel_url,
        {"name": "h", "kind": "webhook", "target": "http://127.0.0.1:9/"},
    )
    rotate = "/v1/channels/{channel_id}/rotate-secret"
    assert call("post", rotate, f"{channel_url}/rotate-secret").status_code == 200
    viewer = client_for(org, Role.VIEWER)
    assert call("post", rotate, f"{channel_url}/rotate-secret", client=viewer).status_code == 403
    assert call("get", "/v1/channels/{channel_id}", "/v1/channels/999999").status_code == 404

    spec = {
        "name": "a",
        "chain_id": 31337,
        "bundle": "demo@1.0.0",
        "datasets": ["logs"],
        "channels": ["h"],
    }
    created = call("post", "/v1/alerts", body=spec)
    assert created.status_code == 201
    alert_id = created.json()["id"]
    to_alice = {"match": "transaction", "to": ["0x" + "a1" * 20]}
    condition = {"name": "c", "chain_id": 1, "condition": to_alice}
    assert call("post", "/v1/alerts", body=condition).status_code == 201
    assert call("post", "/v1/alerts", body=spec).status_code == 409
    assert call("post", "/v1/alerts", body={}).status_code == 400
    assert call("post", "/v1/alerts", body=spec, client=viewer).status_code == 403
    url = f"/v1/alerts/{alert_id}"
    call("get", "/v1/alerts")
    call("get", "/v1/alerts/{alert_id}", url)
    call("patch", "/v1/alerts/{alert_id}", url, {"severity": "high"})
    call("put", "/v1/alerts/{alert_id}", url, spec)
    assert call("get", "/v1/alerts/{alert_id}", "/v1/alerts/999999").status_code == 404

    definition = AlertDefinition.objects.get(pk=alert_id)
    event = make_event(definition, block=3, tx_hash="0x" + "cd" * 32, log_index=0)
    failed = make_delivery(event, definition.channels.get(), status="failed", error="HTTP 500")
    call("get", "/v1/alerts/{alert_id}/events", f"{url}/events?limit=1")
    assert call("get", "/v1/alerts/{alert_id}/events", f"{url}/events?state=x").status_code == 400
    call("get", "/v1/alerts/{alert_id}/deliveries", f"{url}/deliveries")
    retry = "/v1/alerts/{alert_id}/deliveries/{delivery_id}/retry"
    assert call("post", retry, f"{url}/deliveries/{failed.pk}/retry").status_code == 200
    assert call("post", retry, f"{url}/deliveries/{failed.pk}/retry").status_code == 409

    backtest = "/v1/alerts/{alert_id}/backtest"
    body = {"range_start": 0, "range_end": 10}
    assert call("post", backtest, f"{url}/backtest", body).status_code == 409
    dag_sync(org=org, yaml_text=alerting_dag(), activate=True)
    assert call("post", backtest, f"{url}/backtest", body).status_code == 202
    assert call("post", backtest, f"{url}/backtest", {"range_start": 1}).status_code == 400

    assert call("delete", "/v1/alerts/{alert_id}", url).status_code == 200
    assert call("delete", "/v1/channels/{channel_id}", channel_url).status_code == 200

"""/v1/alerts: define, show, change and delete alert definitions through the API, as a user
would; every refusal names its field, another org's bundle and channels are no such thing,
and roles gate writes (viewers read, members write)."""

from __future__ import annotations

import pytest

from tests.alerts.conftest import upload_bundle
from trace_web.alerts.models import AlertDefinition, Channel
from trace_web.orgs.models import Role

WEBHOOK = {"name": "ops-hook", "kind": "webhook", "target": "http://127.0.0.1:9/hook"}


@pytest.fixture
def bundle_of_acme(org):
    return upload_bundle(org)


@pytest.fixture
def hook(api):
    response = api.post("/v1/channels", WEBHOOK, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def handler_alert(**overrides):
    return {
        "name": "big-transfers",
        "chain_id": 31337,
        "bundle": "demo@1.0.0",
        "entrypoint": "main",
        "params": {"min_value": 10**18},
        "datasets": ["transactions", "logs"],
        **overrides,
    }


def test_a_handler_alert_is_created_shown_and_listed(api, bundle_of_acme, hook):
    body = handler_alert(channels=["ops-hook"], severity="high", confirmations=3)
    created = api.post("/v1/alerts", body, format="json")
    assert created.status_code == 201, created.json()
    alert = created.json()
    assert alert["bundle"] == "demo@1.0.0" and alert["condition"] is None
    assert alert["datasets"] == ["logs", "transactions"]
    assert alert["channels"] == [{"id": hook["id"], "name": "ops-hook", "kind": "webhook"}]
    assert (alert["severity"], alert["confirmations"], alert["enabled"]) == ("high", 3, True)
    assert alert["params"] == {"min_value": 10**18}
    assert alert["owner"] == api.user.username
    stored = AlertDefinition.objects.get(pk=alert["id"])
    assert stored.bundle_id == bundle_of_acme.pk and stored.max_staleness_seconds is None
    assert api.get(f"/v1/alerts/{alert['id']}").json() == alert
    assert [a["name"] for a in api.get("/v1/alerts").json()] == ["big-transfers"]
    assert api.get("/v1/alerts?chain_id=1").json() == []
    assert len(api.get("/v1/alerts?enabled=true&severity=high").json()) == 1


def test_channels_are_named_by_name_or_id(api, bundle_of_acme, hook):
    second = api.post("/v1/channels", {**WEBHOOK, "name": "second"}, format="json").json()
    created = api.post(
        "/v1/alerts", handler_alert(channels=[second["id"], "ops-hook"]), format="json"
    )
    assert {c["name"] for c in created.json()["channels"]} == {"ops-hook", "second"}


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"bundle": None}, ["give exactly one of `condition` or `bundle`"]),
        (
            {"condition": {"to": "0x" + "11" * 20}},
            [
                "give exactly one of `condition` or `bundle`",
                "entrypoint: only for a bundle handler (this alert has a condition)",
                "params: only for a bundle handler (this alert has a condition)",
                "datasets: derived from the condition; leave it out",
            ],
        ),
        ({"bundle": "demo@9.9.9"}, ["bundle: no bundle 'demo@9.9.9' in this org"]),
        ({"bundle": "not a ref"}, ["bundle: must match"]),
        ({"datasets": []}, ["datasets: required for a handler: blocks, transactions, logs"]),
        ({"datasets": ["logs", "logs"]}, ["datasets: each dataset at most once"]),
        ({"datasets": ["traces"]}, ["datasets[0]: must be one of 'blocks', 'transactions'"]),
        ({"confirmations": 1001}, ["confirmations: must be <= 1000"]),
        ({"confirmations": -1}, ["confirmations: must be >= 0"]),
        ({"chain_id": 0}, ["chain_id: must be >= 1"]),
        ({"chain_id": "1"}, ["chain_id: must be an integer, got '1'"]),
        ({"severity": "urgent"}, ["severity: must be one of 'info'"]),
        ({"max_staleness_seconds": 0}, ["max_staleness_seconds: must be >= 1"]),
        ({"params": {"blob": "x" * 20_000}}, ["params: at most 16384 bytes as JSON, got"]),
        ({"params": [1]}, ["params: must be a mapping"]),
        ({"entrypoint": "not-an-identifier"}, ["entrypoint: must match"]),
        ({"channels": ["nope"]}, ["channels[0]: no channel 'nope' in this org"]),
        ({"channels": ["ops-hook", "ops-hook"]}, ["channels[1]: 'ops-hook' is named twice"]),
        ({"name": "has space"}, ["name: must match"]),
        ({"name": ""}, ["name: must match"]),
        ({"colour": "red"}, ["colour: unknown field"]),
        ({"org": 2}, ["org: reserved field"]),
    ],
)
def test_refusals_name_the_field(api, bundle_of_acme, hook, changes, errors):
    response = api.post("/v1/alerts", handler_alert(**changes), format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == "invalid"
    assert len(body["errors"]) == len(errors), body["errors"]
    for got, expected in zip(body["errors"], errors, strict=True):
        assert got.startswith(expected), (got, expected)
    assert not AlertDefinition.objects.exists()


def test_a_body_that_is_not_an_object_or_not_json_is_refused(api):
    assert api.post("/v1/alerts", [1, 2], format="json").json()["errors"] == [
        "the body must be a JSON object"
    ]
    form = api.post("/v1/alerts", {"name": "x"})  # multipart: JSON only
    assert form.status_code == 415 and form.json()["error"] == "unsupported_media_type"


def test_every_missing_field_is_named_at_once(api):
    response = api.post("/v1/alerts", {}, format="json")
    assert response.json()["errors"] == [
        "name: required",
        "chain_id: required",
        "give exactly one of `condition` or `bundle`",
    ]


def test_another_orgs_bundle_and_channels_are_no_such_thing(api, other_org, bundle_of_acme):
    upload_bundle(other_org, name="theirs")
    theirs = Channel.objects.create(org=other_org, name="their-hook", kind="webhook", target="x")
    response = api.post(
        "/v1/alerts",
        handler_alert(bundle="theirs@1.0.0", channels=[theirs.pk, "their-hook"]),
        format="json",
    )
    assert response.json()["errors"] == [
        "bundle: no bundle 'theirs@1.0.0' in this org",
        f"channels[0]: no channel {theirs.pk} in this org",
        "channels[1]: no channel 'their-hook' in this org",
    ]


def test_a_name_is_unique_in_the_org_not_across_orgs(api, org, other_org, bundle_of_acme):
    assert api.post("/v1/alerts", handler_alert(), format="json").status_code == 201
    again = api.post("/v1/alerts", handler_alert(), format="json")
    assert again.status_code == 409
    assert again.json()["errors"] == ["name: the org already has an alert named 'big-transfers'"]
    upload_bundle(other_org)
    from trace_web.alerts.services import alert_definition_create

    theirs = alert_definition_create(org=other_org, spec=handler_alert())
    assert theirs.org_id == other_org.pk
    assert AlertDefinition.objects.filter(name="big-transfers").count() == 2


def test_patch_changes_the_fields_given_and_checks_the_whole(api, bundle_of_acme, hook):
    alert = api.post("/v1/alerts", handler_alert(channels=["ops-hook"]), format="json").json()
    url = f"/v1/alerts/{alert['id']}"
    patched = api.patch(url, {"enabled": False, "confirmations": 12}, format="json")
    assert patched.status_code == 200, patched.json()
    assert (patched.json()["enabled"], patched.json()["confirmations"]) == (False, 12)
    assert patched.json()["channels"] == alert["channels"]  # untouched
    assert patched.json()["params"] == alert["params"]
    # The structure first (what every field is), then the names looked up in the org.
    refused = api.patch(url, {"datasets": None, "channels": ["gone"]}, format="json")
    assert refused.json()["errors"] == [
        "datasets: required for a handler: blocks, transactions, logs",
    ]
    refused = api.patch(url, {"channels": ["gone"]}, format="json")
    assert refused.json()["errors"] == ["channels[0]: no channel 'gone' in this org"]
    assert AlertDefinition.objects.get(pk=alert["id"]).confirmations == 12
    emptied = api.patch(url, {"channels": []}, format="json")
    assert emptied.json()["channels"] == []


def test_put_replaces_the_definition(api, bundle_of_acme, hook):
    alert = api.post(
        "/v1/alerts", handler_alert(channels=["ops-hook"], severity="high"), format="json"
    ).json()
    url = f"/v1/alerts/{alert['id']}"
    replaced = api.put(url, handler_alert(name="renamed", params={}), format="json")
    assert replaced.status_code == 200, replaced.json()
    body = replaced.json()
    assert (body["name"], body["severity"], body["channels"], body["params"]) == (
        "renamed",
        "medium",
        [],
        {},
    )
    assert api.put(url, {"name": "renamed"}, format="json").json()["errors"] == [
        "chain_id: required",
        "give exactly one of `condition` or `bundle`",
    ]


def test_renaming_onto_another_alerts_name_is_a_conflict(api, bundle_of_acme):
    api.post("/v1/alerts", handler_alert(name="first"), format="json")
    second = api.post("/v1/alerts", handler_alert(name="second"), format="json").json()
    response = api.patch(f"/v1/alerts/{second['id']}", {"name": "first"}, format="json")
    assert response.status_code == 409
    assert AlertDefinition.objects.get(pk=second["id"]).name == "second"
    # Its own name is no conflict.
    same = api.patch(f"/v1/alerts/{second['id']}", {"name": "second"}, format="json")
    assert same.status_code == 200


def test_delete_removes_the_alert_and_its_events(api, bundle_of_acme):
    from tests.alerts.conftest import make_event
    from trace_web.alerts.models import AlertEvent

    alert = api.post("/v1/alerts", handler_alert(), format="json").json()
    make_event(AlertDefinition.objects.get(pk=alert["id"]), block=5)
    response = api.delete(f"/v1/alerts/{alert['id']}")
    assert response.status_code == 200 and response.json() == {"id": alert["id"], "deleted": True}
    assert not AlertDefinition.objects.exists() and not AlertEvent.objects.exists()
    assert api.get(f"/v1/alerts/{alert['id']}").status_code == 404
    assert api.delete(f"/v1/alerts/{alert['id']}").status_code == 404


def test_viewers_read_members_write(org, client_for, bundle_of_acme):
    viewer = client_for(org, Role.VIEWER)
    member = client_for(org, Role.MEMBER)
    refused = viewer.post("/v1/alerts", handler_alert(), format="json")
    assert refused.status_code == 403 and "needs 'member'" in refused.json()["detail"]
    created = member.post("/v1/alerts", handler_alert(), format="json")
    assert created.status_code == 201
    url = f"/v1/alerts/{created.json()['id']}"
    assert viewer.get(url).status_code == 200
    assert viewer.get("/v1/alerts").status_code == 200
    for write in (
        viewer.patch(url, {"enabled": False}, format="json"),
        viewer.put(url, handler_alert(), format="json"),
        viewer.delete(url),
    ):
        assert write.status_code == 403
    assert AlertDefinition.objects.get().enabled is True
    # A member edits and deletes any alert of the org, as any other write of the API.
    other_member = client_for(org, Role.MEMBER, username="another-member")
    assert other_member.patch(url, {"enabled": False}, format="json").status_code == 200
    assert other_member.delete(url).status_code == 200


def test_not_signed_in_is_refused(org):
    from rest_framework.test import APIClient

    response = APIClient().get("/v1/alerts")
    assert response.status_code == 403 and response.json()["error"] == "not_authenticated"


ALICE = "0x" + "a1" * 20
TRANSFER = "Transfer(address indexed from, address indexed to, uint256 value)"


def test_a_condition_alert_derives_its_datasets(api, hook):
    condition = {"match": "log", "address": [ALICE], "event": TRANSFER, "where": "value > 10**18"}
    body = {"name": "whale", "chain_id": 31337, "condition": condition, "channels": [hook["id"]]}
    created = api.post("/v1/alerts", body, format="json")
    assert created.status_code == 201, created.json()
    alert = created.json()
    assert alert["condition"] == condition and alert["bundle"] is None
    assert alert["datasets"] == ["blocks", "logs"]
    assert (alert["entrypoint"], alert["params"]) == ("", {})
    # Another match changes what it reads; a handler's fields are dropped when it gets one.
    url = f"/v1/alerts/{alert['id']}"
    as_tx = {"match": "transaction", "from": [ALICE], "where": "value > 10**18"}
    assert api.patch(url, {"condition": as_tx}, format="json").json()["datasets"] == [
        "blocks",
        "transactions",
    ]


def test_a_condition_is_checked_by_the_condition_language(api):
    body = {"name": "bad", "chain_id": 31337}
    refusals = {
        "unknown match": {"match": "trace"},
        "bad address": {"match": "transaction", "from": ["0x12"]},
        "bad where": {"match": "transaction", "where": "__import__('os')"},
        "bad event": {"match": "log", "event": "Transfer(address"},
        "not an object": "value > 1",
    }
    for name, condition in refusals.items():
        response = api.post("/v1/alerts", {**body, "condition": condition}, format="json")
        assert response.status_code == 400, (name, response.json())
        errors = response.json()["errors"]
        assert errors and all(e.startswith("condition") for e in errors), (name, errors)
    assert not AlertDefinition.objects.exists()


def test_switching_from_a_handler_to_a_condition_drops_the_handlers_fields(api, bundle_of_acme):
    alert = api.post("/v1/alerts", handler_alert(), format="json").json()
    switched = api.patch(
        f"/v1/alerts/{alert['id']}",
        {"condition": {"match": "transaction", "to": [ALICE]}, "bundle": None},
        format="json",
    )
    assert switched.status_code == 200, switched.json()
    body = switched.json()
    assert (body["bundle"], body["entrypoint"], body["params"]) == (None, "", {})
    assert body["datasets"] == ["blocks", "transactions"]
    back = api.patch(
        f"/v1/alerts/{alert['id']}",
        {"bundle": "demo@1.0.0", "condition": None, "datasets": ["logs"]},
        format="json",
    )
    assert back.status_code == 200, back.json()
    assert (back.json()["condition"], back.json()["datasets"]) == (None, ["logs"])

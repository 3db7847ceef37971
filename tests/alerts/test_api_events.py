"""A definition's events and deliveries through the API (filtered, paged newest first with a
`Link` to the next page), retrying a failed delivery, and a backtest queued as a manual task
of the `alert_evaluate` job that evaluates the definition live."""

from __future__ import annotations

import pytest

from tests.alerts.conftest import alerting_dag, make_delivery, make_event, upload_bundle
from trace_web.alerts.models import Channel
from trace_web.alerts.services import alert_definition_create
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orgs.models import Role


@pytest.fixture
def definition(org):
    upload_bundle(org)
    return alert_definition_create(
        org=org,
        spec={
            "name": "big-transfers",
            "chain_id": 31337,
            "bundle": "demo@1.0.0",
            "datasets": ["transactions"],
        },
    )


@pytest.fixture
def channel(org):
    return Channel.objects.create(org=org, name="hook", kind="webhook", target="http://x/y")


def test_events_are_listed_newest_first_and_filtered(api, definition):
    live = [make_event(definition, block=b) for b in (10, 11, 12)]
    retracted = make_event(definition, block=13, state="retracted")
    backtested = make_event(definition, block=2, backtest=True)
    url = f"/v1/alerts/{definition.pk}/events"

    def ids(query=""):
        response = api.get(url + query)
        assert response.status_code == 200, response.json()
        return [e["id"] for e in response.json()]

    assert ids() == [backtested.pk, retracted.pk, *[e.pk for e in reversed(live)]]
    assert ids("?state=retracted") == [retracted.pk]
    assert ids("?state=active&backtest=false") == [e.pk for e in reversed(live)]
    assert ids("?backtest=true") == [backtested.pk]
    assert ids("?block_from=11&block_to=13") == [live[2].pk, live[1].pk]
    first = api.get(url + "?limit=2&backtest=false").json()[0]
    assert first["block_number"] == 13 and first["state"] == "retracted"
    assert first["definition"] == definition.pk and first["backtest"] is False
    assert api.get(url + "?state=gone").json()["errors"][0].startswith("state: ")
    assert api.get(url + "?colour=red").json()["errors"] == ["colour: unknown field"]


def test_a_full_page_links_the_next_one(api, definition):
    events = [make_event(definition, block=b) for b in range(5)]
    url = f"/v1/alerts/{definition.pk}/events?limit=2&state=active"
    seen, pages = [], 0
    while url:
        response = api.get(url)
        seen += [e["id"] for e in response.json()]
        pages += 1
        link = response.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else None
        assert "state=active" in (link or "state=active")  # the filters carry over
    assert seen == [e.pk for e in reversed(events)] and pages == 3


def test_deliveries_are_listed_and_filtered(api, definition, channel, org):
    other = Channel.objects.create(org=org, name="mail", kind="email", target="a@example.com")
    event = make_event(definition, block=5)
    sent = make_delivery(event, channel, status="delivered", provider_message_id="m-1")
    failed = make_delivery(event, other, status="failed", attempt=12, error="HTTP 500")
    url = f"/v1/alerts/{definition.pk}/deliveries"
    rows = api.get(url).json()
    assert [d["id"] for d in rows] == [failed.pk, sent.pk]
    assert rows[0]["channel"] == {"id": other.pk, "name": "mail", "kind": "email"}
    assert (rows[0]["status"], rows[0]["attempt"], rows[0]["error"]) == ("failed", 12, "HTTP 500")
    assert "lease_token" not in rows[0]
    assert [d["id"] for d in api.get(url + "?status=failed").json()] == [failed.pk]
    assert [d["id"] for d in api.get(url + f"?channel={channel.pk}").json()] == [sent.pk]
    assert api.get(url + "?purpose=retract").json() == []
    # Another definition's deliveries are not this one's.
    upload_bundle(org, version="2.0.0")
    second = alert_definition_create(
        org=org,
        spec={"name": "two", "chain_id": 1, "bundle": "demo@2.0.0", "datasets": ["logs"]},
    )
    assert api.get(f"/v1/alerts/{second.pk}/deliveries").json() == []


def test_a_backtest_without_an_alert_evaluate_job_says_how_to_get_one(api, definition):
    response = api.post(
        f"/v1/alerts/{definition.pk}/backtest", {"range_start": 0, "range_end": 100}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "no alert_evaluate job evaluates alert 'big-transfers' (chain 31337); deploy one: "
        "see docs/alerts.md"
    )
    assert not Task.objects.exists()


def test_a_backtest_is_a_manual_task_of_the_job_that_evaluates_the_alert(api, org, definition):
    dag_sync(org=org, yaml_text=alerting_dag("other-chain", "{chain_id: 1}"), activate=True)
    dag_sync(
        org=org, yaml_text=alerting_dag("named", "{chain_id: 31337, alerts: [x]}"), activate=True
    )
    url = f"/v1/alerts/{definition.pk}/backtest"
    body = {"range_start": 100, "range_end": 200}
    # Neither evaluates it: another chain, and a list of alerts without it.
    assert api.post(url, body, format="json").status_code == 409
    dag_sync(org=org, yaml_text=alerting_dag("watch"), activate=True)  # every alert of 31337
    response = api.post(url, body, format="json")
    assert response.status_code == 202, response.json()
    task = Task.objects.get(pk=response.json()["task_id"])
    assert response.json() == {
        "task_id": task.pk,
        "status": "Queued",
        "dag": "watch",
        "job": "evaluate",
        "range_start": 100,
        "range_end": 200,
        "deliver": False,
    }
    assert (task.job.operator, task.trigger) == ("alert_evaluate", "manual")
    assert (task.range_start, task.range_end) == (100, 200)
    assert task.payload == {"backtest": True, "deliver": False, "definitions": [definition.pk]}
    delivered = api.post(url, {**body, "deliver": True}, format="json").json()
    assert Task.objects.get(pk=delivered["task_id"]).payload["deliver"] is True


def test_a_job_naming_the_alert_runs_its_backtest(api, org, definition):
    dag_sync(
        org=org,
        yaml_text=alerting_dag("named", "{chain_id: 31337, alerts: [big-transfers]}"),
        activate=True,
    )
    response = api.post(
        f"/v1/alerts/{definition.pk}/backtest", {"range_start": 0, "range_end": 1}, format="json"
    )
    assert response.status_code == 202 and response.json()["dag"] == "named"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"range_start": 5, "range_end": 5}, "range_end: must be > range_start (5)"),
        ({"range_start": 9, "range_end": 5}, "range_end: must be > range_start (9)"),
        (
            {"range_start": 0, "range_end": 1_000_001},
            "range_end: a backtest covers at most 1000000 blocks "
            "(TRACE_ALERT_BACKTEST_MAX_BLOCKS), got 1000001",
        ),
        ({"range_start": -1, "range_end": 5}, "range_start: must be >= 0"),
        ({"range_end": 5}, "range_start: required"),
        ({"range_start": 0, "range_end": 5, "deliver": "yes"}, "deliver: must be a boolean"),
        ({"range_start": 0, "range_end": 5, "definitions": [1]}, "definitions: unknown field"),
    ],
)
def test_a_backtest_range_is_checked(api, org, definition, body, error):
    dag_sync(org=org, yaml_text=alerting_dag(), activate=True)
    response = api.post(f"/v1/alerts/{definition.pk}/backtest", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0].startswith(error), response.json()
    assert not Task.objects.exists()


def test_a_backtest_needs_a_member(org, client_for, definition):
    dag_sync(org=org, yaml_text=alerting_dag(), activate=True)
    viewer = client_for(org, Role.VIEWER)
    body = {"range_start": 0, "range_end": 10}
    refused = viewer.post(f"/v1/alerts/{definition.pk}/backtest", body, format="json")
    assert refused.status_code == 403 and not Task.objects.exists()
    assert viewer.get(f"/v1/alerts/{definition.pk}/events").status_code == 200
    assert viewer.get(f"/v1/alerts/{definition.pk}/deliveries").status_code == 200


def test_a_failed_delivery_is_retried_and_woken(api, definition, channel):
    from trace_web.orchestration.models import Outbox, OutboxKind

    event = make_event(definition, block=5)
    failed = make_delivery(event, channel, status="failed", attempt=12, error="HTTP 500")
    sent = make_delivery(make_event(definition, block=6), channel, status="delivered", attempt=1)
    url = f"/v1/alerts/{definition.pk}/deliveries/{failed.pk}/retry"
    response = api.post(url)
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["attempt"]) == ("pending", 0)
    wakes = Outbox.objects.filter(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": failed.pk})
    assert wakes.count() == 1
    again = api.post(url)  # pending now: on its way already
    assert again.status_code == 409 and "only a failed delivery" in again.json()["detail"]
    delivered = api.post(f"/v1/alerts/{definition.pk}/deliveries/{sent.pk}/retry")
    assert delivered.status_code == 409
    assert wakes.count() == 1


def test_a_delivery_is_retried_only_through_its_own_alert(api, org, definition, channel):
    upload_bundle(org, version="2.0.0")
    second = alert_definition_create(
        org=org,
        spec={"name": "two", "chain_id": 1, "bundle": "demo@2.0.0", "datasets": ["logs"]},
    )
    failed = make_delivery(make_event(definition, block=5), channel, status="failed")
    response = api.post(f"/v1/alerts/{second.pk}/deliveries/{failed.pk}/retry")
    assert response.status_code == 404
    failed.refresh_from_db()
    assert failed.status == "failed"


def test_retrying_needs_a_member(org, client_for, definition, channel):
    failed = make_delivery(make_event(definition, block=5), channel, status="failed")
    viewer = client_for(org, Role.VIEWER)
    url = f"/v1/alerts/{definition.pk}/deliveries/{failed.pk}/retry"
    assert viewer.post(url).status_code == 403
    failed.refresh_from_db()
    assert failed.status == "failed"

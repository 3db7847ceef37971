"""Alerting in the admin, as an operator uses it through Django's test client: definitions and
channels added and changed through the services (refusals shown on their fields, another org's
channel refused), a channel's secret never on a page, events and deliveries read-only with
their filters, failed deliveries retried and dead letters replayed by actions."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.alerts.conftest import make_delivery, make_event, upload_bundle
from trace_web.alerts.models import AlertDefinition, Channel, DeadLetterBatch
from trace_web.alerts.services import alert_definition_create, channel_create
from trace_web.orchestration.models import Outbox, OutboxKind

TO_ALICE = {"match": "transaction", "to": ["0x" + "a1" * 20]}


@pytest.fixture
def admin_client(db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def hook(org):
    return channel_create(
        org=org, spec={"name": "hook", "kind": "webhook", "target": "http://127.0.0.1:9/"}
    ).channel


@pytest.fixture
def definition(org, hook):
    return alert_definition_create(
        org=org,
        spec={"name": "whale", "chain_id": 31337, "condition": TO_ALICE, "channels": ["hook"]},
    )


def act(client, model: str, action: str, *rows):
    response = client.post(
        f"/admin/alerts/{model}/",
        {"action": action, "_selected_action": [str(r.pk) for r in rows]},
        follow=True,
    )
    assert response.status_code == 200, response.content[:500]
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def definition_form(org, **overrides):
    form = {
        "org": str(org.pk),
        "name": "whale",
        "description": "",
        "severity": "high",
        "enabled": "on",
        "chain_id": "31337",
        "condition": json.dumps(TO_ALICE),
        "bundle": "",
        "entrypoint": "",
        "params": "{}",
        "datasets": "[]",
        "confirmations": "0",
        "max_staleness_seconds": "",
    }
    form.update(overrides)
    return form


def test_a_definition_added_in_the_admin_is_checked_as_the_api_checks_it(admin_client, org, hook):
    response = admin_client.post(
        "/admin/alerts/alertdefinition/add/", definition_form(org, channels=[str(hook.pk)])
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    created = AlertDefinition.objects.get()
    assert created.datasets == ["blocks", "transactions"]  # derived, as through the API
    assert list(created.channels.all()) == [hook] and created.owner.username == "root"

    bad_where = definition_form(
        org, name="bad", condition=json.dumps({**TO_ALICE, "where": "__import__('os')"})
    )
    refused = admin_client.post("/admin/alerts/alertdefinition/add/", bad_where)
    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert "condition" in errors, errors
    assert AlertDefinition.objects.count() == 1


def test_another_orgs_channel_or_bundle_is_refused_on_its_field(admin_client, org, other_org):
    theirs = channel_create(
        org=other_org, spec={"name": "theirs", "kind": "email", "target": "a@example.com"}
    ).channel
    their_bundle = upload_bundle(other_org, name="secret")
    response = admin_client.post(
        "/admin/alerts/alertdefinition/add/",
        definition_form(org, channels=[str(theirs.pk)]),
    )
    errors = response.context["adminform"].form.errors
    assert errors["channels"] == [f"no channel {theirs.pk} in this org"]
    handler = definition_form(org, condition="", bundle=str(their_bundle.pk), datasets='["logs"]')
    errors = (
        admin_client.post("/admin/alerts/alertdefinition/add/", handler)
        .context["adminform"]
        .form.errors
    )
    assert errors["bundle"][0].startswith("no bundle ")
    assert not AlertDefinition.objects.exists()


def test_a_definition_changed_in_the_admin_goes_through_the_service(
    admin_client, org, definition, hook
):
    url = f"/admin/alerts/alertdefinition/{definition.pk}/change/"
    form = definition_form(org, confirmations="12", channels=[str(hook.pk)])
    del form["org"]  # read-only once created
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    definition.refresh_from_db()
    assert definition.confirmations == 12 and list(definition.channels.all()) == [hook]
    too_deep = admin_client.post(url, {**form, "confirmations": "5000"})
    assert "confirmations" in too_deep.context["adminform"].form.errors
    definition.refresh_from_db()
    assert definition.confirmations == 12


def test_a_channels_secret_is_never_on_a_page_but_once_when_made(admin_client, org, hook):
    for url in (
        "/admin/alerts/channel/",
        f"/admin/alerts/channel/{hook.pk}/change/",
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert hook.secret not in page.content.decode()
    messages = act(admin_client, "channel", "rotate_secret", hook)
    hook.refresh_from_db()
    assert messages == [("warning", f"hook: new signing secret {hook.secret} (shown this once)")]
    added = admin_client.post(
        "/admin/alerts/channel/add/",
        {
            "org": str(org.pk),
            "name": "second",
            "kind": "webhook",
            "target": "https://hooks.example.com/x",
            "chat_id": "",
            "rate_limit_per_minute": "60",
            "min_severity": "info",
            "send_retractions": "on",
            "enabled": "on",
        },
        follow=True,
    )
    second = Channel.objects.get(name="second")
    shown = [m.message for m in added.context["messages"]]
    assert f"second: signing secret {second.secret} (shown this once)" in shown
    page = admin_client.get(f"/admin/alerts/channel/{second.pk}/change/").content.decode()
    assert second.secret not in page


def test_a_channel_form_checks_the_target_of_its_kind(admin_client, org):
    response = admin_client.post(
        "/admin/alerts/channel/add/",
        {
            "org": str(org.pk),
            "name": "phone",
            "kind": "sms",
            "target": "not-a-number",
            "chat_id": "",
            "rate_limit_per_minute": "60",
            "min_severity": "info",
            "enabled": "on",
        },
    )
    errors = response.context["adminform"].form.errors
    assert errors["target"][0].startswith("sms needs a phone number in E.164 form")
    assert not Channel.objects.filter(name="phone").exists()


def test_events_and_deliveries_are_read_only_with_filters(admin_client, definition, hook):
    event = make_event(definition, block=7, tx_hash="0x" + "cd" * 32)
    make_delivery(event, hook, status="failed", error="HTTP 500 from 127.0.0.1")
    for url in (
        "/admin/alerts/alertevent/?state__exact=active",
        "/admin/alerts/alertevent/?backtest__exact=1",
        f"/admin/alerts/delivery/?status__exact=failed&channel__id__exact={hook.pk}",
        "/admin/alerts/delivery/?status__exact=delivered",
    ):
        assert admin_client.get(url).status_code == 200, url
    listed = admin_client.get("/admin/alerts/delivery/?status__exact=failed").content.decode()
    assert "HTTP 500 from 127.0.0.1" in listed
    assert admin_client.get("/admin/alerts/delivery/add/").status_code == 403
    assert admin_client.get("/admin/alerts/alertevent/add/").status_code == 403
    page = admin_client.get(f"/admin/alerts/alertevent/{event.pk}/change/")
    assert page.status_code == 200 and 'name="block_number"' not in page.content.decode()


def test_retry_failed_deliveries_action(admin_client, definition, hook):
    failed = make_delivery(make_event(definition, block=7), hook, status="failed", attempt=12)
    sent = make_delivery(make_event(definition, block=8), hook, status="delivered")
    messages = act(admin_client, "delivery", "retry", failed, sent)
    assert ("success", f"delivery {failed.pk}: pending again, with a fresh round of attempts") in (
        messages
    )
    refusal = [m for level, m in messages if level == "error"]
    assert len(refusal) == 1 and refusal[0].startswith(f"delivery {sent.pk}: status: ")
    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.attempt, sent.status) == ("pending", 0, "delivered")
    wake = Outbox.objects.filter(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": failed.pk})
    assert wake.count() == 1


def test_dead_letters_are_listed_and_a_replay_refusal_is_a_message(admin_client, org):
    dead = DeadLetterBatch.objects.create(
        org=org,
        task_id=41,
        attempt=1,
        record={"batches": [{"location": "file:///nowhere/x.jsonl", "row_count": 3}]},
        error="batch 0 line 2: block_hash: must match",
        status="replayed",
    )
    listing = admin_client.get("/admin/alerts/deadletterbatch/?status__exact=replayed")
    assert listing.status_code == 200 and "batch 0 line 2" in listing.content.decode()
    messages = act(admin_client, "deadletterbatch", "replay", dead)
    assert messages == [
        ("error", f"dead letter {dead.pk}: status: dead letter {dead.pk} was already replayed")
    ]


def test_the_replay_action_writes_a_repaired_publication(admin_client, org, definition, hot_engine):
    from tests.alerts.conftest import dead_letter, event_row
    from trace_web.alerts.models import AlertEvent

    letter = dead_letter(org, definition, [event_row(definition, block=4)], task_id=77)
    messages = act(admin_client, "deadletterbatch", "replay", letter)
    assert messages == [
        (
            "success",
            f"dead letter {letter.pk}: replayed: 1 event(s) created, 0 existing, 0 stale, "
            "0 retracted, 1 deliveries",
        )
    ]
    assert AlertEvent.objects.get().block_number == 4
    letter.refresh_from_db()
    assert letter.status == "replayed"

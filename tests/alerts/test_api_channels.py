"""/v1/channels: where alerts go. Each kind's target is checked (URL, email address, E.164
number, Telegram's chat id), a webhook's signing secret is shown when made and never again,
rotating it is for admins, and rate limits stay within 1..10000."""

from __future__ import annotations

import pytest

from trace_web.alerts.models import Channel
from trace_web.orgs.models import Role

HOOK = {"name": "ops-hook", "kind": "webhook", "target": "https://hooks.example.com/trace"}


def test_a_webhook_gets_a_secret_shown_once(api):
    created = api.post("/v1/channels", HOOK, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    secret = body["secret"]
    assert len(secret) >= 43 and body["has_secret"] is True
    assert Channel.objects.get(pk=body["id"]).secret == secret
    shown = api.get(f"/v1/channels/{body['id']}").json()
    assert "secret" not in shown and shown["has_secret"] is True
    assert all("secret" not in c for c in api.get("/v1/channels").json())
    assert secret not in api.get("/v1/channels").content.decode()
    patched = api.patch(f"/v1/channels/{body['id']}", {"rate_limit_per_minute": 5}, format="json")
    assert "secret" not in patched.json()  # an edit keeps the secret, and does not show it
    assert Channel.objects.get(pk=body["id"]).secret == secret


def test_rotating_a_secret_is_for_admins_and_replaces_it(org, api, client_for):
    channel = api.post("/v1/channels", HOOK, format="json").json()
    url = f"/v1/channels/{channel['id']}/rotate-secret"
    member = client_for(org, Role.MEMBER)
    refused = member.post(url)
    assert refused.status_code == 403 and "needs 'admin'" in refused.json()["detail"]
    assert Channel.objects.get(pk=channel["id"]).secret == channel["secret"]
    rotated = api.post(url)
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != channel["secret"] and Channel.objects.get(pk=channel["id"]).secret == new


def test_only_a_webhook_has_a_secret(api):
    email = api.post(
        "/v1/channels",
        {"name": "oncall", "kind": "email", "target": "oncall@example.com"},
        format="json",
    ).json()
    assert "secret" not in email and email["has_secret"] is False
    refused = api.post(f"/v1/channels/{email['id']}/rotate-secret")
    assert refused.status_code == 400
    assert refused.json()["errors"] == ["kind: only a webhook channel has a secret (email)"]
    # A webhook made an email channel loses its secret; made a webhook again, gets a new one.
    hook = api.post("/v1/channels", HOOK, format="json").json()
    url = f"/v1/channels/{hook['id']}"
    as_email = api.patch(url, {"kind": "email", "target": "ops@example.com"}, format="json")
    assert as_email.json()["has_secret"] is False and "secret" not in as_email.json()
    assert Channel.objects.get(pk=hook["id"]).secret == ""
    back = api.patch(url, {"kind": "webhook", "target": HOOK["target"]}, format="json").json()
    assert back["secret"] not in ("", hook["secret"])
    assert Channel.objects.get(pk=hook["id"]).secret == back["secret"]


@pytest.mark.parametrize(
    ("body", "created"),
    [
        ({"kind": "slack", "target": "https://hooks.slack.com/services/T/B/x"}, True),
        ({"kind": "discord", "target": "http://127.0.0.1:8080/api/webhooks/1/x"}, True),
        (
            {
                "kind": "telegram",
                "target": "https://api.telegram.org/bot123:abc/sendMessage",
                "chat_id": "-1001234",
            },
            True,
        ),
        ({"kind": "telegram", "target": "https://t.example/x", "chat_id": "@alerts_room"}, True),
        ({"kind": "email", "target": "sec@example.com"}, True),
        ({"kind": "sms", "target": "+14155550100"}, True),
        ({"kind": "webhook", "target": "ftp://example.com/x"}, "target: webhook needs an http"),
        ({"kind": "slack", "target": "not a url"}, "target: slack needs an http(s) URL"),
        ({"kind": "telegram", "target": "https://t.example/x"}, "chat_id: telegram needs"),
        (
            {"kind": "telegram", "target": "https://t.example/x", "chat_id": "1; drop"},
            "chat_id: telegram needs",
        ),
        ({"kind": "email", "target": "not-an-address"}, "target: email needs an email address"),
        (
            {"kind": "email", "target": "a@example.com", "chat_id": "1"},
            "chat_id: only for a telegram channel",
        ),
        ({"kind": "sms", "target": "4155550100"}, "target: sms needs a phone number in E.164"),
        ({"kind": "sms", "target": "+0123"}, "target: sms needs a phone number in E.164"),
        ({"kind": "pager", "target": "x"}, "kind: must be one of 'webhook'"),
        ({"kind": "email", "target": ""}, "target: must not be empty"),
        (
            {"kind": "email", "target": "a@example.com", "rate_limit_per_minute": 0},
            "rate_limit_per_minute: must be >= 1",
        ),
        (
            {"kind": "email", "target": "a@example.com", "rate_limit_per_minute": 10_001},
            "rate_limit_per_minute: must be <= 10000",
        ),
        (
            {"kind": "email", "target": "a@example.com", "min_severity": "urgent"},
            "min_severity: must be one of",
        ),
        ({"kind": "email", "target": "a@example.com", "secret": "mine"}, "secret: unknown field"),
    ],
)
def test_each_kind_takes_its_own_target(api, body, created):
    response = api.post("/v1/channels", {"name": "c", **body}, format="json")
    if created is True:
        assert response.status_code == 201, response.json()
        assert response.json()["target"] == body["target"]
    else:
        assert response.status_code == 400, response.json()
        (error,) = response.json()["errors"]
        assert error.startswith(created), error
        assert not Channel.objects.exists()


def test_names_are_unique_in_the_org(api, other_org):
    assert api.post("/v1/channels", HOOK, format="json").status_code == 201
    again = api.post("/v1/channels", HOOK, format="json")
    assert again.status_code == 409
    assert again.json()["errors"] == ["name: the org already has a channel named 'ops-hook'"]
    Channel.objects.create(org=other_org, name="theirs", kind="email", target="a@example.com")
    theirs_name = api.post("/v1/channels", {**HOOK, "name": "theirs"}, format="json")
    assert theirs_name.status_code == 201  # another org's name is free here


def test_put_replaces_and_delete_removes_a_channel(api):
    channel = api.post(
        "/v1/channels", {**HOOK, "rate_limit_per_minute": 7, "min_severity": "high"}, format="json"
    ).json()
    url = f"/v1/channels/{channel['id']}"
    replaced = api.put(url, {**HOOK, "target": "https://other.example.com/x"}, format="json")
    assert replaced.status_code == 200, replaced.json()
    body = replaced.json()
    assert (body["rate_limit_per_minute"], body["min_severity"]) == (60, "info")
    assert "secret" not in body and Channel.objects.get().secret == channel["secret"]
    deleted = api.delete(url)
    assert deleted.json() == {"id": channel["id"], "deleted": True}
    assert not Channel.objects.exists() and api.get(url).status_code == 404


def test_viewers_read_channels_and_write_none(org, api, client_for):
    channel = api.post("/v1/channels", HOOK, format="json").json()
    viewer = client_for(org, Role.VIEWER)
    assert viewer.get("/v1/channels").status_code == 200
    assert viewer.get(f"/v1/channels/{channel['id']}").status_code == 200
    writes = [
        viewer.post("/v1/channels", {**HOOK, "name": "x"}, format="json"),
        viewer.patch(f"/v1/channels/{channel['id']}", {"enabled": False}, format="json"),
        viewer.delete(f"/v1/channels/{channel['id']}"),
        viewer.post(f"/v1/channels/{channel['id']}/rotate-secret"),
    ]
    assert [w.status_code for w in writes] == [403, 403, 403, 403]
    assert Channel.objects.get().enabled is True
    member = client_for(org, Role.MEMBER)
    assert member.post("/v1/channels", {**HOOK, "name": "x"}, format="json").status_code == 201


def test_a_telegram_channel_made_a_webhook_drops_its_chat_id(api):
    body = {
        "name": "tg",
        "kind": "telegram",
        "target": "https://api.telegram.org/bot1:x/sendMessage",
        "chat_id": "-100",
    }
    channel = api.post("/v1/channels", body, format="json").json()
    changed = api.patch(
        f"/v1/channels/{channel['id']}",
        {"kind": "webhook", "target": HOOK["target"]},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["chat_id"] == "" and changed.json()["has_secret"] is True

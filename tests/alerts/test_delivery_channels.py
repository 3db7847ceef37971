"""Each channel kind delivered through `delivery_attempt` to a real receiver on loopback: the
webhook's signature verifies with the channel's secret and carries the delivery id as its
idempotency key; Slack, Discord and Telegram get their own JSON; email reaches an SMTP server
(aiosmtpd); SMS reaches SNS in moto's server mode. The one retry rule over HTTP statuses,
timeouts and refused connections; errors that never show a URL's token; and the outbound
rule: private addresses refused unless allowed, the checked address the one connected to."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from werkzeug import Response

from tests.alerts.factories import ChannelFactory, DeliveryFactory
from tests.alerts.receivers import free_port, signature_valid, smtp_server, sns_server  # noqa: F401
from tests.waiting import wait_for
from trace_operators import alert_deliver
from trace_web.alerts.delivery import delivery_attempt
from trace_web.alerts.models import ChannelKind, Delivery, DeliveryPurpose, DeliveryStatus

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _delivery_settings(settings):
    settings.TRACE_DELIVERY_ALLOW_PRIVATE = True  # the receivers are on loopback
    settings.TRACE_DELIVERY_TIMEOUT_SECONDS = 5.0
    settings.TRACE_DELIVERY_MAX_ATTEMPTS = 5
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def attempt(delivery: Delivery) -> Delivery:
    delivery_attempt(delivery_id=delivery.pk, worker_id="test")
    delivery.refresh_from_db()
    return delivery


def webhook(url: str, **kwargs) -> Delivery:
    return DeliveryFactory(channel=ChannelFactory(kind=ChannelKind.WEBHOOK, target=url), **kwargs)


def test_webhook_is_signed_and_keyed_by_the_delivery_id(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook", method="POST").respond_with_json({"id": "rcv-1"})
    delivery = attempt(webhook(httpserver_ipv4.url_for("/hook")))
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.provider_message_id == "rcv-1"
    [(request, _)] = httpserver_ipv4.log
    assert signature_valid(delivery.channel.secret, request)
    assert not signature_valid(delivery.channel.secret + "x", request)
    assert request.headers["Idempotency-Key"] == str(delivery.pk)
    assert abs(int(request.headers["X-Trace-Timestamp"]) - time.time()) < 300
    body = json.loads(request.get_data())
    event = delivery.event
    assert body["delivery_id"] == delivery.pk
    assert body["purpose"] == "notify"
    assert body["definition"] == {
        "id": event.definition_id,
        "name": event.definition.name,
        "severity": "high",
    }
    assert body["event"]["tx_hash"] == event.tx_hash
    assert body["event"]["block_number"] == event.block_number
    assert body["event"]["block_hash"] == event.block_hash
    assert body["event"]["payload"] == event.payload


def test_a_retraction_says_so(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    httpserver_ipv4.expect_request("/slack").respond_with_data("ok")
    delivery = attempt(webhook(httpserver_ipv4.url_for("/hook"), purpose=DeliveryPurpose.RETRACT))
    slack = ChannelFactory(kind=ChannelKind.SLACK, target=httpserver_ipv4.url_for("/slack"))
    chat = attempt(DeliveryFactory(channel=slack, purpose=DeliveryPurpose.RETRACT))
    assert (delivery.status, chat.status) == ("delivered", "delivered")
    hook, text = (json.loads(request.get_data()) for request, _ in httpserver_ipv4.log)
    assert hook["purpose"] == "retract"
    assert text["text"].startswith(f"RETRACTED [HIGH] {chat.event.definition.name}")
    assert "no longer on the canonical chain" in text["text"]


@pytest.mark.parametrize(
    ("kind", "path", "answer", "expected_id"),
    [
        (ChannelKind.SLACK, "/services/T0/B0/x", "ok", ""),
        (ChannelKind.DISCORD, "/api/webhooks/1/abc", {"id": "998877"}, "998877"),
        (ChannelKind.TELEGRAM, "/bot123:AA/sendMessage", {"result": {"message_id": 42}}, "42"),
    ],
)
def test_chat_webhooks_get_their_own_json(httpserver_ipv4, kind, path, answer, expected_id):
    handler = httpserver_ipv4.expect_request(path, method="POST")
    if isinstance(answer, dict):
        handler.respond_with_json(answer)
    else:
        handler.respond_with_data(answer)
    channel = ChannelFactory(kind=kind, target=httpserver_ipv4.url_for(path), chat_id="-100123")
    delivery = attempt(DeliveryFactory(channel=channel))
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.provider_message_id == expected_id
    [(request, _)] = httpserver_ipv4.log
    body = json.loads(request.get_data())
    event = delivery.event
    text = {"slack": body.get("text"), "discord": body.get("content")}.get(kind, body.get("text"))
    assert (
        set(body)
        == {"slack": {"text"}, "discord": {"content"}, "telegram": {"chat_id", "text"}}[kind]
    )
    if kind == ChannelKind.TELEGRAM:
        assert body["chat_id"] == "-100123"
    assert text.startswith(
        f"[HIGH] {event.definition.name}: chain 31337 block {event.block_number}"
    )
    assert f"tx {event.tx_hash}" in text
    assert "value: 2000000000000000000" in text
    assert f"delivery {delivery.pk}" in text


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "delivered"),
        (201, "delivered"),
        (204, "delivered"),
        (301, "failed"),
        (400, "failed"),
        (401, "failed"),
        (403, "failed"),
        (404, "failed"),
        (408, "pending"),
        (410, "failed"),
        (413, "failed"),
        (422, "failed"),
        (429, "pending"),
        (500, "pending"),
        (502, "pending"),
        (503, "pending"),
        (504, "pending"),
    ],
)
def test_one_retry_rule_for_every_status(httpserver_ipv4, status, outcome):
    httpserver_ipv4.expect_request("/hook").respond_with_response(
        Response("", status=status, headers={"Location": "/elsewhere"})
    )
    delivery = attempt(webhook(httpserver_ipv4.url_for("/hook")))
    assert delivery.status == outcome
    assert delivery.attempt == 1
    if outcome != "delivered":
        assert delivery.error.startswith(f"HTTP {status}")


def test_a_redirect_is_not_followed(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook").respond_with_response(
        Response("", status=307, headers={"Location": httpserver_ipv4.url_for("/inside")})
    )
    httpserver_ipv4.expect_request("/inside").respond_with_data("ok")
    delivery = attempt(webhook(httpserver_ipv4.url_for("/hook")))
    assert delivery.status == DeliveryStatus.FAILED
    assert "redirect, not followed" in delivery.error
    assert [request.path for request, _ in httpserver_ipv4.log] == ["/hook"]


def test_retry_after_delays_the_next_attempt(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook").respond_with_response(
        Response("slow down", status=429, headers={"Retry-After": "3600"})
    )
    delivery = webhook(httpserver_ipv4.url_for("/hook"))
    before = time.time()
    delivery = attempt(delivery)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at.timestamp() >= before + 3600


def test_a_timeout_is_retried(httpserver_ipv4, settings):
    settings.TRACE_DELIVERY_TIMEOUT_SECONDS = 0.2

    release = threading.Event()

    def slow(request):
        release.wait(30)
        return Response("late")

    httpserver_ipv4.expect_request("/hook").respond_with_handler(slow)
    try:
        delivery = attempt(webhook(httpserver_ipv4.url_for("/hook")))
    finally:
        # The shared server logs the request once answered: answer it before the next test's
        # log is cleared, or that test finds this request in its own log.
        release.set()
        wait_for(lambda: httpserver_ipv4.log, what="the late request answered and logged")
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.error == "timed out after 0.2s"


def test_a_refused_connection_is_retried():
    delivery = attempt(webhook(f"http://127.0.0.1:{free_port()}/hook"))
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.error.startswith("connection failed")


def test_errors_never_show_the_token(httpserver_ipv4):
    token = "bot987654:AAHsecretTOKENvalue"
    httpserver_ipv4.expect_request(f"/{token}/sendMessage").respond_with_data(
        f"internal error at /{token}/sendMessage", status=500
    )
    urls = [
        httpserver_ipv4.url_for(f"/{token}/sendMessage"),
        f"http://127.0.0.1:{free_port()}/{token}/sendMessage",
        f"http://nosuchhost.invalid/{token}/sendMessage",
    ]
    for url in urls:
        channel = ChannelFactory(kind=ChannelKind.TELEGRAM, target=url, chat_id="1")
        delivery = attempt(DeliveryFactory(channel=channel))
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.error
        assert "AAHsecret" not in delivery.error and token not in delivery.error


def test_email_reaches_the_smtp_server(smtp_server):  # noqa: F811
    channel = ChannelFactory(kind=ChannelKind.EMAIL, target="oncall@example.com")
    delivery = attempt(DeliveryFactory(channel=channel))
    assert delivery.status == DeliveryStatus.DELIVERED
    [mail] = smtp_server.messages
    assert mail["from"] == "alerts@trace.test"
    assert mail["to"] == ["oncall@example.com"]
    assert f"Message-ID: {delivery.provider_message_id}" in mail["data"]
    assert delivery.provider_message_id.endswith("@trace.test>")
    name = delivery.event.definition.name
    assert (
        f"Subject: [HIGH] {name}: chain 31337 block {delivery.event.block_number}" in mail["data"]
    )
    assert f"tx {delivery.event.tx_hash}" in mail["data"]


def test_email_to_a_refused_recipient_is_terminal(smtp_server):  # noqa: F811
    channel = ChannelFactory(kind=ChannelKind.EMAIL, target="nobody@example.com")
    delivery = attempt(DeliveryFactory(channel=channel))
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error == "SMTP refused the recipient (550)"
    assert smtp_server.messages == []


def test_email_while_smtp_is_down_is_retried(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    channel = ChannelFactory(kind=ChannelKind.EMAIL, target="oncall@example.com")
    delivery = attempt(DeliveryFactory(channel=channel))
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.error == "SMTP unavailable (ConnectionRefusedError)"


def test_sms_is_published_to_sns(sns_server):  # noqa: F811
    channel = ChannelFactory(kind=ChannelKind.SMS, target="+15555550100")
    delivery = attempt(DeliveryFactory(channel=channel))
    assert delivery.status == DeliveryStatus.DELIVERED
    phone, text = sns_server.sms_messages[delivery.provider_message_id]
    assert phone == "+15555550100"
    name = delivery.event.definition.name
    assert text == (
        f"[HIGH] {name}: chain 31337 block {delivery.event.block_number}\n"
        f"tx {delivery.event.tx_hash}"
    )


def test_sms_to_an_invalid_number_is_terminal(sns_server):  # noqa: F811
    channel = ChannelFactory(kind=ChannelKind.SMS, target="not-a-number")
    delivery = attempt(DeliveryFactory(channel=channel))
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error.startswith("SNS refused the message (InvalidParameter")
    assert len(sns_server.sms_messages) == 0


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.20.30.40", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - a URL refused, not a bind
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("localhost", "loopback"),
    ],
)
def test_private_addresses_are_refused(settings, httpserver_ipv4, host, why):
    settings.TRACE_DELIVERY_ALLOW_PRIVATE = False
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    delivery = attempt(webhook(f"http://{host}:{httpserver_ipv4.port}/hook"))
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempt == 1
    assert delivery.error.startswith(f"refused: host {host.strip('[]')!r} resolves to {why}")
    assert "TRACE_DELIVERY_ALLOW_PRIVATE is off" in delivery.error
    assert httpserver_ipv4.log == []


def test_the_same_loopback_url_is_delivered_when_private_is_allowed(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    delivery = attempt(webhook(f"http://localhost:{httpserver_ipv4.port}/hook"))
    assert delivery.status == DeliveryStatus.DELIVERED
    [(request, _)] = httpserver_ipv4.log
    assert request.headers["Host"] == f"localhost:{httpserver_ipv4.port}"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://a/b"])
def test_only_http_and_https(url):
    delivery = attempt(webhook(url))
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error.startswith("refused: scheme")


def test_the_checked_address_is_the_one_connected_to(httpserver_ipv4, monkeypatch):
    """DNS rebinding: a name that answers 127.0.0.1 when checked and 127.0.0.2 afterwards.
    The receiver listens on 127.0.0.1 only, so the request arrives only if the connection
    uses the address that was resolved and checked, not a second lookup's."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        address = next(answers, "127.0.0.2")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    delivery = attempt(webhook(f"http://rebind.test:{httpserver_ipv4.port}/hook"))
    assert delivery.status == DeliveryStatus.DELIVERED
    [(request, _)] = httpserver_ipv4.log
    assert request.headers["Host"] == f"rebind.test:{httpserver_ipv4.port}"


def test_a_disabled_channel_sends_nothing(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    delivery = webhook(httpserver_ipv4.url_for("/hook"))
    delivery.channel.enabled = False
    delivery.channel.save()
    delivery = attempt(delivery)
    assert (delivery.status, delivery.error) == (DeliveryStatus.FAILED, "channel disabled")
    assert httpserver_ipv4.log == []


def test_retry_after_reads_seconds_and_dates():
    assert alert_deliver.retry_after_seconds("120") == 120.0
    assert alert_deliver.retry_after_seconds(None) is None
    assert alert_deliver.retry_after_seconds("soon") is None
    assert alert_deliver.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert 3500 < alert_deliver.retry_after_seconds(_http_date(time.time() + 3600)) <= 3600


def _http_date(when: float) -> str:
    from email.utils import formatdate

    return formatdate(when, usegmt=True)

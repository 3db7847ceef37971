"""Real receivers on loopback for delivery tests: an SMTP server (aiosmtpd) and AWS SNS in
moto's server mode, each on a free port, with the settings that point delivery at them; and a
webhook signature check written the way a receiver would write it (docs/alerts.md)."""

from __future__ import annotations

import hashlib
import hmac
import socket

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signature_valid(secret: str, request) -> bool:
    """What a receiver does: HMAC-SHA256 over "<X-Trace-Timestamp>.<raw body>"."""
    timestamp = request.headers["X-Trace-Timestamp"]
    signed = timestamp.encode() + b"." + request.get_data()
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers["X-Trace-Signature"])


class Mailbox:
    """aiosmtpd handler: every message accepted, kept with its envelope."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "data": envelope.content.decode("utf-8", errors="replace"),
            }
        )
        return "250 Message accepted for delivery"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    # pytest-django swaps in the locmem backend; delivery goes through real SMTP here.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.DEFAULT_FROM_EMAIL = "alerts@trace.test"
    yield mailbox
    controller.stop()


@pytest.fixture
def sns_server(settings, monkeypatch):
    """moto's SNS over HTTP on loopback; yields the backend holding published SMS."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.server import ThreadedMotoServer
    from moto.sns.models import sns_backends

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    settings.TRACE_SNS_ENDPOINT_URL = f"http://127.0.0.1:{port}"
    settings.TRACE_SNS_REGION = "us-east-1"
    backend = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.sms_messages.clear()  # moto's backends are per process, not per server
    yield backend
    server.stop()

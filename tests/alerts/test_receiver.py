"""The local webhook receiver (`trace alerts receive`, the Lite demo's): real deliveries sent by
alert_deliver's webhook sender over real HTTP on loopback are verified with the channel's
secret as it is at each request, answered 200 with an id, and reported one line each; a wrong
secret, a stale timestamp or an unsigned POST is answered 401 and reported as such."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from trace_operators.alert_deliver import (
    ChannelTarget,
    DeliveryMessage,
    SendFailed,
    SendOptions,
    send_webhook,
    signature,
)
from trace_web.alerts.receiver import delivery_line, signature_check, webhook_receiver

MESSAGE = DeliveryMessage(
    delivery_id=7,
    purpose="notify",
    definition_id=1,
    definition_name="whale",
    severity="high",
    event_id=3,
    chain_id=31337,
    block_number=40,
    block_hash="0x" + "ab" * 32,
    tx_hash="0x" + "cd" * 32,
    log_index=None,
    event_time=None,
    payload={"value": "1500000000000000000", "gas": 21000, "to_address": "0xdead"},
)
OPTIONS = SendOptions(timeout_seconds=5, allow_private=True)


@pytest.fixture
def receiver():
    """A receiver on a free loopback port whose secret the test sets; its report lines."""
    state = {"secret": "s3cret", "lines": []}
    server = webhook_receiver(
        host="127.0.0.1",
        port=0,
        secret_for=lambda: state["secret"],
        report=state["lines"].append,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def test_a_signed_delivery_is_verified_answered_with_an_id_and_reported(receiver):
    channel = ChannelTarget(kind="webhook", target=receiver["url"], secret="s3cret")
    assert send_webhook(channel, MESSAGE, OPTIONS) == "received-1"
    assert send_webhook(channel, MESSAGE, OPTIONS) == "received-2"
    first = receiver["lines"][0]
    assert first == (
        f"alert 'whale' (high): chain 31337 block 40 tx {MESSAGE.tx_hash} "
        '{"to_address": "0xdead", "value": "1500000000000000000"} '
        "[delivery 7, signature verified]"
    )


def test_a_wrong_secret_is_refused_and_a_rotated_one_read_at_each_request(receiver):
    stale = ChannelTarget(kind="webhook", target=receiver["url"], secret="old")
    with pytest.raises(SendFailed, match="401"):
        send_webhook(stale, MESSAGE, OPTIONS)
    assert receiver["lines"][-1].endswith("[delivery 7, signature does not verify]")
    receiver["secret"] = "old"  # the channel's secret changed: the next request uses it
    assert send_webhook(stale, MESSAGE, OPTIONS) == "received-2"


def test_unsigned_stale_and_foreign_posts_are_refused(receiver):
    body = b'{"hello": 1}'
    answer = requests.post(receiver["url"], data=body, timeout=5)
    assert answer.status_code == 401
    assert receiver["lines"][-1] == (
        "received a POST that is not a Trace delivery "
        "(unsigned (no X-Trace-Timestamp or X-Trace-Signature))"
    )
    old = str(int(time.time()) - 3600)
    headers = {"X-Trace-Timestamp": old, "X-Trace-Signature": signature("s3cret", old, body)}
    assert requests.post(receiver["url"], data=body, headers=headers, timeout=5).status_code == 401
    assert "away from now (replayed?)" in receiver["lines"][-1]


def test_without_a_secret_nothing_is_checked():
    lines: list[str] = []
    server = webhook_receiver(
        host="127.0.0.1", port=0, secret_for=lambda: None, report=lines.append
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert requests.post(url, data=b"not json", timeout=5).json() == {"id": "received-1"}
    finally:
        server.shutdown()
        server.server_close()
    assert lines == ["received a POST that is not a Trace delivery (not checked)"]


@pytest.mark.parametrize(
    ("headers", "verdict"),
    [
        ({"X-Trace-Timestamp": "soon", "X-Trace-Signature": "sha256=00"}, "bad timestamp 'soon'"),
        ({"X-Trace-Timestamp": "100", "X-Trace-Signature": "x"}, "signature does not verify"),
        ({"X-Trace-Timestamp": "100"}, "unsigned (no X-Trace-Timestamp or X-Trace-Signature)"),
    ],
)
def test_signature_check_says_why_not(headers, verdict):
    assert signature_check("k", headers, b"{}", now=100.0) == verdict
    good = {"X-Trace-Timestamp": "100", "X-Trace-Signature": signature("k", "100", b"{}")}
    assert signature_check("k", good, b"{}", now=100.0 + 300) == ""
    assert signature_check("k", good, b"{}", now=100.0 + 301).startswith("timestamp 301 s")


def test_a_retraction_is_reported_as_one():
    retract = {**MESSAGE.body(), "purpose": "retract"}
    assert delivery_line(retract, "ok").startswith("RETRACTED 'whale' (high): chain 31337")


def test_the_command_refuses_half_a_channel_and_a_port_in_use(org, receiver):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="give --org and --channel together"):
        call_command("alerts", "receive", "--port", "1", "--org", org.slug)
    with pytest.raises(CommandError, match="no org 'nope'"):
        call_command("alerts", "receive", "--port", "1", "--org", "nope", "--channel", "c")
    taken = receiver["url"].split(":")[2].split("/")[0]
    with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{taken}"):
        call_command("alerts", "receive", "--port", taken)

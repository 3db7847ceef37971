"""The issue's acceptance for delivery, in-process against a real receiver, Postgres and Redis:
an endpoint failing 3 times then recovering is delivered once after 4 attempts (one
idempotency key); one always failing ends terminal after the maximum, its error visible; a
rate limit of N a minute holds under a burst of 3N and drops nothing."""

from __future__ import annotations

import threading
import time

import pytest
from django.utils import timezone

from tests.alerts.factories import ChannelFactory, DeliveryFactory
from trace_web.alerts.delivery import delivery_attempt
from trace_web.alerts.models import ChannelKind, Delivery, DeliveryStatus
from trace_web.alerts.ratelimit import bucket_key, bucket_reset, bucket_take

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.TRACE_DELIVERY_ALLOW_PRIVATE = True
    settings.TRACE_DELIVERY_BACKOFF_BASE_SECONDS = 0.05
    settings.TRACE_DELIVERY_BACKOFF_MAX_SECONDS = 0.2
    settings.TRACE_DELIVERY_MAX_ATTEMPTS = 4
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def drive(delivery: Delivery, *, timeout: float = 30.0) -> list[str]:
    """What a delivery worker does when woken each time the row is due, until it settles."""
    results = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = delivery_attempt(delivery_id=delivery.pk, worker_id="test")
        if result != "not_leased":
            results.append(result)
        if result in ("delivered", "failed"):
            return results
        time.sleep(0.02)  # not yet due: the backoff is running
    raise AssertionError(f"delivery {delivery.pk} did not settle: {results}")


def test_failing_three_times_then_recovering_is_delivered_once(httpserver_ipv4):
    for _ in range(3):
        httpserver_ipv4.expect_ordered_request("/hook").respond_with_data("down", status=503)
    httpserver_ipv4.expect_ordered_request("/hook").respond_with_json({"id": "ok-1"})
    channel = ChannelFactory(kind=ChannelKind.WEBHOOK, target=httpserver_ipv4.url_for("/hook"))
    delivery = DeliveryFactory(channel=channel)
    assert drive(delivery) == ["retry", "retry", "retry", "delivered"]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempt == 4
    assert delivery.provider_message_id == "ok-1"
    assert delivery.error == ""
    keys = [request.headers["Idempotency-Key"] for request, _ in httpserver_ipv4.log]
    assert keys == [str(delivery.pk)] * 4
    assert [response.status_code for _, response in httpserver_ipv4.log] == [503, 503, 503, 200]


def test_always_failing_ends_terminal_after_the_maximum(httpserver_ipv4):
    httpserver_ipv4.expect_request("/hook").respond_with_data("broken", status=500)
    channel = ChannelFactory(kind=ChannelKind.WEBHOOK, target=httpserver_ipv4.url_for("/hook"))
    delivery = DeliveryFactory(channel=channel)
    assert drive(delivery) == ["retry", "retry", "retry", "failed"]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempt == 4
    assert delivery.error == "HTTP 500 from the receiver (gave up after 4 attempts)"
    assert len(httpserver_ipv4.log) == 4
    # Terminal means terminal: woken again, it sends nothing.
    assert delivery_attempt(delivery_id=delivery.pk, worker_id="test") == "not_leased"
    assert len(httpserver_ipv4.log) == 4


def test_a_rate_limit_holds_under_a_burst_and_drops_nothing(httpserver_ipv4):
    """Capacity N=3 a minute, a burst of 9. The bucket refills one send per 20 s, far longer
    than a pass takes, so each pass sends exactly what the bucket holds; a test-only refill
    (bucket_reset) stands in for the minute passing."""
    limit = 3
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    channel = ChannelFactory(
        kind=ChannelKind.WEBHOOK, target=httpserver_ipv4.url_for("/hook"), rate_limit_per_minute=3
    )
    deliveries = [DeliveryFactory(channel=channel) for _ in range(3 * limit)]
    ids = [d.pk for d in deliveries]
    bucket_reset(channel_id=channel.pk)
    for sent_so_far in (limit, 2 * limit, 3 * limit):
        before = timezone.now()
        results = [delivery_attempt(delivery_id=i, worker_id="test") for i in ids]
        rows = Delivery.objects.filter(pk__in=ids)
        assert len(httpserver_ipv4.log) == sent_so_far
        assert results.count("delivered") == limit
        assert rows.filter(status=DeliveryStatus.DELIVERED).count() == sent_so_far
        assert not rows.filter(status=DeliveryStatus.FAILED).exists()
        waiting = rows.filter(status=DeliveryStatus.PENDING)
        assert waiting.count() == 3 * limit - sent_so_far
        assert results.count("rate_limited") == waiting.count()
        for row in waiting:
            assert row.attempt == 0  # delayed, not counted
            assert row.next_attempt_at > before
        # The minute passes: the bucket is full again and the waits are over.
        bucket_reset(channel_id=channel.pk)
        waiting.update(next_attempt_at=timezone.now())
    assert set(Delivery.objects.filter(pk__in=ids).values_list("attempt", flat=True)) == {1}
    keys = sorted(int(request.headers["Idempotency-Key"]) for request, _ in httpserver_ipv4.log)
    assert keys == sorted(ids)  # each delivered once


def test_the_wait_is_the_time_until_the_next_token():
    channel_id = 10_000_001
    bucket_reset(channel_id=channel_id)
    assert [bucket_take(channel_id=channel_id, per_minute=2) for _ in range(2)] == [0.0, 0.0]
    wait = bucket_take(channel_id=channel_id, per_minute=2)
    assert 0 < wait <= 30.0  # one token per 30 s
    assert bucket_take(channel_id=channel_id, per_minute=0) == 0.0  # 0: not limited


def test_the_bucket_is_atomic_across_concurrent_takers():
    channel_id = 10_000_002
    bucket_reset(channel_id=channel_id)
    results: list[float] = []
    lock = threading.Lock()

    def take():
        for _ in range(10):
            wait = bucket_take(channel_id=channel_id, per_minute=12)
            with lock:
                results.append(wait)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 80 takes at a bucket of 12 refilling one per 5 s: 12 succeed (13 if a refill lands).
    assert len(results) == 80
    assert results.count(0.0) in (12, 13)
    assert all(wait > 0 for wait in results if wait != 0.0)


def test_buckets_are_under_their_own_prefix(settings):
    assert bucket_key(7) == f"{settings.TRACE_BROKER_KEY_PREFIX}ratelimit:channel:7"

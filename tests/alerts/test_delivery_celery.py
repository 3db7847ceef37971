"""Delivery end to end through real processes: a Delivery row and its WAKE_DELIVERY outbox row
committed together → the outbox's fast path (or its drain) publishes the wake-up to Redis →
a real Celery worker on the `delivery` queue leases and sends → the webhook is received. A
send that fails is brought back by the dispatcher's delivery loop (trace.dispatch.deliveries)
once its backoff is over."""

from __future__ import annotations

import json
import time

import pytest
from django.db import transaction

from tests.alerts.factories import ChannelFactory, DeliveryFactory
from tests.alerts.receivers import signature_valid
from trace_tasks.publisher import _publish
from trace_tasks.queues import Queue
from trace_web.alerts.models import ChannelKind, Delivery, DeliveryStatus
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus
from trace_web.orchestration.services.outbox import outbox_add, outbox_drain

pytestmark = pytest.mark.celery

WORKER_ENV = {
    "TRACE_DELIVERY_ALLOW_PRIVATE": "true",  # the receiver is on loopback
    "TRACE_DELIVERY_BACKOFF_BASE_SECONDS": "0.2",
    "TRACE_DELIVERY_BACKOFF_MAX_SECONDS": "0.5",
    "TRACE_REWAKE_AFTER_SECONDS": "0.5",
}


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def routed(url: str) -> Delivery:
    """What routing does: the delivery and its wake-up in one transaction."""
    with transaction.atomic():
        channel = ChannelFactory(kind=ChannelKind.WEBHOOK, target=url)
        delivery = DeliveryFactory(channel=channel)
        outbox_add(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": delivery.pk})
    return delivery


def status(delivery: Delivery) -> str:
    return Delivery.objects.get(pk=delivery.pk).status


def test_a_committed_delivery_reaches_the_webhook_through_a_delivery_worker(
    services, httpserver_ipv4
):
    httpserver_ipv4.expect_request("/hook", method="POST").respond_with_json({"id": "r-1"})
    worker = services.worker("deliver", queues=Queue.DELIVERY.value, concurrency=1, env=WORKER_ENV)
    delivery = routed(httpserver_ipv4.url_for("/hook"))
    wait_for(lambda: status(delivery) == DeliveryStatus.DELIVERED, what="delivered")
    [(request, _)] = httpserver_ipv4.log
    delivery.refresh_from_db()
    assert signature_valid(delivery.channel.secret, request)
    assert request.headers["Idempotency-Key"] == str(delivery.pk)
    assert json.loads(request.get_data())["delivery_id"] == delivery.pk
    assert (delivery.attempt, delivery.provider_message_id) == (1, "r-1")
    wake = Outbox.objects.get(kind=OutboxKind.WAKE_DELIVERY, payload__delivery_id=delivery.pk)
    assert wake.status == OutboxStatus.DONE  # sent by the fast path, right after the commit
    assert "trace.deliver" in worker.log() and "'delivered'" in worker.log()


def test_the_drain_publishes_a_wake_up_the_fast_path_did_not(services, httpserver_ipv4, settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False  # as if the process died right after commit
    httpserver_ipv4.expect_request("/hook").respond_with_data("ok")
    services.worker("deliver", queues=Queue.DELIVERY.value, concurrency=1, env=WORKER_ENV)
    delivery = routed(httpserver_ipv4.url_for("/hook"))
    assert Outbox.objects.get(payload__delivery_id=delivery.pk).status == OutboxStatus.PENDING
    assert outbox_drain() == 1
    wait_for(lambda: status(delivery) == DeliveryStatus.DELIVERED, what="delivered")
    assert len(httpserver_ipv4.log) == 1


def test_a_failed_send_is_brought_back_by_the_dispatcher_loop(services, httpserver_ipv4):
    httpserver_ipv4.expect_ordered_request("/hook").respond_with_data("down", status=503)
    httpserver_ipv4.expect_ordered_request("/hook").respond_with_data("ok")
    worker = services.worker("deliver", queues="delivery,dispatcher", concurrency=2, env=WORKER_ENV)
    delivery = routed(httpserver_ipv4.url_for("/hook"))
    wait_for(lambda: len(httpserver_ipv4.log) == 1, what="the first (failing) send")
    wait_for(
        lambda: (
            Delivery.objects.get(pk=delivery.pk).attempt == 1
            and status(delivery) == DeliveryStatus.PENDING
        ),
        what="the retry scheduled",
    )

    def tick() -> bool:
        # What beat does every TRACE_DISPATCH_TICK_SECONDS.
        _publish("trace.dispatch.deliveries", args=[], queue=Queue.DISPATCHER)
        time.sleep(0.3)
        return status(delivery) == DeliveryStatus.DELIVERED

    wait_for(tick, what="delivered on retry")
    delivery.refresh_from_db()
    assert delivery.attempt == 2
    assert [response.status_code for _, response in httpserver_ipv4.log] == [503, 200]
    assert "trace.dispatch.deliveries" in worker.log()

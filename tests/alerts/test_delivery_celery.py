"""Delivery end to end through real processes: a Delivery row and its WAKE_DELIVERY outbox row
committed together → the outbox's fast path (or its drain) publishes the wake-up to Redis →
a real Celery worker on the `delivery` queue leases and sends → the webhook is received. A
send that fails is brought back by the dispatcher's delivery loop (trace.dispatch.deliveries)
once its backoff is over. A worker killed mid-send loses nothing: its lease expires, the
reaper counts the attempt, and another worker sends again under the same idempotency key."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import transaction

from tests.alerts.factories import ChannelFactory, DeliveryFactory
from tests.alerts.receivers import signature_valid
from tests.waiting import wait_for
from trace_tasks.publisher import _publish
from trace_tasks.queues import Queue
from trace_web.alerts.delivery import deliveries_reap, deliveries_wake_due
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


@pytest.fixture(autouse=True)
def _fast_path_on(settings):
    """These tests prove the outbox's fast path (the alerts conftest turns it off elsewhere)."""
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True


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


def test_a_worker_killed_mid_send_is_reaped_and_the_send_repeated_once(services):
    from pytest_httpserver import HTTPServer
    from werkzeug import Response

    receiver = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    receiver.start()
    arrived = threading.Event()
    keys: list[str] = []  # on arrival (the server logs a request only once it is answered)

    def hang(request):
        keys.append(request.headers["Idempotency-Key"])
        arrived.set()
        time.sleep(15)  # the worker is killed meanwhile
        return Response("too late")

    def answer(request):
        keys.append(request.headers["Idempotency-Key"])
        return Response("ok")

    try:
        receiver.expect_ordered_request("/hook").respond_with_handler(hang)
        receiver.expect_ordered_request("/hook").respond_with_handler(answer)
        env = {**WORKER_ENV, "TRACE_DELIVERY_LEASE_SECONDS": "2"}
        first = services.worker("deliver-1", queues="delivery", concurrency=1, env=env)
        delivery = routed(receiver.url_for("/hook"))
        assert arrived.wait(60), "the first send never arrived"
        first.kill()  # SIGKILL mid-send: no outcome recorded, no ack
        assert status(delivery) == DeliveryStatus.SENDING
        wait_for(lambda: deliveries_reap() == 1, what="the expired lease reaped")
        reaped = Delivery.objects.get(pk=delivery.pk)
        assert (reaped.status, reaped.attempt) == (DeliveryStatus.PENDING, 1)
        assert reaped.error == "lease expired: no outcome recorded for attempt 1"
        services.worker("deliver-2", queues="delivery", concurrency=1, env=env)

        def woken_and_sent() -> bool:
            deliveries_wake_due()  # the dispatcher's loop, once the backoff is over
            time.sleep(0.3)
            return status(delivery) == DeliveryStatus.DELIVERED

        wait_for(woken_and_sent, what="delivered by the second worker")
        delivery.refresh_from_db()
        assert delivery.attempt == 2
        assert keys == [str(delivery.pk)] * 2  # the receiver can tell it is the same send
    finally:
        receiver.clear()
        receiver.stop()

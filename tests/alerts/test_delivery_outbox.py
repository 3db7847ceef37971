"""Delivery wake-ups through the outbox and a real Redis broker: the fast path after commit
puts a `trace.deliver` message carrying only the delivery id on the `delivery` queue; with the
broker down the row stays pending (one try counted), the breaker keeps the drain from trying
it again meanwhile, and once the broker is back the drain publishes it."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.db import transaction

from tests.alerts.factories import DeliveryFactory
from tests.alerts.receivers import free_port
from tests.processes import broker_key
from trace_tasks import publisher
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus
from trace_web.orchestration.services.outbox import outbox_add, outbox_drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(settings):
    from tests.plugin_services import delete_broker_keys

    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True
    delete_broker_keys(settings.TRACE_BROKER_URL, settings.TRACE_BROKER_KEY_PREFIX)
    publisher._breaker.reset()
    yield redis.Redis.from_url(settings.TRACE_BROKER_URL)
    publisher._breaker.reset()
    delete_broker_keys(settings.TRACE_BROKER_URL, settings.TRACE_BROKER_KEY_PREFIX)


def queued_deliveries(client) -> list[tuple[str, list]]:
    messages = []
    for raw in client.lrange(broker_key("delivery"), 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        messages.append((message["headers"]["task"], args))
    return messages


def routed():
    with transaction.atomic():
        delivery = DeliveryFactory()
        row = outbox_add(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": delivery.pk})
    row.refresh_from_db()
    return delivery, row


def test_the_fast_path_queues_a_delivery_wake_up(broker):
    delivery, row = routed()
    assert row.status == OutboxStatus.DONE
    assert queued_deliveries(broker) == [("trace.deliver", [delivery.pk])]


def test_a_broker_outage_delays_the_wake_up_and_the_drain_sends_it_later(broker, settings):
    working = settings.TRACE_BROKER_URL
    settings.TRACE_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    delivery, row = routed()
    assert (row.status, row.tries) == (OutboxStatus.PENDING, 1)
    assert not publisher.broker_available()
    Outbox.objects.filter(pk=row.pk).update(available_at=row.created_at)  # due again now
    assert outbox_drain() == 0  # the breaker is open: not tried, no try counted
    row.refresh_from_db()
    assert (row.status, row.tries) == (OutboxStatus.PENDING, 1)
    settings.TRACE_BROKER_URL = working
    publisher._breaker.reset()  # the pause is over
    assert outbox_drain() == 1
    row.refresh_from_db()
    assert (row.status, row.tries) == (OutboxStatus.DONE, 2)
    assert queued_deliveries(broker) == [("trace.deliver", [delivery.pk])]

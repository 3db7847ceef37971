"""The delivery service's state machine on real Postgres: the lease is one conditional UPDATE,
outcomes are fenced by the lease, retries back off then end terminal, the reaper counts a lost
attempt, a failed delivery can be retried (with its wake-up), and the due loop wakes each
waiting delivery once per re-wake interval."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.alerts.factories import DeliveryFactory
from trace_web.alerts.delivery import (
    Outcome,
    deliveries_reap,
    deliveries_wake_due,
    delivery_lease,
    delivery_record,
    delivery_retry,
)
from trace_web.alerts.models import Delivery, DeliveryStatus
from trace_web.errors import Conflict
from trace_web.orchestration.models import Outbox, OutboxKind

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _small_backoff(settings):
    settings.TRACE_DELIVERY_BACKOFF_BASE_SECONDS = 2.0
    settings.TRACE_DELIVERY_BACKOFF_MAX_SECONDS = 8.0
    settings.TRACE_DELIVERY_MAX_ATTEMPTS = 3
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False  # outbox rows are asserted, not published


def wakes(delivery_id: int) -> int:
    return Outbox.objects.filter(
        kind=OutboxKind.WAKE_DELIVERY, payload__delivery_id=delivery_id
    ).count()


def test_lease_takes_a_due_pending_delivery_once():
    delivery = DeliveryFactory()
    lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    assert lease is not None and lease.attempt == 1
    assert delivery_lease(delivery_id=delivery.pk, worker_id="w2") is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENDING
    assert delivery.lease_token == lease.lease_token
    assert delivery.attempt == 1
    assert delivery.lease_expires_at > timezone.now()


def test_lease_refuses_a_delivery_not_yet_due():
    delivery = DeliveryFactory(next_attempt_at=timezone.now() + timedelta(minutes=5))
    assert delivery_lease(delivery_id=delivery.pk, worker_id="w1") is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.PENDING, 0)


def test_delivered_keeps_the_provider_id():
    delivery = DeliveryFactory()
    lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    assert delivery_record(
        lease=lease, outcome=Outcome(kind="delivered", provider_message_id="m-1")
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.provider_message_id == "m-1"
    assert delivery.delivered_at is not None
    assert delivery.lease_token is None


def test_retries_back_off_then_end_terminal_at_the_maximum():
    delivery = DeliveryFactory()
    for attempt in (1, 2):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
        before = timezone.now()
        delivery_record(lease=lease, outcome=Outcome(kind="retry", error=f"HTTP 503 #{attempt}"))
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.attempt == attempt
        assert delivery.error == f"HTTP 503 #{attempt}"
        ceiling = 2.0 * 2 ** (attempt - 1)
        # Jitter within [ceiling / 2, ceiling]: the project's backoff.
        assert before + timedelta(seconds=ceiling / 2) <= delivery.next_attempt_at
        assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=ceiling)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    delivery_record(lease=lease, outcome=Outcome(kind="retry", error="HTTP 503 #3"))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempt == 3
    assert delivery.error == "HTTP 503 #3 (gave up after 3 attempts)"


def test_retry_after_is_honoured_over_a_shorter_backoff():
    delivery = DeliveryFactory()
    lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    before = timezone.now()
    delivery_record(lease=lease, outcome=Outcome(kind="retry", error="HTTP 429", retry_after=120))
    delivery.refresh_from_db()
    assert delivery.next_attempt_at >= before + timedelta(seconds=120)


def test_terminal_fails_at_once():
    delivery = DeliveryFactory()
    lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    delivery_record(lease=lease, outcome=Outcome(kind="terminal", error="HTTP 404"))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempt, delivery.error) == ("failed", 1, "HTTP 404")


def test_a_stale_lease_records_nothing():
    delivery = DeliveryFactory()
    stale = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    # The lease expires and the reaper hands the row to another worker, which sends it.
    Delivery.objects.filter(pk=delivery.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert deliveries_reap() == 1
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    current = delivery_lease(delivery_id=delivery.pk, worker_id="w2")
    assert current.attempt == 2
    for outcome in ("delivered", "retry", "terminal"):
        assert not delivery_record(lease=stale, outcome=Outcome(kind=outcome, error="late"))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.lease_token) == (DeliveryStatus.SENDING, current.lease_token)
    assert delivery_record(
        lease=current, outcome=Outcome(kind="delivered", provider_message_id="x")
    )
    assert not delivery_record(lease=stale, outcome=Outcome(kind="terminal", error="late"))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.provider_message_id) == (DeliveryStatus.DELIVERED, "x")


def test_reaper_counts_the_lost_attempt_and_fails_the_last():
    delivery = DeliveryFactory()
    past = timezone.now() - timedelta(seconds=1)
    for attempt in (1, 2, 3):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert delivery_lease(delivery_id=delivery.pk, worker_id="w1").attempt == attempt
        Delivery.objects.filter(pk=delivery.pk).update(lease_expires_at=past)
        assert deliveries_reap() == 1
        delivery.refresh_from_db()
        assert delivery.attempt == attempt
        assert delivery.lease_token is None
    assert delivery.status == DeliveryStatus.FAILED
    assert "lease expired" in delivery.error and "gave up after 3 attempts" in delivery.error


def test_reaper_leaves_live_leases_alone():
    delivery = DeliveryFactory()
    lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    assert deliveries_reap() == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.lease_token) == (DeliveryStatus.SENDING, lease.lease_token)


def test_retry_puts_a_failed_delivery_back_with_its_wake_up():
    delivery = DeliveryFactory()
    lease = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    delivery_record(lease=lease, outcome=Outcome(kind="terminal", error="HTTP 410"))
    retried = delivery_retry(delivery=Delivery.objects.get(pk=delivery.pk))
    assert retried.status == DeliveryStatus.PENDING
    assert retried.attempt == 0
    assert retried.next_attempt_at <= timezone.now()
    assert retried.error == "HTTP 410"  # the last failure stays visible until the next outcome
    assert wakes(delivery.pk) == 1
    again = delivery_lease(delivery_id=delivery.pk, worker_id="w1")
    assert again is not None and again.attempt == 1


@pytest.mark.parametrize("status", ["pending", "sending", "delivered"])
def test_retry_refuses_anything_but_failed(status):
    delivery = DeliveryFactory(status=status)
    with pytest.raises(Conflict, match=f"status: delivery {delivery.pk} is {status}"):
        delivery_retry(delivery=delivery)
    assert wakes(delivery.pk) == 0
    delivery.refresh_from_db()
    assert delivery.status == status


def test_wake_due_wakes_each_due_delivery_once_per_interval(settings):
    settings.TRACE_REWAKE_AFTER_SECONDS = 60
    due = DeliveryFactory()
    later = DeliveryFactory(next_attempt_at=timezone.now() + timedelta(minutes=5))
    sent = DeliveryFactory(status=DeliveryStatus.DELIVERED)
    assert deliveries_wake_due() == 1
    assert deliveries_wake_due() == 0  # woken a moment ago
    assert (wakes(due.pk), wakes(later.pk), wakes(sent.pk)) == (1, 0, 0)
    # The interval passes (the wake-up was lost): woken again.
    Delivery.objects.filter(pk=due.pk).update(lease_expires_at=timezone.now())
    assert deliveries_wake_due() == 1
    assert wakes(due.pk) == 2
    assert delivery_lease(delivery_id=due.pk, worker_id="w1") is not None

"""Delivery: each Delivery row sent to its channel once, on the `delivery` pool. A send holds a
lease (a conditional UPDATE), its outcome is recorded only under that lease, retries back off,
and a channel's rate limit delays a send without counting it.

The life of a row: `pending` (due at `next_attempt_at`) → leased to `sending` (attempt + 1) →
`delivered`, or back to `pending` with a backoff (a retryable failure), or `failed` (a
terminal failure, or out of attempts; `delivery_retry` puts it back). A worker that dies
mid-send leaves a `sending` row whose lease expires: the reaper counts that attempt and puts
it back, so a crash retries instead of losing the send.

On a `pending` row, `lease_expires_at` is the time before which the dispatcher's loop will not
send it another wake-up (as a task's `last_woken_at`): a backlog waiting on a slow pool is
woken once per TRACE_REWAKE_AFTER_SECONDS, not once per tick.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from trace_web.alerts.models import Delivery, DeliveryStatus
from trace_web.errors import Conflict
from trace_web.orchestration.models import OutboxKind
from trace_web.orchestration.services.backoff import backoff_seconds
from trace_web.orchestration.services.outbox import outbox_add

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeasedDelivery:
    """A delivery this worker holds: only `(id, lease_token)` can record its outcome."""

    id: int
    lease_token: uuid.UUID
    attempt: int  # this attempt's number (1 for the first send)
    lease_expires_at: datetime


@dataclass(frozen=True)
class Outcome:
    """What one send came to. `retry_after` (seconds) is the receiver's own ask (a 429's or
    503's Retry-After): the next attempt waits at least that long."""

    kind: Literal["delivered", "retry", "terminal"]
    provider_message_id: str = ""
    error: str = ""
    retry_after: float | None = None


def delivery_lease(*, delivery_id: int, worker_id: str) -> LeasedDelivery | None:
    """Atomically move a due `pending` delivery to `sending` under a fresh lease (attempt + 1);
    None if it is not due, not pending, or another worker holds it. One statement, so two
    workers woken for the same row cannot both send it."""
    now = timezone.now()
    token = uuid.uuid4()
    expires = now + timedelta(seconds=settings.TRACE_DELIVERY_LEASE_SECONDS)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, lease_token = %s, lease_expires_at = %s, "  # noqa: S608
            "attempt = attempt + 1, updated_at = %s "
            "WHERE id = %s AND status = %s AND next_attempt_at <= %s "
            "RETURNING attempt",
            [DeliveryStatus.SENDING, token, expires, now, delivery_id, DeliveryStatus.PENDING, now],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    log.info("delivery %s leased by %s (attempt %s)", delivery_id, worker_id, row[0])
    return LeasedDelivery(
        id=delivery_id, lease_token=token, attempt=row[0], lease_expires_at=expires
    )


def delivery_record(*, lease: LeasedDelivery, outcome: Outcome) -> bool:
    """Record a send's outcome, fenced by (id, lease_token): a stale lease (reaped, or the row
    retried meanwhile) changes nothing and returns False.

    delivered: provider id and time kept. retry: back to `pending` after an exponential
    backoff with jitter (at least the receiver's Retry-After), or `failed` once this was the
    TRACE_DELIVERY_MAX_ATTEMPTS-th attempt. terminal: `failed` at once."""
    now = timezone.now()
    current = Delivery.objects.filter(
        pk=lease.id, lease_token=lease.lease_token, status=DeliveryStatus.SENDING
    )
    released = {"lease_token": None, "lease_expires_at": None, "updated_at": now}
    if outcome.kind == "delivered":
        changed = current.update(
            status=DeliveryStatus.DELIVERED,
            provider_message_id=outcome.provider_message_id[:300],
            delivered_at=now,
            error="",
            **released,
        )
    elif outcome.kind == "retry" and lease.attempt < settings.TRACE_DELIVERY_MAX_ATTEMPTS:
        delay = max(_backoff(lease.attempt), outcome.retry_after or 0.0)
        changed = current.update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now + timedelta(seconds=delay),
            error=outcome.error[:4000],
            **released,
        )
    else:
        error = outcome.error
        if outcome.kind == "retry":
            error = f"{error} (gave up after {lease.attempt} attempts)"
        changed = current.update(status=DeliveryStatus.FAILED, error=error[:4000], **released)
    if not changed:
        log.warning("delivery %s: stale lease, outcome %s not recorded", lease.id, outcome.kind)
    return bool(changed)


def delivery_delay(*, lease: LeasedDelivery, seconds: float) -> bool:
    """Hand a leased delivery back without sending it (its channel's rate limit is spent): due
    again in `seconds`, and the attempt it was leased for is not counted. Fenced like
    `delivery_record`."""
    now = timezone.now()
    changed = Delivery.objects.filter(
        pk=lease.id, lease_token=lease.lease_token, status=DeliveryStatus.SENDING
    ).update(
        status=DeliveryStatus.PENDING,
        attempt=F("attempt") - 1,
        next_attempt_at=now + timedelta(seconds=seconds),
        lease_token=None,
        lease_expires_at=None,
        updated_at=now,
    )
    return bool(changed)


def delivery_attempt(*, delivery_id: int, worker_id: str) -> str:
    """One wake-up's work: lease, take a token from the channel's bucket, send, record.
    Returns what happened (`not_leased`, `rate_limited`, `delivered`, `retry`, `failed`).

    The lease comes before the token so that only a send that will happen spends one: a
    duplicate wake-up, or one for a row already delivered, leases nothing and takes nothing."""
    from trace_operators import alert_deliver
    from trace_web.alerts.ratelimit import bucket_take

    lease = delivery_lease(delivery_id=delivery_id, worker_id=worker_id)
    if lease is None:
        return "not_leased"
    delivery = Delivery.objects.select_related("channel", "event__definition").get(pk=delivery_id)
    channel = delivery.channel
    if not channel.enabled:
        outcome = Outcome(kind="terminal", error="channel disabled")
    else:
        wait = bucket_take(channel_id=channel.pk, per_minute=channel.rate_limit_per_minute)
        if wait > 0:
            delivery_delay(lease=lease, seconds=wait)
            return "rate_limited"
        outcome = _send(alert_deliver, delivery)
    recorded = delivery_record(lease=lease, outcome=outcome)
    if not recorded:
        return "stale"
    if outcome.kind == "delivered":
        return "delivered"
    return "retry" if _status(delivery_id) == DeliveryStatus.PENDING else "failed"


def _send(alert_deliver, delivery: Delivery) -> Outcome:
    channel = delivery.channel
    message = alert_deliver.DeliveryMessage.of(
        delivery_id=delivery.pk,
        purpose=delivery.purpose,
        event=delivery.event,
        definition=delivery.event.definition,
    )
    target = alert_deliver.ChannelTarget(
        kind=channel.kind, target=channel.target, chat_id=channel.chat_id, secret=channel.secret
    )
    options = alert_deliver.SendOptions(
        timeout_seconds=settings.TRACE_DELIVERY_TIMEOUT_SECONDS,
        allow_private=settings.TRACE_DELIVERY_ALLOW_PRIVATE,
        sns_endpoint_url=settings.TRACE_SNS_ENDPOINT_URL,
        sns_region=settings.TRACE_SNS_REGION,
    )
    try:
        provider_id = alert_deliver.send(target, message, options)
    except alert_deliver.SendFailed as exc:
        kind = "retry" if exc.retryable else "terminal"
        return Outcome(kind=kind, error=str(exc), retry_after=exc.retry_after)
    except Exception as exc:  # a bug or an unforeseen library error: retried, and visible
        log.exception("delivery %s: unexpected send error", delivery.pk)
        error = alert_deliver.redact(f"{type(exc).__name__}: {exc}", target)
        return Outcome(kind="retry", error=error)
    return Outcome(kind="delivered", provider_message_id=provider_id)


def _status(delivery_id: int) -> str:
    return Delivery.objects.filter(pk=delivery_id).values_list("status", flat=True).first() or ""


def _backoff(attempt: int) -> float:
    return backoff_seconds(
        tries=attempt,
        base=settings.TRACE_DELIVERY_BACKOFF_BASE_SECONDS,
        cap=settings.TRACE_DELIVERY_BACKOFF_MAX_SECONDS,
    )


def delivery_retry(*, delivery: Delivery) -> Delivery:
    """A `failed` delivery back to `pending`, due now, with a fresh round of attempts and its
    wake-up (admin's action and the API's). Anything but a failed delivery is a Conflict: a
    delivered one was sent, and a pending or sending one is already on its way."""
    now = timezone.now()
    with transaction.atomic():
        changed = Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.FAILED).update(
            status=DeliveryStatus.PENDING,
            attempt=0,
            next_attempt_at=now,
            lease_token=None,
            lease_expires_at=None,
            updated_at=now,
        )
        if not changed:
            status = _status(delivery.pk)
            raise Conflict(
                f"status: delivery {delivery.pk} is {status or 'gone'}; "
                "only a failed delivery can be retried"
            )
        outbox_add(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": delivery.pk})
    delivery.refresh_from_db()
    return delivery


def deliveries_wake_due(*, limit: int = 200) -> int:
    """Wake the pool for pending deliveries that are due (a retry's or a rate limit's time has
    come, or a wake-up was lost) and were not woken in the last TRACE_REWAKE_AFTER_SECONDS.
    Duplicates are harmless: the lease decides."""
    now = timezone.now()
    not_before = now + timedelta(seconds=settings.TRACE_REWAKE_AFTER_SECONDS)
    count = 0
    with transaction.atomic():
        due = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        if due:
            Delivery.objects.filter(pk__in=due).update(lease_expires_at=not_before)
        for delivery_id in due:
            outbox_add(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": delivery_id})
            count += 1
    return count


def deliveries_reap(*, limit: int = 200) -> int:
    """Sends whose lease expired (the worker died or hung mid-send) go back to `pending` after
    a backoff, the attempt counted, or to `failed` if it was the last one. The send may have
    reached the receiver: the retry carries the same Idempotency-Key, so it can tell."""
    now = timezone.now()
    count = 0
    with transaction.atomic():
        expired = Delivery.objects.select_for_update(skip_locked=True).filter(
            status=DeliveryStatus.SENDING, lease_expires_at__lt=now
        )
        for delivery in expired.order_by("lease_expires_at")[:limit]:
            error = f"lease expired: no outcome recorded for attempt {delivery.attempt}"
            delivery.lease_token = None
            delivery.lease_expires_at = None
            if delivery.attempt >= settings.TRACE_DELIVERY_MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.FAILED
                delivery.error = f"{error} (gave up after {delivery.attempt} attempts)"
            else:
                delivery.status = DeliveryStatus.PENDING
                delivery.next_attempt_at = now + timedelta(seconds=_backoff(delivery.attempt))
                delivery.error = error
            delivery.save(
                update_fields=[
                    "status",
                    "lease_token",
                    "lease_expires_at",
                    "next_attempt_at",
                    "error",
                    "updated_at",
                ]
            )
            count += 1
    return count

"""Routing: alert events become deliveries, one per (event, channel, purpose), each with its
wake-up for the delivery pool written in the same transaction (the outbox).

A new event goes to every enabled channel of its definition whose minimum severity it meets,
unless it is stale (older than the definition's `max_staleness_seconds` by block time), or
the same match (definition, transaction, log) was already sent to that channel from another
block, which is a reorg moving it, not news. A retracted event sends a retraction to the
channels that were sent its notification and asked for retractions, unless the match lives on
in another block. Creating a delivery is idempotent (its unique key), so a routing repeated by
a replay sends nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from trace_web.alerts.models import (
    SEVERITY_RANK,
    AlertDefinition,
    AlertEvent,
    Delivery,
    DeliveryPurpose,
    EventState,
)


def event_route(event: AlertEvent, definition: AlertDefinition) -> list[Delivery]:
    """The notifications of a new event (see the module docstring)."""
    now = timezone.now()
    limit = definition.max_staleness_seconds
    if (
        limit is not None
        and not event.backtest
        and event.event_time is not None
        and now - event.event_time > timedelta(seconds=limit)
    ):
        return []
    deliveries = []
    for channel in definition.channels.all():
        if not channel.enabled:
            continue
        if SEVERITY_RANK[definition.severity] < SEVERITY_RANK[channel.min_severity]:
            continue
        moved = (
            Delivery.objects.filter(
                org_id=event.org_id,
                channel=channel,
                purpose=DeliveryPurpose.NOTIFY,
                event__definition_id=event.definition_id,
                event__match_key=event.match_key,
            )
            .exclude(event=event)
            .exists()
        )
        if not moved:
            deliveries += _deliveries_make(event, channel, DeliveryPurpose.NOTIFY)
    return deliveries


def retraction_route(event: AlertEvent, definition: AlertDefinition) -> list[Delivery]:
    """The retractions of an event a reorg dropped (see the module docstring)."""
    if (
        AlertEvent.objects.filter(
            org_id=event.org_id,
            definition_id=event.definition_id,
            match_key=event.match_key,
            state=EventState.ACTIVE,
        )
        .exclude(pk=event.pk)
        .exists()
    ):
        return []  # the match moved to another block: nothing to take back
    deliveries = []
    notified = Delivery.objects.filter(event=event, purpose=DeliveryPurpose.NOTIFY)
    for delivery in notified.select_related("channel"):
        if delivery.channel.enabled and delivery.channel.send_retractions:
            deliveries += _deliveries_make(event, delivery.channel, DeliveryPurpose.RETRACT)
    return deliveries


def _deliveries_make(event: AlertEvent, channel, purpose: str) -> list[Delivery]:
    from trace_web.orchestration.models import OutboxKind
    from trace_web.orchestration.services.outbox import outbox_add

    delivery, created = Delivery.objects.get_or_create(
        org_id=event.org_id,
        event=event,
        channel=channel,
        purpose=purpose,
        defaults={"next_attempt_at": timezone.now()},
    )
    if not created:
        return []
    outbox_add(kind=OutboxKind.WAKE_DELIVERY, payload={"delivery_id": delivery.pk})
    return [delivery]

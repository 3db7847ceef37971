"""Ops alerts: messages of the platform itself (an integrity check's mismatch) to a channel
named in a job's config, delivered like any alert (a delivery row and its wake-up in the
outbox, in the caller's transaction). Each is an event of a disabled, condition-only alert
definition of the org (`ops-{topic}`): alert jobs never evaluate it, and receivers see the same
document as for any alert, `definition.name` telling what it is."""

from __future__ import annotations

import logging
from typing import Any

from trace_web.alerts.models import (
    SEVERITY_RANK,
    AlertDefinition,
    AlertEvent,
    Channel,
    Delivery,
    DeliveryPurpose,
    Severity,
)
from trace_web.alerts.route import _deliveries_make

log = logging.getLogger(__name__)

OPS_PREFIX = "ops-"
# A valid condition that never matches (wei is never negative), should someone enable the
# definition; disabled, no alert job evaluates it. A condition, so the xor with a bundle holds.
OPS_CONDITION = {"match": "transaction", "where": "value < 0"}


def ops_alert(
    *,
    org_id: int,
    channel_name: str,
    topic: str,
    chain_id: int,
    block_number: int,
    dedupe_key: str,
    payload: dict[str, Any],
    producer_task_id: int,
    producer_attempt: int,
    severity: str = Severity.HIGH,
) -> list[Delivery]:
    """Notify the org's channel `channel_name` once per `dedupe_key`; nothing (logged) if the
    org has no enabled channel of that name or its minimum severity is above `severity`."""
    channel = Channel.objects.filter(org_id=org_id, name=channel_name).first()
    if channel is None or not channel.enabled:
        log.warning("ops alert %s: org %s has no enabled channel %r", topic, org_id, channel_name)
        return []
    if SEVERITY_RANK[severity] < SEVERITY_RANK[channel.min_severity]:
        return []
    definition, _ = AlertDefinition.objects.get_or_create(
        org_id=org_id,
        name=f"{OPS_PREFIX}{topic}",
        defaults={
            "description": f"Platform messages: {topic} (not evaluated on blocks)",
            "severity": severity,
            "enabled": False,
            "chain_id": chain_id,
            "condition": OPS_CONDITION,
        },
    )
    event, _ = AlertEvent.objects.get_or_create(
        org_id=org_id,
        dedupe_key=dedupe_key[:128],
        defaults={
            "definition": definition,
            "match_key": dedupe_key[:128],
            "chain_id": chain_id,
            "block_number": block_number,
            "block_hash": "",
            "payload": payload,
            "producer_task_id": producer_task_id,
            "producer_attempt": producer_attempt,
        },
    )
    return _deliveries_make(event, channel, DeliveryPurpose.NOTIFY)

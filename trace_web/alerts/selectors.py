"""Reads for alerting's control plane: an org's definitions, channels, events and deliveries
(one of them by id, another org's being none), a definition as the spec it was written as,
the active `alert_evaluate` job that evaluates a definition, and the dead-letter queue."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from trace_web.alerts.models import (
    AlertDefinition,
    AlertEvent,
    Channel,
    DeadLetterBatch,
    Delivery,
)
from trace_web.errors import NotFound
from trace_web.orchestration.models import DagPointer, Job

ALERT_EVALUATE = "alert_evaluate"


def definitions_of(*, org_id: int) -> QuerySet[AlertDefinition]:
    return (
        AlertDefinition.objects.filter(org_id=org_id)
        .select_related("bundle")
        .prefetch_related("channels")
    )


def definition_get(*, org_id: int, definition_id: int) -> AlertDefinition:
    """The org's definition; another org's is NotFound too (never a 403 that confirms it)."""
    found = definitions_of(org_id=org_id).filter(pk=definition_id).first()
    if found is None:
        raise NotFound(f"no alert {definition_id} in this org")
    return found


def channels_of(*, org_id: int) -> QuerySet[Channel]:
    return Channel.objects.filter(org_id=org_id)


def channel_secret(*, org_id: int, name: str) -> str | None:
    """The named channel's signing secret as it is now (None: no such channel, or no secret)."""
    secret = channels_of(org_id=org_id).filter(name=name).values_list("secret", flat=True).first()
    return secret or None


def channel_get(*, org_id: int, channel_id: int) -> Channel:
    found = channels_of(org_id=org_id).filter(pk=channel_id).first()
    if found is None:
        raise NotFound(f"no channel {channel_id} in this org")
    return found


def definition_spec_of(definition: AlertDefinition) -> dict[str, Any]:
    """The definition as a spec (trace_web.alerts.spec.DefinitionSpec): what a PATCH is
    applied to. Datasets are part of it only for a handler (a condition derives its own)."""
    spec: dict[str, Any] = {
        "name": definition.name,
        "description": definition.description,
        "severity": definition.severity,
        "enabled": definition.enabled,
        "chain_id": definition.chain_id,
        "channels": [c.name for c in sorted(definition.channels.all(), key=lambda c: c.name)],
        "confirmations": definition.confirmations,
        "max_staleness_seconds": definition.max_staleness_seconds,
    }
    if definition.bundle_id is not None:
        bundle = definition.bundle
        spec |= {
            "bundle": f"{bundle.name}@{bundle.version}",
            "entrypoint": definition.entrypoint,
            "params": definition.params,
            "datasets": list(definition.datasets),
        }
    else:
        spec["condition"] = definition.condition
    return spec


def channel_spec_of(channel: Channel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "target": channel.target,
        "chat_id": channel.chat_id,
        "rate_limit_per_minute": channel.rate_limit_per_minute,
        "min_severity": channel.min_severity,
        "send_retractions": channel.send_retractions,
        "enabled": channel.enabled,
    }


def alert_evaluate_job_for(*, definition: AlertDefinition) -> Job | None:
    """The job of an active DAG version of the definition's org that evaluates it live: an
    `alert_evaluate` job whose config has the definition's chain_id and names it in `alerts`
    (or omits `alerts`: every definition of that chain). The first by DAG and job name when
    several do; None when none does."""
    active_ids = DagPointer.objects.filter(org_id=definition.org_id).values("current_id")
    jobs = (
        Job.objects.filter(
            org_id=definition.org_id, dag_version_id__in=active_ids, operator=ALERT_EVALUATE
        )
        .select_related("dag_version")
        .order_by("dag_version__name", "name")
    )
    for job in jobs:
        config = job.config if isinstance(job.config, dict) else {}
        if config.get("chain_id") != definition.chain_id:
            continue
        alerts = config.get("alerts")
        if alerts is None or (isinstance(alerts, list) and definition.name in alerts):
            return job
    return None


def events_filter(
    events: QuerySet[AlertEvent],
    *,
    state: str | None = None,
    backtest: bool | None = None,
    block_from: int | None = None,
    block_to: int | None = None,
    before_id: int | None = None,
) -> QuerySet[AlertEvent]:
    """Narrow a definition's events, newest first; blocks `[block_from, block_to)`;
    `before_id` is the paging cursor."""
    filters: dict[str, Any] = {
        "state": state,
        "backtest": backtest,
        "block_number__gte": block_from,
        "block_number__lt": block_to,
        "pk__lt": before_id,
    }
    return events.filter(**{k: v for k, v in filters.items() if v is not None}).order_by("-id")


def deliveries_filter(
    deliveries: QuerySet[Delivery],
    *,
    status: str | None = None,
    purpose: str | None = None,
    channel: int | None = None,
    event: int | None = None,
    before_id: int | None = None,
) -> QuerySet[Delivery]:
    """Narrow a definition's deliveries, newest first; `before_id` is the paging cursor."""
    filters: dict[str, Any] = {
        "status": status,
        "purpose": purpose,
        "channel_id": channel,
        "event_id": event,
        "pk__lt": before_id,
    }
    return (
        deliveries.filter(**{k: v for k, v in filters.items() if v is not None})
        .select_related("channel")
        .order_by("-id")
    )


def dead_letters(*, org_id: int | None = None) -> QuerySet[DeadLetterBatch]:
    """The dead-letter queue, oldest first (the order to repair and replay in)."""
    found = DeadLetterBatch.objects.select_related("org").order_by("id")
    return found if org_id is None else found.filter(org_id=org_id)


def dead_letter_rows(dead_letter: DeadLetterBatch) -> int | None:
    """How many rows the refused batches held, from their pointers in the trusted record
    (`batches: [{row_count, ...}]`); None when the record does not say."""
    record = dead_letter.record if isinstance(dead_letter.record, dict) else {}
    batches = record.get("batches")
    if not isinstance(batches, list):
        return None
    counts = [b.get("row_count") for b in batches if isinstance(b, dict)]
    if len(counts) != len(batches) or not all(isinstance(c, int) for c in counts):
        return None
    return sum(counts)

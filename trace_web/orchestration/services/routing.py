"""Event routing and invalidation scheduling: turn committed outputs and recorded
invalidations into tasks of the dependent reactive jobs (PerPartition or PerUpdate)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from trace_web.datasets.models import (
    DataInvalidation,
    Dataset,
    DatasetCursor,
    InvalidationProcessing,
)
from trace_web.orchestration.models import Job, JobInput, Task, TaskInput, TaskStatus
from trace_web.orchestration.selectors import consumer_edges, declared_inputs
from trace_web.orchestration.services.tasks import PinnedInput, TaskScope, task_create


def _where_matches(where: dict[str, Any], event: dict[str, Any]) -> bool:
    fields = {**event.get("attributes", {}), **event}
    return all(fields.get(key) == value for key, value in where.items())


def route_event(*, event_id: int, payload: dict[str, Any]) -> list[Task]:
    """Schedule dependents of one committed output. Idempotent per (event, job)."""
    dataset = Dataset.objects.get(pk=payload["dataset_id"])
    if payload.get("producer_trigger") == "chain_sync":
        # A planned range was published: plan its stream's next range now, not at a tick.
        from trace_web.chain_sync.services import chain_sync_range_completed

        chain_sync_range_completed(task_id=payload["producer_task_id"])
    created: list[Task] = []
    for edge in consumer_edges(dataset=dataset):
        if not _where_matches(edge.where, payload):
            continue
        if edge.job.execution_strategy == "PerUpdate":
            task = _per_update(edge, dataset, payload)
        else:
            task = _per_partition(edge, dataset, payload, event_id)
        if task:
            created.append(task)
    return created


def _per_partition(edge: JobInput, dataset: Dataset, event: dict[str, Any], event_id: int):
    scope = TaskScope(
        partition_key=event.get("partition_key"),
        range_start=event.get("range_start"),
        range_end=event.get("range_end"),
    )
    task, created = task_create(
        job=edge.job,
        trigger="event",
        scope=scope,
        dedupe_key=f"event:{event_id}:job:{edge.job_id}",
        inputs=[
            PinnedInput(
                dataset_id=dataset.pk,
                dataset_version_id=event.get("dataset_version_id"),
                partition_key=event.get("partition_key"),
            ),
            *declared_inputs(job=edge.job, skip=frozenset({dataset.pk})),
        ],
    )
    return task if created else None


def _per_update(edge: JobInput, dataset: Dataset, event: dict[str, Any]):
    """One cursor-driven task per consumer: reuse a still-Queued task (extending how far it may
    read), otherwise queue a new one that reads everything after the consumer's cursor."""
    job = edge.job
    Job.objects.select_for_update().filter(pk=job.pk).first()  # one coalescing decision at a time
    cursor = DatasetCursor.objects.filter(
        dataset=dataset, consumer_dag=job.dag_version.name, consumer_job=job.name
    ).first()
    position = cursor.position if cursor else 0
    upto = event.get("cursor") if isinstance(event.get("cursor"), int) else event.get("range_end")
    # Lock the candidate: a worker's claim (a conditional UPDATE of the same row) then waits
    # for this fold to commit, so what the worker reads after claiming includes it.
    pending = (
        Task.objects.select_for_update(of=("self",))
        .filter(
            job=job,
            status=TaskStatus.QUEUED,
            trigger="event",
            invalidation__isnull=True,
            inputs__dataset=dataset,
        )
        .first()
    )
    if pending:
        pinned = TaskInput.objects.get(task=pending, dataset=dataset)
        if upto is not None and (pinned.cursor_to is None or upto > pinned.cursor_to):
            pinned.cursor_to = upto
            pinned.dataset_version_id = event.get("dataset_version_id")
            pinned.save(update_fields=["cursor_to", "dataset_version"])
            pending.cursor = {**(pending.cursor or {}), "upto": upto}
            pending.save(update_fields=["cursor"])
        return None
    task, _ = task_create(
        job=job,
        trigger="event",
        scope=TaskScope(cursor={"dataset_id": dataset.pk, "after": position, "upto": upto}),
        inputs=[
            PinnedInput(
                dataset_id=dataset.pk,
                dataset_version_id=event.get("dataset_version_id"),
                cursor_from=position,
                cursor_to=upto,
            ),
            *declared_inputs(job=job, skip=frozenset({dataset.pk})),
        ],
    )
    return task


def invalidations_schedule(*, limit: int = 100) -> int:
    """Invalidation scanner: schedule scoped reprocessing for every dependent job of each new
    invalidation, exactly once per (invalidation, job)."""
    count = 0
    with transaction.atomic():
        pending = DataInvalidation.objects.select_for_update(skip_locked=True).filter(
            scheduled_at__isnull=True
        )[:limit]
        for invalidation in pending:
            for edge in consumer_edges(dataset=invalidation.dataset):
                job = edge.job
                InvalidationProcessing.objects.get_or_create(
                    invalidation=invalidation, dag_name=job.dag_version.name, job_name=job.name
                )
                task_create(
                    job=job,
                    trigger="invalidation",
                    scope=TaskScope(
                        partition_key=invalidation.partition_key,
                        range_start=invalidation.range_start,
                        range_end=invalidation.range_end,
                    ),
                    invalidation_id=invalidation.pk,
                    dedupe_key=f"invalidation:{invalidation.pk}:job:{job.pk}",
                    inputs=[PinnedInput(dataset_id=invalidation.dataset_id)],
                )
            invalidation.scheduled_at = timezone.now()
            invalidation.save(update_fields=["scheduled_at"])
            count += 1
    return count

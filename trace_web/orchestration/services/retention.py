"""Retention of the state DB: finished tasks (with their transitions and pinned inputs) and
published outbox rows are kept for a configured time, then deleted in batches by a
beat-driven dispatcher loop, so a follower that emits every block does not grow the state DB
for ever.

Never deleted, whatever their age: live tasks (queued, running, waiting for a retry), which
fencing and the claim need; outbox rows that are pending or failed (failed ones stay visible
in the admin); a task whose dedupe key names an event whose outbox row may still be replayed
(it keeps the event from being routed twice); a task a chain_sync ledger range still waits to
settle; a task that committed a partition version (its lineage: which attempt wrote the
partition and which input versions it read); the newest tasks of each always_on job, which
the source monitor reads to pace restarts.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Exists,
    F,
    Func,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.utils import timezone

from trace_web.datasets.models import PartitionVersion
from trace_web.orchestration.models import (
    Job,
    Outbox,
    OutboxStatus,
    Task,
    TaskInput,
    TaskStatus,
    TaskTransition,
)
from trace_web.orchestration.services.sources import RESTART_HISTORY

log = logging.getLogger(__name__)

# Task.dedupe_key of a routed event (routing._per_partition): `event:{outbox id}:job:{job id}`.
EVENT_KEY = r"^event:[0-9]{1,18}:"


def outbox_prune(*, batch_size: int | None = None) -> int:
    """Delete one batch of Done outbox rows published longer ago than the outbox retention;
    returns how many. Done rows are never read again: the drain takes only Pending ones."""
    batch_size = batch_size or settings.TRACE_PRUNE_BATCH_SIZE
    cutoff = timezone.now() - timedelta(seconds=settings.TRACE_OUTBOX_RETENTION_SECONDS)
    ids = list(
        Outbox.objects.filter(status=OutboxStatus.DONE, done_at__lt=cutoff)
        .order_by("done_at")
        .values_list("pk", flat=True)[:batch_size]
    )
    deleted, _ = Outbox.objects.filter(pk__in=ids, status=OutboxStatus.DONE).delete()
    return deleted


def _kept_for_the_source_monitor() -> list[int]:
    """The newest tasks of every always_on job: sources_monitor paces restarts from them."""
    kept: list[int] = []
    for job_id in Job.objects.filter(source_kind="always_on").values_list("pk", flat=True):
        kept += (
            Task.objects.filter(job_id=job_id)
            .order_by("-id")
            .values_list("pk", flat=True)[:RESTART_HISTORY]
        )
    return kept


def _prunable_tasks(cutoff):
    # chain_sync's ledger holds soft task ids; imported here as chain_sync builds on this app.
    from trace_web.chain_sync.models import RangeStatus, ScheduledRange

    finished = Q(status__in=[TaskStatus.COMPLETED, TaskStatus.CANCELED]) | Q(
        status=TaskStatus.FAILED, next_retry_at__isnull=True
    )
    event_id = Case(
        When(
            dedupe_key__regex=EVENT_KEY,
            then=Cast(
                Func(
                    F("dedupe_key"),
                    Value(":"),
                    Value(2),
                    function="split_part",
                    output_field=CharField(),
                ),
                BigIntegerField(),
            ),
        ),
        default=None,
        output_field=BigIntegerField(),
    )
    replayable_event = Outbox.objects.filter(pk=OuterRef("event_id")).exclude(
        status=OutboxStatus.DONE
    )
    unsettled_range = ScheduledRange.objects.filter(
        task_id=OuterRef("pk"), status=RangeStatus.SCHEDULED
    )
    lineage = PartitionVersion.objects.filter(task_id=OuterRef("pk"))
    return (
        Task.objects.filter(finished, finished_at__lt=cutoff)
        .annotate(event_id=event_id)
        .exclude(Exists(replayable_event))
        .exclude(Exists(unsettled_range))
        .exclude(Exists(lineage))
        .exclude(pk__in=_kept_for_the_source_monitor())
    )


def tasks_prune(*, batch_size: int | None = None) -> int:
    """Delete one batch of tasks that finished longer ago than the task retention, with their
    transitions and pinned inputs, skipping every task something still needs (see the module
    docstring); returns how many tasks."""
    batch_size = batch_size or settings.TRACE_PRUNE_BATCH_SIZE
    cutoff = timezone.now() - timedelta(seconds=settings.TRACE_TASK_RETENTION_SECONDS)
    with transaction.atomic():
        # Locked, skipping rows a service holds right now (a retry would wait for us, then
        # find the task gone: NotFound, never a half-deleted task).
        ids = list(
            _prunable_tasks(cutoff)
            .select_for_update(of=("self",), skip_locked=True)
            .order_by("finished_at")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not ids:
            return 0
        transitions, _ = TaskTransition.objects.filter(task_id__in=ids).delete()
        inputs, _ = TaskInput.objects.filter(task_id__in=ids).delete()
        _, by_model = Task.objects.filter(pk__in=ids).delete()
        tasks = by_model.get(Task._meta.label, 0)
    log.info("pruned %s task(s), %s transition(s), %s input(s)", tasks, transitions, inputs)
    return tasks


def cold_prune(*, batch_size: int) -> int:
    """Replaced cold partitions past TRACE_COLD_REPLACED_RETENTION_SECONDS: files and rows.
    A data DB or store that does not answer skips this tick's sweep (logged), not the state
    DB's retention."""
    from sqlalchemy.exc import SQLAlchemyError

    from trace_chain.cold_sweep import replaced_sweep
    from trace_chain.db import data_engine
    from trace_chain.object_store import ObjectStoreError, object_store_from_env

    try:
        return replaced_sweep(
            data_engine(),
            object_store_from_env(),
            older_than_seconds=settings.TRACE_COLD_REPLACED_RETENTION_SECONDS,
            batch_size=batch_size,
        )
    except (SQLAlchemyError, ObjectStoreError, OSError):
        log.warning("cold sweep skipped this tick", exc_info=True)
        return 0


def state_prune(*, max_batches: int = 50) -> int:
    """One dispatcher tick of retention: outbox, task, expired query-export and replaced
    cold-partition batches until
    all are short or `max_batches` rounds ran (the rest waits for the next tick); returns rows
    deleted."""
    from trace_web.query.services import query_results_prune

    batch_size = settings.TRACE_PRUNE_BATCH_SIZE
    total = 0
    for _ in range(max_batches):
        outbox = outbox_prune(batch_size=batch_size)
        tasks = tasks_prune(batch_size=batch_size)
        exports = query_results_prune(batch_size=batch_size)
        cold = cold_prune(batch_size=batch_size)
        total += outbox + tasks + exports + cold
        if max(outbox, tasks, exports, cold) < batch_size:
            break
    return total

"""The task lifecycle: create, claim, heartbeat, complete, fail, cancel, retry and reap.

Every mutation of a running attempt is fenced by (task_id, attempt, lease_token): it is a
conditional UPDATE (or a row locked with that condition), so a stale attempt changes nothing.
Wake-ups are outbox rows written in the same transaction as the state change.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from trace_operators.validation import Problems
from trace_tasks.queues import queue_for
from trace_web.errors import NotFound, StaleAttempt, ValidationFailed
from trace_web.orchestration.models import (
    Job,
    OutboxKind,
    Task,
    TaskInput,
    TaskStatus,
    TaskTransition,
)
from trace_web.orchestration.services import task_statements as statements
from trace_web.orchestration.services.backoff import backoff_seconds
from trace_web.orchestration.services.outbox import outbox_add, outbox_publish_after_commit
from trace_web.orchestration.services.tokens import Lease, capability_token_issue
from trace_web.orchestration.task_reports import (
    ERROR_MAX_CHARS,
    complete_body_parse,
    events_body_parse,
    fail_body_parse,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskScope:
    partition_key: str | None = None
    range_start: int | None = None
    range_end: int | None = None  # end-exclusive
    cursor: Any = None

    def __post_init__(self) -> None:
        if (self.range_start is None) != (self.range_end is None):
            raise ValidationFailed("a block range needs both range_start and range_end")
        if self.range_start is not None and self.range_end <= self.range_start:  # type: ignore[operator]
            raise ValidationFailed(
                f"empty range [{self.range_start}, {self.range_end}): end is exclusive"
            )


@dataclass(frozen=True)
class ClaimedTask:
    task: Task
    lease: Lease
    capability_token: str
    lease_seconds: float
    heartbeat_seconds: float
    # The pinned inputs (PinnedInput's fields), in the order they were pinned.
    inputs: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclass
class PinnedInput:
    dataset_id: int
    dataset_version_id: int | None = None
    partition_key: str | None = None
    cursor_from: int | None = None
    cursor_to: int | None = None


def lease_seconds_for(job: Job) -> float:
    return float(job.heartbeat_timeout_seconds or settings.TRACE_LEASE_SECONDS)


def heartbeat_seconds_for(job: Job) -> float:
    # Three heartbeats per lease: one lost heartbeat never costs the lease.
    return min(settings.TRACE_HEARTBEAT_SECONDS, lease_seconds_for(job) / 3)


def _record(task: Task, from_status: str, to_status: str, reason: str = "") -> None:
    TaskTransition.objects.create(
        task=task,
        attempt=task.attempt,
        from_status=from_status,
        to_status=to_status,
        worker_id=task.worker_id,
        reason=reason[:2000],
    )


def _wake(task: Task, job: Job) -> None:
    queue = queue_for(runtime=job.runtime, source_kind=job.source_kind)
    outbox_add(kind=OutboxKind.WAKE_TASK, payload={"task_id": task.pk, "queue": queue.value})
    Task.objects.filter(pk=task.pk).update(last_woken_at=timezone.now())


def task_create(
    *,
    job: Job,
    trigger: str,
    scope: TaskScope | None = None,
    payload: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
    invalidation_id: int | None = None,
    inputs: list[PinnedInput] | None = None,
) -> tuple[Task, bool]:
    """Create a Queued task and its wake-up; with a dedupe_key, at most one task ever exists
    for that key (returns the existing one and False)."""
    scope = scope or TaskScope()
    now = timezone.now()
    task = Task(
        org_id=job.org_id,
        job=job,
        status=TaskStatus.QUEUED,
        attempt=1,
        max_attempts=job.max_attempts,
        trigger=trigger,
        dedupe_key=dedupe_key,
        partition_key=scope.partition_key,
        range_start=scope.range_start,
        range_end=scope.range_end,
        cursor=scope.cursor,
        invalidation_id=invalidation_id,
        payload=payload or {},
        created_at=now,
        last_woken_at=now,
    )
    queue = queue_for(runtime=job.runtime, source_kind=job.source_kind).value
    # One statement: the task, its pinned inputs, its first transition and its wake-up.
    written = statements.task_insert(
        task,
        inputs=[dataclasses.asdict(i) for i in inputs or []],
        reason=f"created by {trigger}",
        queue=queue,
    )
    if written is None:  # the dedupe key is taken: nothing was written
        return Task.objects.get(dedupe_key=dedupe_key), False
    task.pk, outbox_id = written
    task._state.adding = False
    task._state.db = connection.alias
    outbox_publish_after_commit(
        outbox_id, OutboxKind.WAKE_TASK, {"task_id": task.pk, "queue": queue}
    )
    return task, True


def task_claim(*, task_id: int, worker_id: str) -> ClaimedTask | None:
    """Atomically move a Queued task to Running under a fresh lease; None if it is not
    claimable (already claimed, not Queued, or its job is at max_concurrency)."""
    now = timezone.now()
    lease_token = uuid.uuid4()
    fast = statements.task_claim_uncapped(
        task_id=task_id,
        worker_id=worker_id[:200],
        lease_token=lease_token,
        now=now,
        lease_default=settings.TRACE_LEASE_SECONDS,
    )
    if fast is not None:
        task, inputs = fast
        return _claimed(task, inputs)
    # Not claimable, or a job with max_concurrency: the locking path (it locks the job).
    return _claim_locked(task_id=task_id, worker_id=worker_id, lease_token=lease_token, now=now)


def _claim_locked(
    *, task_id: int, worker_id: str, lease_token: uuid.UUID, now: datetime
) -> ClaimedTask | None:
    with transaction.atomic():
        task = Task.objects.select_related("job__dag_version").filter(pk=task_id).first()
        if task is None or task.status != TaskStatus.QUEUED:
            return None
        job = task.job
        if job.max_concurrency:
            # Serialize claims of this job so two workers cannot both take the last slot.
            Job.objects.select_for_update().filter(pk=job.pk).first()
            running = Task.objects.filter(job=job, status=TaskStatus.RUNNING).count()
            if running >= job.max_concurrency:
                return None
        lease_s = lease_seconds_for(job)
        deadline = now + timedelta(seconds=job.timeout_seconds) if job.timeout_seconds else None
        claimed = Task.objects.filter(pk=task_id, status=TaskStatus.QUEUED).update(
            status=TaskStatus.RUNNING,
            lease_token=lease_token,
            lease_expires_at=now + timedelta(seconds=lease_s),
            deadline_at=deadline,
            worker_id=worker_id[:200],
            started_at=now,
            next_retry_at=None,
        )
        if not claimed:
            return None  # another worker won the race for this attempt
        # The conditional UPDATE succeeded, so the row now holds exactly these values.
        task.status = TaskStatus.RUNNING
        task.lease_token = lease_token
        task.lease_expires_at = now + timedelta(seconds=lease_s)
        task.deadline_at = deadline
        task.worker_id = worker_id[:200]
        task.started_at = now
        task.next_retry_at = None
        _record(task, TaskStatus.QUEUED, TaskStatus.RUNNING, "claimed")
    inputs = list(
        TaskInput.objects.filter(task=task)
        .order_by("id")
        .values(*(f.name for f in dataclasses.fields(PinnedInput)))
    )
    return _claimed(task, inputs)


def _claimed(task: Task, inputs: list[dict[str, Any]]) -> ClaimedTask:
    from trace_web.orchestration.services.commits import publication_prefixes

    job = task.job
    lease = Lease(task_id=task.pk, attempt=task.attempt, lease_token=str(task.lease_token))
    token = capability_token_issue(
        lease=lease,
        org_id=task.org_id,
        timeout_seconds=job.timeout_seconds,
        grants=_grants(inputs),
        prefixes=publication_prefixes(task),
    )
    return ClaimedTask(
        task=task,
        lease=lease,
        capability_token=token,
        lease_seconds=lease_seconds_for(job),
        heartbeat_seconds=heartbeat_seconds_for(job),
        inputs=inputs,
    )


def _grants(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the attempt may read (POST /v1/task/query): the dataset versions pinned as its
    inputs when it was made."""
    pinned = [
        {"dataset_id": i["dataset_id"], "dataset_version_id": i["dataset_version_id"]}
        for i in inputs
    ]
    return sorted(pinned, key=lambda p: p["dataset_id"])


def _current(lease: Lease) -> Q:
    return Q(
        pk=lease.task_id,
        attempt=lease.attempt,
        lease_token=lease.lease_token,
        status=TaskStatus.RUNNING,
    )


def _lock_current(lease: Lease) -> Task:
    """Lock the task row if (and only if) the lease is current; otherwise StaleAttempt."""
    task = (
        Task.objects.select_for_update(of=("self",))
        .select_related("job__dag_version")
        .filter(_current(lease))
        .first()
    )
    if task is None:
        raise StaleAttempt(
            f"task {lease.task_id} attempt {lease.attempt}: lease is not current "
            "(stale attempt, wrong lease token, or the task is no longer running)"
        )
    return task


def task_lock_current(*, lease: Lease) -> Task:
    """The task row of a current lease, locked until the caller's transaction ends (a fenced
    write of another service, such as buffer-publish); StaleAttempt otherwise."""
    return _lock_current(lease)


def task_lease_check(*, lease: Lease) -> None:
    """StaleAttempt unless the lease is the task's current one (a task's reads, such as its
    queries, end with its attempt)."""
    if not Task.objects.filter(_current(lease)).exists():
        raise StaleAttempt(f"task {lease.task_id} attempt {lease.attempt}: lease is not current")


def task_heartbeat(*, lease: Lease) -> datetime:
    """Extend the lease; raises StaleAttempt when the attempt lost its lease (stop working)."""
    expires = statements.task_heartbeat_extend(
        task_id=lease.task_id,
        attempt=lease.attempt,
        lease_token=lease.lease_token,
        now=timezone.now(),
        lease_default=settings.TRACE_LEASE_SECONDS,
    )
    if expires is not None:
        return expires
    if not Task.objects.filter(pk=lease.task_id).exists():
        raise NotFound(f"no task {lease.task_id}")
    raise StaleAttempt(f"task {lease.task_id} attempt {lease.attempt}: lease lost")


def _report(parse: Callable[[Any], Any], data: dict[str, Any]) -> Any:
    """A runtime's report checked field by field (task_reports): ValidationFailed listing
    every problem, before anything is locked or written."""
    try:
        return parse(data)
    except Problems as exc:
        raise ValidationFailed.of(exc.errors) from None


def task_complete(*, lease: Lease, outputs: list[Any] | None = None) -> Task:
    """Commit the attempt's outputs and finish it. Without explicit outputs, each of the job's
    outputs is committed once with the task's own scope."""
    items = _report(complete_body_parse, {"outputs": outputs}).outputs
    if not items:  # nothing reported, or none: one statement when nothing else is due
        done = statements.task_complete_plain(
            task_id=lease.task_id,
            attempt=lease.attempt,
            lease_token=lease.lease_token,
            now=timezone.now(),
            explicit_empty=items is not None,
        )
        if done is not None:
            return done
    return _complete_locked(lease, items)


@transaction.atomic
def _complete_locked(lease: Lease, items: list[Any] | None) -> Task:
    from trace_web.orchestration.services.commits import (
        default_outputs,
        invalidation_mark_processed,
        output_commit,
        per_update_cursor_advance,
    )

    task = _lock_current(lease)
    reported = default_outputs(task) if items is None else [o.model_dump() for o in items]
    committed = [
        output_commit(task=task, output=o, path=f"outputs[{i}]") for i, o in enumerate(reported)
    ]
    if task.job.execution_strategy == "PerUpdate":
        per_update_cursor_advance(task=task)
    if task.invalidation_id:
        invalidation_mark_processed(task=task)
    task.status = TaskStatus.COMPLETED
    task.outputs = committed
    task.finished_at = timezone.now()
    task.lease_token = None
    task.lease_expires_at = None
    task.save(update_fields=["status", "outputs", "finished_at", "lease_token", "lease_expires_at"])
    _record(task, TaskStatus.RUNNING, TaskStatus.COMPLETED)
    _release_capacity(task.job)
    return task


@transaction.atomic
def task_events(*, lease: Lease, events: list[Any]) -> list[dict[str, Any]]:
    """Commit outputs (or record invalidations) mid-run, e.g. a follower's per-block events."""
    from trace_web.orchestration.services.commits import invalidation_record, output_commit

    items = _report(events_body_parse, {"events": events}).events
    task = _lock_current(lease)
    accepted = []
    for index, item in enumerate(items):
        event, path = item.model_dump(), f"events[{index}]"
        if item.type == "invalidation":
            accepted.append(invalidation_record(task=task, event=event, path=path))
        else:
            accepted.append(output_commit(task=task, output=event, path=path))
    return accepted


def task_fail(*, lease: Lease, error: str, retryable: bool = True) -> Task:
    # In-process workers report whole tracebacks: kept to the column's size, not refused.
    report = _report(fail_body_parse, {"error": error[:ERROR_MAX_CHARS], "retryable": retryable})
    with transaction.atomic():
        task = _lock_current(lease)
        return _fail_locked(task, error=report.error, retryable=report.retryable)


def _fail_locked(task: Task, *, error: str, retryable: bool) -> Task:
    now = timezone.now()
    retry = retryable and task.attempt < task.max_attempts
    task.status = TaskStatus.FAILED
    task.error = error[:ERROR_MAX_CHARS]
    task.lease_token = None
    task.lease_expires_at = None
    if retry:
        delay = backoff_seconds(
            tries=task.attempt,
            base=settings.TRACE_RETRY_BACKOFF_BASE_SECONDS,
            cap=settings.TRACE_RETRY_BACKOFF_MAX_SECONDS,
        )
        task.next_retry_at = now + timedelta(seconds=delay)
        reason = f"attempt {task.attempt} failed, retry in {delay:.1f}s: {error}"
    else:
        task.next_retry_at = None
        task.finished_at = now
        why = "not retryable" if not retryable else f"after {task.attempt} attempts"
        reason = f"failed for good ({why}): {error}"
    task.save(
        update_fields=[
            "status",
            "error",
            "lease_token",
            "lease_expires_at",
            "next_retry_at",
            "finished_at",
        ]
    )
    _record(task, TaskStatus.RUNNING, TaskStatus.FAILED, reason)
    _release_capacity(task.job)
    return task


@transaction.atomic
def task_cancel(*, task_id: int, org_id: int, reason: str = "canceled") -> Task:
    task = (
        Task.objects.select_for_update()
        .select_related("job")
        .filter(pk=task_id, org_id=org_id)
        .first()
    )
    if task is None:
        raise NotFound(f"no task {task_id}")
    if task.status in (TaskStatus.COMPLETED, TaskStatus.CANCELED) or (
        task.status == TaskStatus.FAILED and task.next_retry_at is None
    ):
        raise ValidationFailed(f"task {task_id} already finished ({task.status})")
    previous = task.status
    was_running = previous == TaskStatus.RUNNING
    task.status = TaskStatus.CANCELED
    task.lease_token = None  # the worker's next heartbeat fails and it stops
    task.lease_expires_at = None
    task.next_retry_at = None
    task.finished_at = timezone.now()
    task.save(
        update_fields=["status", "lease_token", "lease_expires_at", "next_retry_at", "finished_at"]
    )
    _record(task, previous, TaskStatus.CANCELED, reason)
    if was_running:
        _release_capacity(task.job)
    return task


def task_release(*, lease: Lease, reason: str) -> Task:
    """Hand back a long-running attempt that its worker stops although nothing failed (the
    worker is shutting down). The task ends Canceled rather than Failed: no attempt is
    burned and the source monitor starts its successor after the normal pause, not after a
    failure's growing one. Fenced like a completion: a stale attempt changes nothing."""
    with transaction.atomic():
        task = _lock_current(lease)
        task.status = TaskStatus.CANCELED
        task.lease_token = None
        task.lease_expires_at = None
        task.next_retry_at = None
        task.finished_at = timezone.now()
        task.save(
            update_fields=[
                "status",
                "lease_token",
                "lease_expires_at",
                "next_retry_at",
                "finished_at",
            ]
        )
        _record(task, TaskStatus.RUNNING, TaskStatus.CANCELED, reason)
        _release_capacity(task.job)
        return task


def _release_capacity(job: Job) -> None:
    """A capped job freed a slot: wake its oldest Queued tasks (they may have been refused)."""
    if not job.max_concurrency:
        return
    for task in Task.objects.filter(job=job, status=TaskStatus.QUEUED).order_by("id")[
        : job.max_concurrency
    ]:
        _wake(task, job)


def tasks_requeue_due(*, limit: int = 200) -> int:
    """Retry scheduler: Failed tasks whose next_retry_at has come go back to Queued with
    attempt + 1 (same row)."""
    now = timezone.now()
    count = 0
    with transaction.atomic():
        due = (
            Task.objects.select_for_update(skip_locked=True)
            .select_related("job")
            .filter(status=TaskStatus.FAILED, next_retry_at__lte=now)
            .order_by("next_retry_at")[:limit]
        )
        for task in due:
            _requeue_locked(task, reason="retry")
            count += 1
    return count


def _requeue_locked(task: Task, *, reason: str, max_attempts: int | None = None) -> None:
    """Queue the next attempt of a locked, not running task (attempt + 1, same row) and its
    wake-up. The previous attempt's error is cleared: `error` describes the current attempt,
    and the old one stays in the transition that recorded the failure."""
    previous = task.status
    task.status = TaskStatus.QUEUED
    task.attempt += 1
    task.next_retry_at = None
    task.error = ""
    task.worker_id = ""
    task.started_at = None
    task.deadline_at = None
    task.finished_at = None
    if max_attempts is not None:
        task.max_attempts = max_attempts
    task.save(
        update_fields=[
            "status",
            "attempt",
            "max_attempts",
            "next_retry_at",
            "error",
            "worker_id",
            "started_at",
            "deadline_at",
            "finished_at",
        ]
    )
    _record(task, previous, TaskStatus.QUEUED, reason)
    _wake(task, task.job)


def _lock_for_operator(task_id: int, org_id: int) -> Task:
    task = (
        Task.objects.select_for_update(of=("self",))
        .select_related("job")
        .filter(pk=task_id, org_id=org_id)
        .first()
    )
    if task is None:
        raise NotFound(f"no task {task_id}")
    return task


def _finished_for_good(task: Task) -> bool:
    return task.status == TaskStatus.CANCELED or (
        task.status == TaskStatus.FAILED and task.next_retry_at is None
    )


@transaction.atomic
def task_retry(*, task_id: int, org_id: int, reason: str = "retried") -> Task:
    """Run a task that failed for good or was canceled once more: back to Queued with
    attempt + 1 and a wake-up, in one transaction. The retry is a person's decision, so the
    task gets a fresh budget: the new attempt and up to `job.max_attempts - 1` automatic
    retries after it, as a new task would have."""
    task = _lock_for_operator(task_id, org_id)
    if task.job.source_kind == "always_on":
        raise ValidationFailed(
            f"task {task_id} is an always_on source: the source monitor starts a new task of "
            f"job {task.job.name!r} by itself, so it is not retried"
        )
    if not _finished_for_good(task):
        hint = (
            " (it waits for its automatic retry: use run-now to start it now)"
            if task.status == TaskStatus.FAILED
            else ""
        )
        raise ValidationFailed(
            f"task {task_id} is {task.status}{hint}; only a task that failed for good or was "
            "canceled can be retried"
        )
    _requeue_locked(task, reason=reason, max_attempts=task.attempt + task.job.max_attempts)
    return task


@transaction.atomic
def task_run_now(*, task_id: int, org_id: int, reason: str = "run now") -> Task:
    """Start the automatic retry of a Failed task now instead of at its next_retry_at."""
    task = _lock_for_operator(task_id, org_id)
    if task.status != TaskStatus.FAILED or task.next_retry_at is None:
        hint = {
            TaskStatus.QUEUED: "it is already queued",
            TaskStatus.RUNNING: "it is running",
        }.get(task.status, "it has finished (retry it instead)")
        raise ValidationFailed(
            f"task {task_id} is {task.status}: {hint}; only a Failed task waiting for its "
            "retry can be run now"
        )
    _requeue_locked(task, reason=reason)
    return task


def tasks_rewake_stale(*, limit: int = 200) -> int:
    """Queued tasks whose wake-up seems lost (not claimed long after it was sent) are woken
    again. Duplicates are harmless: the claim decides."""
    cutoff = timezone.now() - timedelta(seconds=settings.TRACE_REWAKE_AFTER_SECONDS)
    count = 0
    with transaction.atomic():
        stale = (
            Task.objects.select_for_update(skip_locked=True)
            .select_related("job")
            .filter(status=TaskStatus.QUEUED)
            .filter(Q(last_woken_at__lt=cutoff) | Q(last_woken_at__isnull=True))[:limit]
        )
        for task in stale:
            _wake(task, task.job)
            count += 1
    return count


def tasks_reap_expired(*, limit: int = 200) -> int:
    """Lease reaper: a Running attempt whose lease expired (worker stopped heartbeating) or
    whose deadline passed is failed, then retried or failed for good."""
    now = timezone.now()
    count = 0
    with transaction.atomic():
        expired = (
            Task.objects.select_for_update(skip_locked=True)
            .select_related("job")
            .filter(status=TaskStatus.RUNNING)
            .filter(Q(lease_expires_at__lt=now) | Q(deadline_at__lt=now))[:limit]
        )
        for task in expired:
            if task.deadline_at and task.deadline_at < now:
                error = f"timed out after {task.job.timeout_seconds}s (worker {task.worker_id})"
            else:
                error = f"lease expired: worker {task.worker_id} stopped heartbeating"
            _fail_locked(task, error=error, retryable=True)
            count += 1
    return count

"""Sources: what creates tasks for source and manual jobs — cron (beat), webhook (secret per
source), manual (API / command) and always_on singletons kept alive by the monitor."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from trace_tasks.queues import Queue
from trace_web.errors import NotFound, Unauthenticated, ValidationFailed
from trace_web.orchestration.models import DagPointer, Job, Task, TaskStatus, WebhookSecret
from trace_web.orchestration.selectors import active_job
from trace_web.orchestration.services.tasks import TaskScope, task_cancel, task_create
from trace_web.orgs.models import Org

SOURCE_FIRE_TASK = "trace.dispatch.source_fire"
CRON_PREFIX = "cron:"
# How many of an always_on job's newest tasks pace its restarts (retention keeps them).
RESTART_HISTORY = 8


def _cron_name(org: Org, dag_name: str, job_name: str) -> str:
    return f"{CRON_PREFIX}{org.slug}:{dag_name}:{job_name}"


def cron_schedules_sync(*, org: Org, dag_name: str) -> None:
    """Make beat's periodic tasks match the cron jobs of the active version of this DAG.

    Entries are named by org/dag/job (not job id), so an edit made in the admin to an entry's
    schedule survives until the DAG's own schedule for that job changes."""
    pointer = DagPointer.objects.get(org=org, name=dag_name)
    prefix = f"{CRON_PREFIX}{org.slug}:{dag_name}:"
    wanted = set()
    for job in Job.objects.filter(dag_version_id=pointer.current_id, source_kind="cron"):
        name = _cron_name(org, dag_name, job.name)
        wanted.add(name)
        every = job.spec["source"].get("every_seconds")
        schedule: dict[str, Any] = {"crontab": None, "interval": None}
        if every:
            schedule["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=every, period=IntervalSchedule.SECONDS
            )
        else:
            minute, hour, day, month, weekday = job.spec["source"]["schedule"].split()
            schedule["crontab"], _ = CrontabSchedule.objects.get_or_create(
                minute=minute,
                hour=hour,
                day_of_month=day,
                month_of_year=month,
                day_of_week=weekday,
                timezone="UTC",
            )
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={
                **schedule,
                "task": SOURCE_FIRE_TASK,
                "kwargs": json.dumps(
                    {"org_id": org.pk, "dag_name": dag_name, "job_name": job.name}
                ),
                "queue": Queue.DISPATCHER.value,
                "enabled": True,
                "description": f"cron source of {dag_name}.{job.name} (managed by DAG sync)",
            },
        )
    PeriodicTask.objects.filter(name__startswith=prefix).exclude(name__in=wanted).delete()


def source_fire(*, org_id: int, dag_name: str, job_name: str) -> Task | None:
    """Beat fired a cron source: queue one task of the active job."""
    try:
        job = active_job(org_id=org_id, dag_name=dag_name, job_name=job_name)
    except NotFound:
        return None  # DAG deactivated or job removed since the schedule was written
    task, _ = task_create(job=job, trigger="cron")
    return task


def webhook_secret_rotate(*, org: Org, dag_name: str, job_name: str) -> str:
    """Issue a new secret for a webhook source; only its hash is stored, so show it once."""
    job = active_job(org_id=org.pk, dag_name=dag_name, job_name=job_name)
    if job.source_kind != "webhook":
        raise ValidationFailed(f"job {job_name!r} is not a webhook source")
    secret = secrets.token_urlsafe(32)
    WebhookSecret.objects.update_or_create(
        org=org,
        dag_name=dag_name,
        job_name=job_name,
        defaults={"secret_sha256": hashlib.sha256(secret.encode()).hexdigest()},
    )
    return secret


def webhook_authenticate(
    *, org_slug: str, dag_name: str, job_name: str, secret: str
) -> WebhookSecret:
    """The source's stored secret if `secret` matches it, else Unauthenticated (401)."""
    stored = WebhookSecret.objects.filter(
        org__slug=org_slug, dag_name=dag_name, job_name=job_name
    ).first()
    offered = hashlib.sha256((secret or "").encode()).hexdigest()
    if stored is None or not hmac.compare_digest(stored.secret_sha256, offered):
        raise Unauthenticated("bad or missing webhook secret")
    return stored


IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")  # visible ASCII, as HTTP header tokens


def webhook_receive(
    *,
    org_slug: str,
    dag_name: str,
    job_name: str,
    secret: str,
    payload: dict[str, Any],
    idempotency_key: str | None = None,
) -> tuple[Task, bool]:
    """A webhook call: a wrong or missing secret creates nothing (401). With an idempotency
    key, a replay of the same key to the same source creates no second task: it returns the
    first one and False (for as long as the state DB keeps the task, see its retention)."""
    stored = webhook_authenticate(
        org_slug=org_slug, dag_name=dag_name, job_name=job_name, secret=secret
    )
    job = active_job(org_id=stored.org_id, dag_name=dag_name, job_name=job_name)
    if job.source_kind != "webhook":
        raise ValidationFailed(f"job {job_name!r} is not a webhook source")
    dedupe_key = None
    if idempotency_key is not None:
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValidationFailed.one(
                "Idempotency-Key", "must be 1 to 200 visible ASCII characters"
            )
        scope = f"{stored.org_id}/{dag_name}/{job_name}/{idempotency_key}"
        dedupe_key = f"webhook:{hashlib.sha256(scope.encode()).hexdigest()}"
    return task_create(job=job, trigger="webhook", payload=payload, dedupe_key=dedupe_key)


def job_run_manual(
    *,
    org: Org,
    dag_name: str,
    job_name: str,
    payload: dict[str, Any] | None = None,
    scope: TaskScope | None = None,
) -> Task:
    from trace_web.orchestration.selectors import declared_inputs

    job = active_job(org_id=org.pk, dag_name=dag_name, job_name=job_name)
    task, _ = task_create(
        job=job, trigger="manual", scope=scope, payload=payload, inputs=declared_inputs(job=job)
    )
    return task


def _alive() -> Q:
    """Tasks that are running or will run again (queued, or failed with a retry due)."""
    return Q(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING]) | Q(
        status=TaskStatus.FAILED, next_retry_at__isnull=False
    )


def sources_monitor() -> int:
    """Keep exactly one live task per always_on job of every active DAG version; restart one
    that ended, after a pause that doubles with each consecutive failure (a source that cannot
    start is not restarted in a tight loop); first stop singletons of versions that are no
    longer active, so old and new never run together. Returns the number of tasks started."""
    active_ids = DagPointer.objects.values("current_id")
    retired = Task.objects.filter(
        _alive() & Q(job__source_kind="always_on") & ~Q(job__dag_version_id__in=active_ids)
    ).values_list("pk", "org_id")
    for task_id, org_id in retired:
        task_cancel(task_id=task_id, org_id=org_id, reason="DAG version no longer active")
    started = 0
    now = timezone.now()
    for job in Job.objects.filter(source_kind="always_on", dag_version_id__in=active_ids):
        with transaction.atomic():
            Job.objects.select_for_update().filter(pk=job.pk).first()  # one monitor decides
            if Task.objects.filter(_alive(), job_id=job.pk).exists():
                continue
            recent = list(Task.objects.filter(job=job).order_by("-id")[:RESTART_HISTORY])
            if (
                recent
                and recent[0].finished_at
                and recent[0].finished_at > now - _restart_pause(recent)
            ):
                continue
            task_create(job=job, trigger="always_on")
            started += 1
    return started


def _restart_pause(recent: list[Task]) -> timedelta:
    failures = 0
    for task in recent:
        if task.status != TaskStatus.FAILED:
            break
        failures += 1
    base = settings.TRACE_SOURCE_RESTART_SECONDS
    return timedelta(seconds=min(base * 2 ** max(failures - 1, 0), 300))

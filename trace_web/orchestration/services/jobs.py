"""Operations on a job as a whole, for the admin and the CLI: run it now, cancel its live tasks,
retry the ones that failed for good. Each goes through the task services one task at a time,
so every change is fenced and recorded exactly as a single-task operation would be."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from trace_web.errors import NotFound, ValidationFailed
from trace_web.orchestration.models import DagPointer, Job, Task, TaskStatus
from trace_web.orchestration.services.tasks import task_cancel, task_create, task_retry


def _job(*, job_id: int, org_id: int) -> Job:
    job = Job.objects.select_related("dag_version").filter(pk=job_id, org_id=org_id).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def _live() -> Q:
    return Q(status__in=[TaskStatus.QUEUED, TaskStatus.RUNNING]) | Q(
        status=TaskStatus.FAILED, next_retry_at__isnull=False
    )


@transaction.atomic
def job_run_now(*, job_id: int, org_id: int) -> Task:
    """Queue a manual task of a job of the active version of its DAG (what `POST
    .../jobs/{job}/runs` does). always_on jobs are refused: the source monitor keeps exactly
    one task of each running, and a second one would run beside it."""
    job = _job(job_id=job_id, org_id=org_id)
    version = job.dag_version
    pointer = DagPointer.objects.filter(org_id=org_id, name=version.name).first()
    if pointer is None or pointer.current_id != version.pk:
        active = f"v{pointer.current.version} is active" if pointer else "no version is active"
        raise ValidationFailed(
            f"job {job.name!r} is in v{version.version} of DAG {version.name!r}, but {active}: "
            "only jobs of the active version run"
        )
    if job.source_kind == "always_on":
        raise ValidationFailed(
            f"job {job.name!r} is an always_on source: the source monitor keeps its one task "
            "running (cancel its task to restart it)"
        )
    task, _ = task_create(job=job, trigger="manual")
    return task


def job_tasks_cancel(*, job_id: int, org_id: int, reason: str = "canceled") -> int:
    """Cancel every live task of the job (queued, running, or waiting for a retry); returns how
    many. An always_on job's monitor starts a new task after its restart pause."""
    job = _job(job_id=job_id, org_id=org_id)
    canceled = 0
    with transaction.atomic():
        for task_id in Task.objects.filter(_live(), job=job).values_list("pk", flat=True):
            task_cancel(task_id=task_id, org_id=org_id, reason=reason)
            canceled += 1
    return canceled


def job_tasks_retry(*, job_id: int, org_id: int, reason: str = "retried") -> int:
    """Retry every task of the job that failed for good (canceled ones were stopped on purpose
    and are left alone); returns how many."""
    job = _job(job_id=job_id, org_id=org_id)
    if job.source_kind == "always_on":
        raise ValidationFailed(
            f"job {job.name!r} is an always_on source: the source monitor restarts it by itself"
        )
    retried = 0
    with transaction.atomic():
        failed = Task.objects.filter(job=job, status=TaskStatus.FAILED, next_retry_at__isnull=True)
        for task_id in failed.values_list("pk", flat=True):
            task_retry(task_id=task_id, org_id=org_id, reason=reason)
            retried += 1
    return retried

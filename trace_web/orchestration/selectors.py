"""Reads for orchestration: active DAG versions, a DAG described, consumers of a dataset, task
listings. Callers pass querysets already scoped to the caller's org."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from trace_web.datasets.models import Dataset
from trace_web.errors import NotFound
from trace_web.orchestration.models import DagPointer, DagVersion, Job, JobInput, Task


def active_job(*, org_id: int, dag_name: str, job_name: str) -> Job:
    pointer = DagPointer.objects.filter(org_id=org_id, name=dag_name).first()
    if pointer is None:
        raise NotFound(f"DAG {dag_name!r} has no active version")
    job = Job.objects.filter(dag_version_id=pointer.current_id, name=job_name).first()
    if job is None:
        raise NotFound(f"DAG {dag_name!r} (v{pointer.current.version}) has no job {job_name!r}")
    return job


def dag_version_get(*, org_id: int, name: str, version: int) -> DagVersion:
    found = DagVersion.objects.filter(org_id=org_id, name=name, version=version).first()
    if found is None:
        raise NotFound(f"DAG {name!r} has no version {version}")
    return found


def consumer_edges(*, dataset: Dataset) -> QuerySet[JobInput]:
    """Input edges of reactive jobs in active DAG versions that read this dataset."""
    active_ids = DagPointer.objects.filter(org_id=dataset.org_id).values("current_id")
    by_edge = Q(
        job__dag_version__name=dataset.dag_name,
        from_job__name=dataset.job_name,
        from_output=dataset.output_index,
    )
    if dataset.published_name:
        by_edge |= Q(from_dataset_name=dataset.published_name)
    return (
        JobInput.objects.select_related("job", "job__dag_version")
        .filter(job__dag_version_id__in=active_ids, job__activation="reactive")
        .filter(by_edge)
        .order_by("job_id", "position")
    )


def dag_describe(
    *,
    name: str,
    versions: QuerySet[DagVersion],
    pointer: DagPointer | None,
    version: int | None = None,
) -> dict[str, Any]:
    """One DAG: its versions (newest first), which is active, and the jobs and YAML of the
    requested version, else the active one, else the latest. `versions` are the DAG's rows
    of one org; NotFound when there are none or the requested version is not among them."""
    rows = list(versions.select_related("created_by").order_by("-version"))
    if not rows:
        raise NotFound(f"no DAG named {name!r}")
    by_number = {row.version: row for row in rows}
    active = by_number.get(pointer.current.version) if pointer else None
    if version is not None:
        shown = by_number.get(version)
        if shown is None:
            raise NotFound(f"DAG {name!r} has no version {version}")
    else:
        shown = active or rows[0]
    jobs = Job.objects.filter(dag_version=shown).prefetch_related("inputs__from_job").order_by("id")
    return {
        "name": shown.name,
        "active_version": active.version if active else None,
        "latest_version": rows[0].version,
        "versions": rows,
        "active_ids": {active.pk} if active else set(),
        "shown_version": shown.version,
        "jobs": [_job_description(job) for job in jobs],
        "yaml": shown.source_yaml,
    }


def _job_description(job: Job) -> dict[str, Any]:
    return {
        "name": job.name,
        "activation": job.activation,
        "runtime": job.runtime,
        "operator": job.operator,
        "outputs": job.outputs,
        "execution_strategy": job.execution_strategy,
        "update_strategy": job.update_strategy,
        "source_kind": job.source_kind,
        "schedule": job.schedule,
        "max_concurrency": job.max_concurrency,
        "timeout_seconds": job.timeout_seconds,
        "heartbeat_timeout_seconds": job.heartbeat_timeout_seconds,
        "max_attempts": job.max_attempts,
        "inputs": [
            {
                "from_job": edge.from_job.name if edge.from_job else None,
                "from_output": edge.from_output,
                "from_dataset": edge.from_dataset_name or None,
                "where": edge.where,
            }
            for edge in sorted(job.inputs.all(), key=lambda e: e.position)
        ],
    }


def tasks_filter(
    tasks: QuerySet[Task],
    *,
    status: str | None = None,
    dag: str | None = None,
    job: str | None = None,
    before_id: int | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Task]:
    """Narrow an (org-scoped) task queryset, newest first; `before_id` is the paging cursor."""
    filters: dict[str, Any] = {
        "status": status,
        "job__dag_version__name": dag,
        "job__name": job,
        "pk__lt": before_id,
        "created_at__gte": created_after,
        "created_at__lt": created_before,
    }
    return tasks.filter(**{k: v for k, v in filters.items() if v is not None}).order_by("-id")


def declared_inputs(*, job, skip: frozenset[int] = frozenset()) -> list:
    """The datasets the job's `inputs` name that exist, each pinned at its newest version (no
    partition): what a manual run reads, and what a routed task reads of the inputs other
    than the one that triggered it (`skip`). An input not published yet is left out."""
    from django.db.models import Max

    from trace_web.datasets.models import Dataset
    from trace_web.orchestration.services.tasks import PinnedInput

    pinned = []
    for edge in job.inputs.select_related("from_job").order_by("position"):
        found = Dataset.objects.filter(org_id=job.org_id)
        if edge.from_job_id is not None:
            found = found.filter(
                dag_name=job.dag_version.name,
                job_name=edge.from_job.name,
                output_index=edge.from_output or 0,
            )
        else:
            found = found.filter(published_name=edge.from_dataset_name)
        dataset = found.annotate(newest=Max("versions__generation")).first()
        if dataset is None or dataset.pk in skip:
            continue
        version = dataset.versions.filter(generation=dataset.newest).first()
        pinned.append(
            PinnedInput(dataset_id=dataset.pk, dataset_version_id=version.pk if version else None)
        )
    return list({p.dataset_id: p for p in pinned}.values())

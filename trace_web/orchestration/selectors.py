"""Reads for orchestration: active DAG versions, consumers of a dataset, task listings."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from trace_web.datasets.models import Dataset
from trace_web.errors import NotFound
from trace_web.orchestration.models import DagPointer, DagVersion, Job, JobInput


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

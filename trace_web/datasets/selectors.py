"""Reads for the dataset registry."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from trace_web.datasets.models import Dataset
from trace_web.errors import NotFound
from trace_web.orgs.models import Org


def dataset_for_output(*, org_id: int, dag_name: str, job_name: str, output_index: int) -> Dataset:
    dataset = Dataset.objects.filter(
        org_id=org_id, dag_name=dag_name, job_name=job_name, output_index=output_index
    ).first()
    if dataset is None:
        raise NotFound(f"no dataset for {dag_name}.{job_name} output {output_index}")
    return dataset


def datasets_readable(*, org: Org, role: str) -> QuerySet[Dataset]:
    """The org's datasets a member with `role` may read: a published one when its
    `read_roles` include the role; an unpublished job output (no read roles of its own) by
    every member, like the DAG and tasks that make it."""
    return Dataset.objects.filter(org=org).filter(
        Q(published_name__isnull=True) | Q(read_roles__contains=[role])
    )

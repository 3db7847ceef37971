"""Reads for the dataset registry."""

from __future__ import annotations

from trace_web.datasets.models import Dataset
from trace_web.errors import NotFound


def dataset_for_output(*, org_id: int, dag_name: str, job_name: str, output_index: int) -> Dataset:
    dataset = Dataset.objects.filter(
        org_id=org_id, dag_name=dag_name, job_name=job_name, output_index=output_index
    ).first()
    if dataset is None:
        raise NotFound(f"no dataset for {dag_name}.{job_name} output {output_index}")
    return dataset

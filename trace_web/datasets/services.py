"""Writes for the dataset registry: registering a DAG version's outputs, publications,
partition commits, cursors and invalidations."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction
from django.db.models import Max

from trace_operators.context import ConfigError
from trace_operators.registry import operator_content_config
from trace_web.datasets.models import Dataset, DatasetVersion
from trace_web.errors import ValidationFailed
from trace_web.orgs.models import Org


def _definition_hash(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def output_definition(
    *,
    operator: str,
    config: dict[str, Any],
    update_strategy: str,
    unique_key: list[str] | None,
    output_index: int,
) -> dict[str, Any]:
    """What defines a dataset's content: a change here starts a new dataset version. Only the
    config the operator says decides content counts, so pointing a job at another RPC pool or
    tuning its batch size keeps the version."""
    try:
        content = operator_content_config(operator, config)
    except ConfigError:  # deployed before configs were checked: the whole config counts
        content = config
    return {
        "operator": operator,
        "config": content,
        "update_strategy": update_strategy,
        "unique_key": list(unique_key or []),
        "output": output_index,
    }


@transaction.atomic
def datasets_register(*, org: Org, dag_name: str, spec: Any) -> list[Dataset]:
    """Make sure every output of every job of this DAG spec has a dataset and a version for
    its current definition, and that `publish:` names point where the spec says."""
    published = {(p.job, p.output): (name, p) for name, p in spec.publish.items()}
    datasets = []
    for job in spec.jobs:
        for index in range(job.outputs):
            name, pub = published.get((job.name, index), (None, None))
            if name:
                taken = (
                    Dataset.objects.filter(org=org, published_name=name)
                    .exclude(dag_name=dag_name, job_name=job.name, output_index=index)
                    .first()
                )
                if taken:
                    raise ValidationFailed(
                        f"publish.{name}: already published by {taken.dag_name}.{taken.job_name}"
                    )
            dataset, _ = Dataset.objects.update_or_create(
                org=org,
                dag_name=dag_name,
                job_name=job.name,
                output_index=index,
                defaults={
                    "published_name": name,
                    "storage_kind": pub.storage if pub else "none",
                    "read_roles": list(pub.read_roles) if pub else [],
                    "update_strategy": job.update_strategy,
                    "unique_key": list(job.unique_key or []),
                },
            )
            definition = output_definition(
                operator=job.operator,
                config=job.config,
                update_strategy=job.update_strategy,
                unique_key=job.unique_key,
                output_index=index,
            )
            dataset_version_ensure(dataset=dataset, definition=definition)
            datasets.append(dataset)
    return datasets


def dataset_version_ensure(*, dataset: Dataset, definition: dict[str, Any]) -> DatasetVersion:
    digest = _definition_hash(definition)
    version = DatasetVersion.objects.filter(dataset=dataset, definition_hash=digest).first()
    if version:
        return version
    # Lock the dataset so two syncs cannot both take the same next generation, then look
    # again: the one that held the lock may have created this very version.
    Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
    version = DatasetVersion.objects.filter(dataset=dataset, definition_hash=digest).first()
    if version:
        return version
    latest = DatasetVersion.objects.filter(dataset=dataset).aggregate(g=Max("generation"))["g"]
    return DatasetVersion.objects.create(
        dataset=dataset,
        generation=(latest or 0) + 1,
        definition_hash=digest,
        definition=definition,
    )

"""What a fenced completion or event commits: output publications (partition versions, routed
events), PerUpdate cursor advances and invalidations. Called only inside the fenced transaction
of services.tasks, so a stale attempt can never reach this code."""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from trace_operators.registry import operator_output_committed
from trace_web.datasets.models import (
    DataInvalidation,
    DatasetCursor,
    InvalidationKind,
    InvalidationProcessing,
    PartitionVersion,
)
from trace_web.datasets.selectors import dataset_for_output
from trace_web.datasets.services import dataset_version_ensure, output_definition
from trace_web.errors import Conflict, ValidationFailed
from trace_web.orchestration.models import OutboxKind, Task, TaskInput
from trace_web.orchestration.services.outbox import outbox_add

log = logging.getLogger(__name__)


def default_outputs(task: Task) -> list[dict[str, Any]]:
    return [
        {
            "output": index,
            "partition_key": task.partition_key,
            "range_start": task.range_start,
            "range_end": task.range_end,
        }
        for index in range(task.job.outputs)
    ]


def _check_for_job(task: Task, output: dict[str, Any], path: str) -> None:
    """What the report's own types cannot tell (task_reports checked those): the output exists
    in the job, and a publication lies where the job may publish."""
    index = output.get("output", 0)
    if not 0 <= index < task.job.outputs:
        raise ValidationFailed.one(
            f"{path}.output",
            f"{index!r} out of range: job {task.job.name!r} has {task.job.outputs} output(s)",
        )
    location = (output.get("publication") or {}).get("location")
    if location:
        allowed = publication_prefixes(task)
        if not _inside(location, allowed):
            raise ValidationFailed.one(
                f"{path}.publication.location",
                f"{location!r} is outside the object store prefixes this job may publish "
                f"under: {allowed}",
            )


def publication_prefixes(task: Task) -> list[str]:
    """Absolute object-store prefixes the task's job may publish under. Readers follow
    committed locations, so a runtime may point them only at its own job's part of our store:
    what the operator declares (cryo_ingest: its content-addressed version prefix), else
    `orgs/{org_id}/{dag}/{job}/`. The capability token carries the same list."""
    from trace_operators.registry import operator_output_prefixes, operator_runtime_allowed

    job = task.job
    root = _store_root(settings.TRACE_OBJECT_STORE_URL)
    try:
        if not operator_runtime_allowed(job.operator, job.runtime):
            return []  # e.g. a trusted operator in `udf` from a version deployed long ago
        relative = operator_output_prefixes(
            job.operator, job.config, task.range_start, task.range_end
        )
    except Exception:  # a config the operator refuses: it publishes nothing, and says why
        log.warning("no publication prefixes for task %s", task.pk, exc_info=True)
        return []
    if relative is None:
        relative = [f"orgs/{task.org_id}/{job.dag_version.name}/{job.name}/"]
    return [root + prefix for prefix in relative]


@functools.lru_cache(maxsize=8)
def _store_root(url: str) -> str:
    """The object store's root URI, ending in `/` (claims ask for it on every task)."""
    from trace_chain.object_store import object_store_from_url

    root = object_store_from_url(url).uri()
    return root if root.endswith("/") else root + "/"


def _inside(location: str, prefixes: list[str]) -> bool:
    """Under one of `prefixes`, by plain key segments only: readers turn locations into paths
    and may unquote them, so `%`, `?`, `#` and `.`/`..`/empty segments are refused."""
    from trace_chain.object_store import ObjectStoreError, validate_key

    for prefix in prefixes:
        if not location.startswith(prefix):
            continue
        rest = location[len(prefix) :]
        if any(c in rest for c in "%?#"):
            return False
        try:
            validate_key(rest, allow_empty=True)
        except ObjectStoreError:
            return False
        return True
    return False


def output_commit(
    *, task: Task, output: dict[str, Any], path: str = "outputs[0]"
) -> dict[str, Any]:
    """Commit one output of the task's current attempt and emit its event to dependents.
    `output` is an OutputItem's fields (task_reports), `path` where it was in the report."""
    _check_for_job(task, output, path)
    job = task.job
    dataset = dataset_for_output(
        org_id=task.org_id,
        dag_name=job.dag_version.name,
        job_name=job.name,
        output_index=output["output"],
    )
    version = dataset_version_ensure(
        dataset=dataset,
        definition=output_definition(
            operator=job.operator,
            config=job.config,
            update_strategy=job.update_strategy,
            unique_key=job.spec.get("unique_key"),
            output_index=output["output"],
        ),
    )
    partition_key = output.get("partition_key")
    if partition_key is None and output.get("range_start") is not None:
        partition_key = f"{output['range_start']}_{output['range_end']}"
    publication = output.get("publication")
    if publication is not None:
        if not partition_key:
            raise ValidationFailed.one(f"{path}.publication", "needs a partition_key or a range")
        partition = _partition_commit(task, version, partition_key, output, publication)
        operator_output_committed(job.operator, task, partition)
    event = {
        "dataset_id": dataset.pk,
        "dataset_version_id": version.pk,
        "generation": version.generation,
        "output": output["output"],
        "partition_key": partition_key,
        "range_start": output.get("range_start"),
        "range_end": output.get("range_end"),
        "cursor": output.get("cursor"),
        "attributes": output.get("attributes") or {},
        "producer_task_id": task.pk,
        "producer_attempt": task.attempt,
        "producer_trigger": task.trigger,
    }
    outbox_add(kind=OutboxKind.ROUTE_EVENT, payload=event)
    return event


def _partition_commit(
    task: Task, version, partition_key: str, output: dict[str, Any], publication: dict[str, Any]
) -> PartitionVersion:
    """Idempotent: the same partition with the same content commits once; a different content
    for an already committed partition of this version is a loud conflict."""
    existing = PartitionVersion.objects.filter(
        dataset_version=version, partition_key=partition_key
    ).first()
    fields = {
        "range_start": output.get("range_start"),
        "range_end": output.get("range_end"),
        "location": publication.get("location", ""),
        "row_count": publication.get("row_count"),
        "bytes": publication.get("bytes"),
        "config_hash": publication.get("config_hash", ""),
        "schema_hash": publication.get("schema_hash", ""),
        "manifest": publication.get("manifest") or {},
    }
    if existing:
        if existing.location != fields["location"] or existing.config_hash != fields["config_hash"]:
            raise Conflict(
                f"partition {partition_key} of {version} is already committed at "
                f"{existing.location!r}; refusing a different publication"
            )
        return existing
    return PartitionVersion.objects.create(
        dataset_version=version,
        partition_key=partition_key,
        task_id=task.pk,
        attempt=task.attempt,
        **fields,
    )


def per_update_cursor_advance(*, task: Task) -> None:
    """A PerUpdate consumer finished: its cursor moves to what its task was pinned up to."""
    job = task.job
    for pinned in TaskInput.objects.filter(task=task, cursor_to__isnull=False):
        cursor, _ = DatasetCursor.objects.select_for_update().get_or_create(
            dataset_id=pinned.dataset_id,
            consumer_dag=job.dag_version.name,
            consumer_job=job.name,
        )
        if pinned.cursor_to > cursor.position:
            cursor.position = pinned.cursor_to
            cursor.save(update_fields=["position", "updated_at"])


def invalidation_record(
    *, task: Task, event: dict[str, Any], path: str = "events[0]"
) -> dict[str, Any]:
    """Record that part of one of the task's outputs was wrong (e.g. a reorged block range);
    `event` is an InvalidationItem's fields."""
    _check_for_job(task, event, path)
    output = event
    dataset = dataset_for_output(
        org_id=task.org_id,
        dag_name=task.job.dag_version.name,
        job_name=task.job.name,
        output_index=output["output"],
    )
    if output.get("range_start") is not None:
        kind = InvalidationKind.ROW_RANGE
    elif output.get("partition_key"):
        kind = InvalidationKind.PARTITION
    else:
        raise ValidationFailed.one(path, "an invalidation needs a range or a partition")
    invalidation = DataInvalidation.objects.create(
        dataset=dataset,
        kind=kind,
        range_start=output.get("range_start"),
        range_end=output.get("range_end"),
        partition_key=output.get("partition_key"),
        reason=str(event.get("reason", ""))[:2000],
        source_task_id=task.pk,
    )
    return {"type": "invalidation", "invalidation_id": invalidation.pk, "dataset_id": dataset.pk}


def invalidation_mark_processed(*, task: Task) -> None:
    """The dependent job's fenced completion processed the invalidation; a replace-style job
    passes it on to its own outputs so repairs cascade downstream."""
    job = task.job
    InvalidationProcessing.objects.filter(
        invalidation_id=task.invalidation_id,
        dag_name=job.dag_version.name,
        job_name=job.name,
    ).update(processed_at=timezone.now(), task_id=task.pk)
    if job.update_strategy != "replace":
        return
    invalidation = task.invalidation
    for index in range(job.outputs):
        DataInvalidation.objects.create(
            dataset=dataset_for_output(
                org_id=task.org_id,
                dag_name=job.dag_version.name,
                job_name=job.name,
                output_index=index,
            ),
            kind=invalidation.kind,
            range_start=invalidation.range_start,
            range_end=invalidation.range_end,
            partition_key=invalidation.partition_key,
            reason=f"cascade of invalidation {invalidation.pk}",
            source_task_id=task.pk,
        )

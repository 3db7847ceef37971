"""Integrity check results in the control plane: the `integrity_check` operator's committed
result becomes an IntegrityCheck row, and each compacted range it found damaged an
invalidation of the chain's compacted datasets of the org (so their dependents reprocess), in
the transaction that commits the result; a rebuilt Cryo backfill partition becomes a partition
of the backfill's own dataset, with its invalidation, in the transaction that commits it
(trace_operators/integrity_check.py `output_committed`)."""

from __future__ import annotations

import logging
from typing import Any

from django.utils.dateparse import parse_datetime

from trace_web.datasets.models import (
    DataInvalidation,
    DatasetVersion,
    IntegrityCheck,
    IntegrityStatus,
    InvalidationKind,
    PartitionVersion,
)

log = logging.getLogger(__name__)

BACKFILL_OPERATOR = "cryo_ingest"
RESULT_KEY_PREFIX = "checks/"  # partition keys of check results (repairs use the cold layout's)


def integrity_check_record(*, task: Any, partition: PartitionVersion) -> IntegrityCheck:
    """Record the check result committed as `partition` (its manifest is the result), once per
    task: a repeated commit of the same result records nothing new."""
    result = partition.manifest
    existing = IntegrityCheck.objects.filter(org_id=task.org_id, task_id=task.pk).first()
    if existing is not None:
        return existing
    job = task.job
    affected = [list(a) for a in result.get("affected", [])]
    repaired = [list(r) for r in result.get("repaired", [])]
    if not affected:
        status = IntegrityStatus.CLEAN
    elif repaired:
        status = IntegrityStatus.REPAIRED
    else:
        status = IntegrityStatus.MISMATCH
    check = IntegrityCheck.objects.create(
        org_id=task.org_id,
        dataset=partition.dataset_version.dataset,
        dag_name=job.dag_version.name,
        job_name=job.name,
        task_id=task.pk,
        attempt=task.attempt,
        chain_id=result["chain_id"],
        range_start=result["range_start"],
        range_end=result["range_end"],
        blocks_checked=result.get("blocks_checked", 0),
        partitions_checked=result.get("partitions_checked", 0),
        sample=result.get("sample"),
        mismatches=result.get("mismatches", 0),
        kinds=result.get("kinds", []),
        details=result.get("details", {}),
        affected=affected,
        repaired=repaired,
        status=status,
        alert_channel=result.get("alert_channel") or "",
        started_at=parse_datetime(result["started_at"]),
        finished_at=parse_datetime(result["finished_at"]),
    )
    if affected and result.get("source", "compacted") == "compacted":
        # A rebuilt backfill partition invalidates its own dataset (backfill_repair_record).
        compacted_invalidate(task=task, chain_id=check.chain_id, affected=affected, check=check)
    if affected and check.alert_channel:
        _alert(task=task, check=check)
    return check


def _alert(*, task: Any, check: IntegrityCheck) -> None:
    from trace_web.alerts.ops import ops_alert

    ops_alert(
        org_id=check.org_id,
        channel_name=check.alert_channel,
        topic="integrity-check",
        chain_id=check.chain_id,
        block_number=min(int(a[1]) for a in check.affected),
        dedupe_key=f"integrity-check:{check.pk}",
        payload={
            "integrity_check_id": check.pk,
            "dag": check.dag_name,
            "job": check.job_name,
            "range_start": check.range_start,
            "range_end": check.range_end,
            "status": check.status,
            "mismatches": check.mismatches,
            "kinds": check.kinds,
            "affected": check.affected,
            "repaired": [r[:3] for r in check.repaired],
        },
        producer_task_id=task.pk,
        producer_attempt=task.attempt,
    )


def compacted_invalidate(
    *, task: Any, chain_id: int, affected: list[list[Any]], check: IntegrityCheck
) -> list[DataInvalidation]:
    """One row-range invalidation per damaged range on each of the org's compacted datasets of
    the chain (`parquet_compact` outputs), so the jobs that read them reprocess the range."""
    dataset_ids = set(
        DatasetVersion.objects.filter(
            dataset__org_id=task.org_id,
            definition__operator="parquet_compact",
            definition__config__chain_id=chain_id,
        ).values_list("dataset_id", flat=True)
    )
    ranges = sorted({(int(a[1]), int(a[2])) for a in affected})
    made = []
    for dataset_id in sorted(dataset_ids):
        for start, end in ranges:
            made.append(
                DataInvalidation.objects.create(
                    dataset_id=dataset_id,
                    kind=InvalidationKind.ROW_RANGE,
                    range_start=start,
                    range_end=end,
                    reason=f"integrity check {check.pk}: {', '.join(check.kinds)}",
                    source_task_id=task.pk,
                )
            )
    return made


def backfill_repair_record(*, task: Any, partition: PartitionVersion) -> PartitionVersion:
    """A rebuilt Cryo backfill partition, committed as the integrity job's output, recorded in
    the backfill's own dataset version beside the damaged one, so queries read it from now on
    (the later commit answers where they overlap: trace_web/query/selectors.py), and its range
    invalidated on that dataset so the jobs that read it reprocess. The damaged partition is
    the org's committed `cryo_ingest` partition whose prefix holds the rebuilt one
    (trace_chain/integrity_repair.py `backfill_repair`). Idempotent, like the commit."""
    from trace_web.errors import ValidationFailed

    location = partition.location.rstrip("/")
    parent, revision = location.rsplit("/", 1)
    damaged = (
        PartitionVersion.objects.select_related("dataset_version")
        .filter(
            dataset_version__dataset__org_id=task.org_id,
            dataset_version__definition__operator=BACKFILL_OPERATOR,
            location=parent + "/",
            range_start=partition.range_start,
            range_end=partition.range_end,
        )
        .order_by("-pk")
        .first()
    )
    if damaged is None:
        raise ValidationFailed.one(
            "publication.location",
            f"{partition.location!r} is not inside a committed backfill partition of this org",
        )
    rebuilt, created = PartitionVersion.objects.get_or_create(
        dataset_version=damaged.dataset_version,
        partition_key=f"{damaged.partition_key}/{revision}"[:200],
        defaults={
            "range_start": partition.range_start,
            "range_end": partition.range_end,
            "location": partition.location,
            "row_count": partition.row_count,
            "bytes": partition.bytes,
            "config_hash": partition.config_hash,
            "schema_hash": partition.schema_hash,
            "manifest": partition.manifest,
            "task_id": task.pk,
            "attempt": task.attempt,
        },
    )
    if created:
        DataInvalidation.objects.create(
            dataset_id=damaged.dataset_version.dataset_id,
            kind=InvalidationKind.ROW_RANGE,
            range_start=partition.range_start,
            range_end=partition.range_end,
            reason=f"integrity: backfill partition rebuilt at {partition.location}",
            source_task_id=task.pk,
        )
    return rebuilt

"""Reads for the dataset registry."""

from __future__ import annotations

import re
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet, Sum

from trace_chain.chain_schema import COLUMNS, DATASETS, DUCKDB_TYPES
from trace_web.datasets.models import Dataset, DatasetVersion, IntegrityCheck, PartitionVersion
from trace_web.errors import NotFound
from trace_web.orgs.models import Org

# Operators whose outputs are committed cold Parquet of one chain dataset.
COLD_OPERATORS = ("cryo_ingest", "parquet_compact")


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


def dataset_by_name(*, org: Org, role: str, name: str) -> Dataset:
    """A dataset the member may read, by its published name or, for an unpublished job output,
    by the name the list shows (`{dag}.{job}[{output}]`). Another org's dataset and one the
    role may not read are both simply not found."""
    readable = datasets_readable(org=org, role=role)
    dataset = readable.filter(published_name=name).first()
    match = _OUTPUT_NAME.fullmatch(name)
    if dataset is None and match is not None:
        dag, job, output = match.groups()
        dataset = readable.filter(
            published_name__isnull=True, dag_name=dag, job_name=job, output_index=int(output)
        ).first()
    if dataset is None:
        raise NotFound(f"no dataset named '{name}' that you may read")
    return dataset


_OUTPUT_NAME = re.compile(r"([a-z][a-z0-9_-]{0,99})\.([a-z][a-z0-9_-]{0,99})\[([0-9]{1,4})\]")


def dataset_detail(dataset: Dataset, *, data_engine=None) -> dict[str, Any]:
    """Everything a reader wants to know of one dataset: its schema, its versions with what
    each has committed, and for chain data the extent it covers hot and cold and the chain's
    compaction line (below it queries read cold files, from it on the hot tables)."""
    versions = list(dataset.versions.order_by("generation"))
    stats = {
        row["dataset_version"]: row
        for row in PartitionVersion.objects.filter(dataset_version__in=versions)
        .values("dataset_version")
        .annotate(
            partitions=Count("pk"),
            rows=Sum("row_count"),
            bytes=Sum("bytes"),
            start=Min("range_start"),
            end=Max("range_end"),
            last_commit=Max("committed_at"),
        )
    }
    latest = versions[-1] if versions else None
    definition = (latest.definition or {}) if latest else {}
    return {
        "name": dataset.display_name,
        "published": dataset.published_name is not None,
        "dag": dataset.dag_name,
        "job": dataset.job_name,
        "output": dataset.output_index,
        "storage_kind": dataset.storage_kind,
        "update_strategy": dataset.update_strategy,
        "unique_key": dataset.unique_key,
        "read_roles": dataset.read_roles,
        "operator": definition.get("operator"),
        "schema": _schema(definition, latest),
        "versions": [_version(v, stats.get(v.pk, {})) for v in versions],
        "chain": _chain_extent(definition, latest, data_engine),
    }


def _version(version: DatasetVersion, stat: dict[str, Any]) -> dict[str, Any]:
    return {
        "generation": version.generation,
        "definition_hash": version.definition_hash,
        "created_at": version.created_at,
        "partitions": stat.get("partitions", 0),
        "rows": stat.get("rows"),
        "bytes": stat.get("bytes"),
        "range_start": stat.get("start"),
        "range_end": stat.get("end"),
        "last_commit_at": stat.get("last_commit"),
    }


def _chain_relations(definition: dict[str, Any]) -> tuple[int | None, tuple[str, ...]]:
    """The chain and the query relations a dataset's rows are part of: a follower's are the
    hot rows of all three, a backfill's (or compaction's) the cold files of its one dataset."""
    config = definition.get("config") or {}
    chain_id = config.get("chain_id") if isinstance(config.get("chain_id"), int) else None
    operator = definition.get("operator")
    if operator in ("block_follower", "parquet_compact"):  # every dataset of the chain
        return chain_id, DATASETS
    if operator in COLD_OPERATORS and config.get("dataset") in DATASETS:
        return chain_id, (config["dataset"],)
    return None, ()


def _schema(definition: dict[str, Any], latest: DatasetVersion | None) -> list[dict[str, Any]]:
    _, relations = _chain_relations(definition)
    if relations:
        return [
            {
                "relation": relation,
                "name": column.name,
                "type": DUCKDB_TYPES[column.kind],
                "nullable": column.nullable,
                "description": column.description,
            }
            for relation in relations
            for column in COLUMNS[relation]
        ]
    if latest is None:
        return []
    newest = PartitionVersion.objects.filter(dataset_version=latest).order_by("-pk").first()
    fields = ((newest.manifest or {}).get("schema") or []) if newest else []
    return [
        {
            "relation": None,
            "name": f.get("name"),
            "type": f.get("type"),
            "nullable": None,
            "description": "",
        }
        for f in fields
        if isinstance(f, dict)
    ]


def _chain_extent(definition, latest, data_engine) -> dict[str, Any] | None:
    chain_id, relations = _chain_relations(definition)
    if chain_id is None:
        return None
    from trace_chain.db import data_engine as default_engine
    from trace_chain.hot_store import hot_bounds

    bounds = hot_bounds(data_engine or default_engine(), chain_id=chain_id)
    hot = None if bounds is None else {"start": bounds[0], "end": bounds[1] + 1}
    extent: dict[str, Any] = {
        "chain_id": chain_id,
        "relations": list(relations),
        "compaction_line": bounds[0] if bounds else None,
        "hot": hot if definition.get("operator") == "block_follower" else None,
        "cold": None,
    }
    if latest is not None and definition.get("operator") in COLD_OPERATORS:
        ranges = list(
            PartitionVersion.objects.filter(dataset_version=latest)
            .exclude(range_start=None)
            .order_by("range_start")
            .values_list("range_start", "range_end")
        )
        extent["cold"] = _cold_extent(ranges)
    return extent


def _cold_extent(ranges: list[tuple[int, int]]) -> dict[str, Any] | None:
    """The committed block ranges as [start, end) with the gaps between them."""
    if not ranges:
        return None
    gaps, reach = [], ranges[0][1]
    for start, end in ranges[1:]:
        if start > reach:
            gaps.append({"start": reach, "end": start})
        reach = max(reach, end)
    return {"start": ranges[0][0], "end": reach, "partitions": len(ranges), "gaps": gaps}


def integrity_checks_filter(
    *,
    org: Org,
    chain_id: int | None = None,
    status: str | None = None,
    dag: str | None = None,
    job: str | None = None,
    overlaps_start: int | None = None,
    overlaps_end: int | None = None,
    before_id: int | None = None,
) -> QuerySet[IntegrityCheck]:
    """The org's integrity checks, newest first; `overlaps_*`: those whose range meets
    `[overlaps_start, overlaps_end)`."""
    checks = IntegrityCheck.objects.filter(org=org)
    if chain_id is not None:
        checks = checks.filter(chain_id=chain_id)
    if status is not None:
        checks = checks.filter(status=status)
    if dag is not None:
        checks = checks.filter(dag_name=dag)
    if job is not None:
        checks = checks.filter(job_name=job)
    if overlaps_start is not None:
        checks = checks.filter(range_end__gt=overlaps_start)
    if overlaps_end is not None:
        checks = checks.filter(range_start__lt=overlaps_end)
    if before_id is not None:
        checks = checks.filter(pk__lt=before_id)
    return checks.order_by("-id")

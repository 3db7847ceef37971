"""What a caller may query, from the dataset registry: the chains whose hot rows it may read
(the org's readable follower datasets) and the committed cold files it may read (the org's
readable Cryo backfill partitions), as the engine's Catalog. Compacted partitions are not
listed here: the engine reads them for the hot chains in the same snapshot as the line. Also
the backfill partitions an integrity check reads (`backfill_partitions`)."""

from __future__ import annotations

import re
from collections import defaultdict

from trace_chain.chain_schema import DATASETS
from trace_chain.query.catalog import Catalog, ColdFile, readable_path
from trace_web.datasets.models import Dataset, PartitionVersion
from trace_web.datasets.selectors import datasets_readable
from trace_web.orgs.models import Org

FOLLOWER = "block_follower"
BACKFILL = "cryo_ingest"


def query_catalog(*, org: Org, role: str, hot_dsn: str | None) -> Catalog:
    """What a member with `role` may query: the org's datasets that role may read."""
    readable = datasets_readable(org=org, role=role)
    return catalog_of(readable, hot_dsn=hot_dsn)


def task_catalog(*, capability, hot_dsn: str | None) -> Catalog:
    """What a task may query: exactly the dataset versions its capability token pins (its
    inputs), of its own org; a token whose attempt is over reads nothing (StaleAttempt)."""
    from trace_web.orchestration.services.tasks import task_lease_check

    task_lease_check(lease=capability.lease)
    pinned = {g["dataset_id"]: g.get("dataset_version_id") for g in capability.claims["datasets"]}
    datasets = Dataset.objects.filter(org_id=capability.org_id, pk__in=list(pinned))
    return catalog_of(datasets, hot_dsn=hot_dsn, versions=pinned)


def org_cold_catalog(*, org_id: int) -> Catalog:
    """Every committed cold partition of the org's datasets and the chains it follows (whose
    compacted segments it reads), whatever their read roles: what the org's Iceberg tables
    hold (trace_operators/iceberg_sync.py); who reads those is the catalog's own access."""
    return catalog_of(Dataset.objects.filter(org_id=org_id), hot_dsn=None)


def catalog_of(datasets, *, hot_dsn: str | None, versions: dict | None = None) -> Catalog:
    """The Catalog of these datasets: every committed partition of every generation (a newer
    generation, and the one chain schema over Cryo's own layout, answers first where they
    overlap); with `versions` (dataset id -> version id), only the pinned one of each."""
    hot_chains: set[int] = set()
    cold: list[ColdFile] = []
    for dataset in datasets.prefetch_related("versions"):
        for version in dataset.versions.all():
            if versions and versions.get(dataset.pk) not in (None, version.pk):
                continue
            definition = version.definition or {}
            config = definition.get("config") or {}
            operator = definition.get("operator")
            if operator == FOLLOWER and isinstance(config.get("chain_id"), int):
                hot_chains.add(config["chain_id"])
            elif operator == BACKFILL and config.get("dataset") in DATASETS:
                cold += _files(version, generation=version.generation)
    return Catalog(
        datasets=frozenset(DATASETS),
        hot_chain_ids=frozenset(hot_chains),
        cold=tuple(cold),
        hot_dsn=hot_dsn,
    )


def backfill_partitions(*, org_id: int, chain_id: int) -> list:
    """The committed Cryo backfill partitions of `chain_id` the org's queries read, as
    integrity_check's Partitions (trace_chain/integrity.py): of every partition of the org's
    `cryo_ingest` datasets, those answering for at least one block by the query engine's own
    rule where several overlap (trace_chain/query/coverage.py: a newer generation first, then
    the later commit). A partition shadowed only in part is checked whole."""
    from trace_chain.integrity import Partition
    from trace_chain.query.coverage import windows

    catalog = org_cold_catalog(org_id=org_id)
    by_dataset: dict[str, list[ColdFile]] = defaultdict(list)
    for file in catalog.cold:
        if file.chain_id == chain_id:
            by_dataset[file.dataset].append(file)
    answering = {w.file.committed_seq for files in by_dataset.values() for w in windows(files)}
    partitions = PartitionVersion.objects.filter(pk__in=answering).order_by("range_start", "pk")
    out = []
    for partition in partitions:
        manifest = partition.manifest or {}
        files = []
        for entry in manifest.get("files", []):
            start, end = _file_range(entry["name"], partition)
            files.append(
                {
                    "name": entry["name"],
                    "range_start": start,
                    "range_end": end,
                    "rows": entry.get("rows"),
                }
            )
        out.append(
            Partition(
                dataset=manifest.get("dataset"),
                range_start=partition.range_start,
                range_end=partition.range_end,
                location=partition.location,
                files=files,
                label=f"partition_version {partition.pk}",
                manifest=manifest,
            )
        )
    return out


def _files(version, *, generation: int) -> list[ColdFile]:
    files = []
    partitions = PartitionVersion.objects.filter(dataset_version=version).order_by("pk")
    for partition in partitions:
        manifest = partition.manifest or {}
        schema_version = manifest.get("schema_version")
        columns = frozenset(f.get("name") for f in manifest.get("schema", []))
        for entry in manifest.get("files", []):
            start, end = _file_range(entry["name"], partition)
            files.append(
                ColdFile(
                    dataset=manifest.get("dataset"),
                    chain_id=manifest.get("chain_id"),
                    path=readable_path(partition.location + entry["name"]),
                    range_start=start,
                    range_end=end,
                    schema_version=schema_version,
                    columns=columns,
                    priority=generation * 2 + (1 if schema_version else 0),
                    committed_seq=partition.pk,
                    rows=entry.get("rows"),
                )
            )
    return files


_FILE_RANGE = re.compile(r"__(\d+)_to_(\d+)\.parquet$")


def _file_range(name: str, partition: PartitionVersion) -> tuple[int, int]:
    """A file's own `[start, end)`: chunked partitions hold one file per chunk, and every file
    name shows its inclusive range (trace_chain/cold_layout.py)."""
    match = _FILE_RANGE.search(name)
    if match is None:
        return partition.range_start, partition.range_end
    return int(match.group(1)), int(match.group(2)) + 1


def readable_dataset(*, org: Org, role: str, name: str) -> Dataset | None:
    return datasets_readable(org=org, role=role).filter(published_name=name).first()

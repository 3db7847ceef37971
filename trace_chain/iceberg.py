"""Scale-out tables: the committed cold partitions of one org's chain dataset registered in an
Apache Iceberg table (pyiceberg), so Athena, Trino, Spark or DuckDB read the same history.

The sync is stateless: it works out the files Trace's own query answers from (the same
priority rules, `trace_chain.query.coverage`), compares them with the table's current data
files and, in one Iceberg snapshot, removes the superseded ones and registers the new ones in
place (the Parquet files are not rewritten). Running it again changes nothing; a run that dies
before its commit leaves the table as it was, and the next run converges. See
docs/cold_storage.md ("Iceberg") and docs/configuration.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trace_chain import chain_schema
from trace_chain.query.catalog import Catalog, ColdFile, compacted_files
from trace_chain.query.coverage import windows

CATALOG_ENV = "TRACE_ICEBERG_CATALOG"
NAMESPACE_ENV = "TRACE_ICEBERG_NAMESPACE"
WAREHOUSE_ENV = "TRACE_ICEBERG_WAREHOUSE"
SQL_URL_ENV = "TRACE_ICEBERG_SQL_URL"
GLUE_REGION_ENV = "TRACE_ICEBERG_GLUE_REGION"
DEFAULT_NAMESPACE = "trace"
# The SQL catalog's own tables (pyiceberg creates them) live in this schema of the data DB,
# apart from the Alembic-managed tables.
SQL_SCHEMA = "iceberg"
# Snapshot summary keys: which sync made a snapshot and over how many files.
SUMMARY_FILES = "trace.files"
SUMMARY_REMOVED = "trace.removed-files"

_ICEBERG_TYPES = {"int64": "long", "text": "string", "wei": "decimal(38, 0)", "bool": "boolean"}


class IcebergConfigError(ValueError):
    """A TRACE_ICEBERG_* setting that cannot work; the message names the variable."""


@dataclass(frozen=True)
class IcebergSettings:
    catalog: str  # "sql" | "glue"
    namespace: str  # the SQL catalog's namespace / the Glue database
    warehouse: str  # file:///… or s3://…: where table metadata is written
    sql_url: str | None = None  # SQLAlchemy URL of the SQL catalog's database
    glue_region: str | None = None
    s3_endpoint: str | None = None


def iceberg_settings_from_env(environ: Mapping[str, str] | None = None) -> IcebergSettings:
    """The catalog from `TRACE_ICEBERG_*`: a SQL catalog on the data DB (Lite's default) or
    AWS Glue; metadata under the object store's `iceberg/` unless a warehouse is given."""
    from trace_chain.object_store import S3_ENDPOINT_ENVS, object_store_from_env

    env = os.environ if environ is None else environ
    kind = env.get(CATALOG_ENV, "").strip() or "sql"
    if kind not in ("sql", "glue"):
        raise IcebergConfigError(f"{CATALOG_ENV} must be sql or glue, got {kind!r}")
    namespace = env.get(NAMESPACE_ENV, "").strip() or DEFAULT_NAMESPACE
    if not (namespace.isascii() and namespace.replace("_", "a").isalnum() and namespace.islower()):
        raise IcebergConfigError(
            f"{NAMESPACE_ENV} must be lowercase letters, digits and _ (a Glue database name)"
        )
    warehouse = env.get(WAREHOUSE_ENV, "").strip() or object_store_from_env(env).uri("iceberg")
    if not warehouse.startswith(("file:///", "s3://")):
        raise IcebergConfigError(f"{WAREHOUSE_ENV} must be file:///abs/dir or s3://bucket/prefix")
    endpoint = next((env[n].strip() for n in S3_ENDPOINT_ENVS if env.get(n, "").strip()), None)
    sql_url = None
    if kind == "sql":
        sql_url = env.get(SQL_URL_ENV, "").strip() or None
        if sql_url is None:
            from trace_chain.db import data_db_url, sqlalchemy_url

            sql_url = sqlalchemy_url(data_db_url()).render_as_string(hide_password=False)
    region = env.get(GLUE_REGION_ENV, "").strip() or env.get("AWS_REGION", "").strip() or None
    if kind == "glue" and region is None:
        raise IcebergConfigError(f"{GLUE_REGION_ENV} (or AWS_REGION) is required for glue")
    return IcebergSettings(kind, namespace, warehouse.rstrip("/"), sql_url, region, endpoint)


_CATALOGS: dict[IcebergSettings, Any] = {}
_CATALOGS_LOCK = threading.Lock()


def iceberg_catalog(settings: IcebergSettings) -> Any:
    """The pyiceberg catalog the settings name, one per process and settings (the SQL catalog
    holds a connection pool: one per sync would leave pools behind). The SQL catalog's
    namespace is created if missing; Glue's database is Terraform's
    (terraform/modules/analytics), never created here, so the task role needs no right to
    create databases."""
    with _CATALOGS_LOCK:
        if settings not in _CATALOGS:
            _CATALOGS[settings] = _catalog_open(settings)
        return _CATALOGS[settings]


def _catalog_open(settings: IcebergSettings) -> Any:
    properties = {"warehouse": settings.warehouse}
    if settings.s3_endpoint:
        properties["s3.endpoint"] = settings.s3_endpoint
    if settings.catalog == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        return GlueCatalog("trace", **properties, **{"glue.region": settings.glue_region})
    catalog = _sql_catalog(settings.sql_url or "", properties)
    catalog.create_namespace_if_not_exists(settings.namespace)
    return catalog


def _sql_catalog(url: str, properties: dict[str, str]) -> Any:
    import sqlalchemy as sa
    from pyiceberg.catalog.sql import SqlCatalog

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SQL_SCHEMA}"))
    finally:
        engine.dispose()
    # pyiceberg opens its own engine from a URL: its tables go to SQL_SCHEMA via search_path.
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={SQL_SCHEMA}"})
    return SqlCatalog("trace", uri=scoped.render_as_string(hide_password=False), **properties)


def table_identifier(settings: IcebergSettings, *, org_id: int, chain_id: int, dataset: str):
    """One table per org, chain and dataset: `{namespace}.org{org}_chain{chain}_{dataset}` (ids,
    not slugs, so names stay valid Glue names and never collide)."""
    if dataset not in chain_schema.DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(chain_schema.DATASETS)}")
    return (settings.namespace, f"org{int(org_id)}_chain{int(chain_id)}_{dataset}")


def iceberg_schema(dataset: str) -> Any:
    """The canonical chain schema as an Iceberg schema: field ids 1… in column order, the same
    types (64-bit integers, strings, decimal(38, 0), booleans) and nullability as the files."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    return Schema(
        *[
            NestedField(i, c.name, _ICEBERG_TYPES[c.kind], required=not c.nullable)
            for i, c in enumerate(chain_schema.COLUMNS[dataset], start=1)
        ]
    )


def table_ensure(catalog: Any, identifier: tuple[str, str], dataset: str) -> Any:
    """The table, created unpartitioned with the canonical schema and a name mapping (our files
    carry no Iceberg field ids: readers map columns by name)."""
    from pyiceberg.exceptions import TableAlreadyExistsError

    schema = iceberg_schema(dataset)
    if catalog.table_exists(identifier):
        return catalog.load_table(identifier)
    try:
        return catalog.create_table(
            identifier,
            schema=schema,
            properties={
                "schema.name-mapping.default": schema.name_mapping.model_dump_json(),
                "format-version": "2",
            },
        )
    except TableAlreadyExistsError:  # a concurrent sync created it first
        return catalog.load_table(identifier)


# --- which files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """The files a table should hold (URIs, one per block range) and the committed files left
    out because another source answers for part of their range (Iceberg cannot register part
    of a file; those blocks stay out of the table rather than being read twice)."""

    files: tuple[ColdFile, ...]
    partial: tuple[ColdFile, ...] = ()


def registration_plan(
    catalog: Catalog, *, chain_id: int, dataset: str, data_conn: Any = None
) -> Registration:
    """What Trace's own query reads from cold for one chain dataset: `catalog`'s committed
    files (Cryo backfills) and, if the chain's hot rows are readable, the live compacted
    segments below the compaction line, read in one data-DB snapshot through `data_conn` (a
    SQLAlchemy connection) — each block to the file the engine would read it from."""
    files = [f for f in catalog.cold if f.chain_id == chain_id and f.dataset == dataset]
    if chain_id in catalog.hot_chain_ids and data_conn is not None:
        files += _compacted(data_conn, chain_id=chain_id, dataset=dataset)
    pieces = windows(files)
    whole = {id(p.file) for p in pieces if p.whole}
    answering = {id(p.file) for p in pieces}
    # A file the manifest says is empty (a range without logs) answers with no rows: nothing
    # to register, and its footer need not be read again on every sync.
    chosen = [p.file for p in pieces if id(p.file) in whole and p.file.rows != 0]
    partial = [f for f in files if id(f) in answering and id(f) not in whole]
    return Registration(tuple(dict.fromkeys(chosen)), tuple(dict.fromkeys(partial)))


def _compacted(conn: Any, *, chain_id: int, dataset: str) -> list[ColdFile]:
    """Live compacted files of the dataset below the line: segments at or above it are stale
    (a deep reorg moved the line under them; the next compaction rebuilds them)."""
    import json

    import sqlalchemy as sa

    from trace_chain.cold_segments import segments_live
    from trace_chain.hot_schema import hot_blocks

    with conn.begin():
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        line = conn.execute(
            sa.select(sa.func.min(hot_blocks.c.block_number)).where(
                hot_blocks.c.chain_id == chain_id
            )
        ).scalar()
        segments = segments_live(conn, chain_id=chain_id, dataset=dataset)
    rows = [
        (s.dataset, s.range_start, s.range_end, s.location, json.dumps(s.files))
        for s in segments
        if line is None or s.range_end <= line
    ]
    return compacted_files(chain_id, rows)


def file_uri(path: str) -> str:
    """A ColdFile path (local path or s3:// URL) as the URI an Iceberg table records."""
    if "://" in path:
        return path
    return Path(path).resolve().as_uri()


# --- the sync ---------------------------------------------------------------------------------


@dataclass
class SyncResult:
    identifier: tuple[str, str]
    dataset: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    snapshot_id: int | None = None  # the table's current snapshot after the sync
    metadata_location: str = ""
    partial: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def summary(self) -> dict[str, Any]:
        return {
            "table": ".".join(self.identifier),
            "added": len(self.added),
            "removed": len(self.removed),
            "snapshot_id": self.snapshot_id,
            "metadata_location": self.metadata_location,
            "partial": self.partial,
        }


def table_sync(
    *,
    catalog: Any,
    identifier: tuple[str, str],
    dataset: str,
    files: Sequence[str],
    before_commit: Callable[[], None] = lambda: None,
) -> SyncResult:
    """Make the table hold exactly `files` (URIs): one snapshot that removes the data files not
    in `files` and registers those missing, or no snapshot when nothing differs. The removal
    and the registration are one commit, so every snapshot holds one version of each range.
    `before_commit` runs after the new files are read and just before the commit (the
    operator checks its lease there; tests inject failures). Files are registered as they
    are: their footers give the row counts and column bounds; nothing is rewritten."""
    from pyiceberg.io.pyarrow import parquet_file_to_data_file
    from pyiceberg.utils.concurrent import ExecutorFactory

    table = table_ensure(catalog, identifier, dataset)
    wanted = list(dict.fromkeys(files))
    current = {task.file.file_path: task.file for task in table.scan().plan_files()}
    stale = [path for path in current if path not in set(wanted)]
    new = [path for path in wanted if path not in current]
    result = SyncResult(identifier, dataset)
    # A partition of a range without rows of this dataset has an empty file: it holds nothing
    # to read, and Iceberg scans skip empty files, so it is not registered.
    # Footers read in parallel, on pyiceberg's own pool (as its add_files does).
    footers = ExecutorFactory.get_or_create().map(
        lambda path: parquet_file_to_data_file(table.io, table.metadata, path), new
    )
    added = list(footers)
    added = [data_file for data_file in added if data_file.record_count > 0]
    new = [data_file.file_path for data_file in added]
    if stale or new:
        with table.transaction() as tx:
            properties = {SUMMARY_FILES: str(len(current) - len(stale) + len(new))}
            properties[SUMMARY_REMOVED] = str(len(stale))
            with tx.update_snapshot(snapshot_properties=properties).overwrite() as change:
                for path in stale:
                    change.delete_data_file(current[path])
                for data_file in added:
                    change.append_data_file(data_file)
            before_commit()
        table = catalog.load_table(identifier)
        result.added, result.removed = new, stale
    snapshot = table.current_snapshot()
    result.snapshot_id = snapshot.snapshot_id if snapshot else None
    result.metadata_location = table.metadata_location
    return result


def dataset_sync(
    *,
    catalog: Catalog,
    iceberg: Any,
    settings: IcebergSettings,
    org_id: int,
    chain_id: int,
    dataset: str,
    data_conn: Any = None,
    before_commit: Callable[[], None] = lambda: None,
) -> SyncResult:
    """One org's table of one chain dataset made to hold what its queries read from cold."""
    plan = registration_plan(catalog, chain_id=chain_id, dataset=dataset, data_conn=data_conn)
    result = table_sync(
        catalog=iceberg,
        identifier=table_identifier(settings, org_id=org_id, chain_id=chain_id, dataset=dataset),
        dataset=dataset,
        files=[file_uri(f.path) for f in plan.files],
        before_commit=before_commit,
    )
    result.partial = [file_uri(f.path) for f in plan.partial]
    return result


def chain_sync(
    *,
    catalog: Catalog | Callable[[], Catalog],
    engine: Any,
    org_id: int,
    chain_id: int,
    datasets: Sequence[str],
    settings: IcebergSettings | None = None,
    check: Callable[[], None] = lambda: None,
    wait: Callable[[], None] = lambda: None,
) -> list[SyncResult]:
    """Sync the org's tables of `datasets` of one chain, one at a time under a data-DB advisory
    lock per org and chain (a second sync would only lose Iceberg's commit race). `catalog` (or
    a function giving it, called once the lock is held) says what is committed; `check` runs
    before each table and just before each commit (the operator's lease check)."""
    from trace_chain.db import advisory_lock_key, session_advisory_lock

    settings = settings or iceberg_settings_from_env()
    key = advisory_lock_key(f"trace.iceberg:{int(org_id)}:{int(chain_id)}")
    results = []
    with session_advisory_lock(engine, key=key, wait=wait):
        committed = catalog() if callable(catalog) else catalog
        tables = iceberg_catalog(settings)
        for dataset in datasets:
            check()
            with engine.connect() as conn:
                results.append(
                    dataset_sync(
                        catalog=committed,
                        iceberg=tables,
                        settings=settings,
                        org_id=org_id,
                        chain_id=chain_id,
                        dataset=dataset,
                        data_conn=conn,
                        before_commit=check,
                    )
                )
    return results


def snapshot_files(table: Any) -> Iterable[tuple[int, list[str]]]:
    """(snapshot id, its data files) for every snapshot of the table, oldest first."""
    for snapshot in table.snapshots():
        tasks = table.scan(snapshot_id=snapshot.snapshot_id).plan_files()
        yield snapshot.snapshot_id, sorted(t.file.file_path for t in tasks)


def duckdb_iceberg(conn: Any) -> Any:
    """Load DuckDB's avro and iceberg extensions from their PyPI wheels (verified against the
    wheels' RECORD; nothing is downloaded), so `iceberg_scan('<metadata.json>')` works."""
    from trace_chain.query.hardening import verified_extension_path

    conn.execute("SET autoinstall_known_extensions=false")
    conn.execute("SET autoload_known_extensions=false")
    for name in ("avro", "iceberg"):  # iceberg reads its manifests through avro
        path = str(verified_extension_path(name)).replace("'", "''")
        conn.execute(f"LOAD '{path}'")
    return conn

"""Running a query for a person or a task: gate the SQL, build what the caller may read, run it
in the sandboxed engine within its limits, export a result too large to answer inline to the
object store (a QueryResult record names the file), and audit it (hash, relations, rows,
outcome) whatever happens. Refusals and failures become TraceErrors the API answers with."""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import status

from trace_chain.chain_schema import DATASETS
from trace_web.errors import NotFound, TraceError
from trace_web.query.models import QueryResult


class QueryRefusedError(TraceError):
    """The SQL gate said no; nothing ran."""

    code = "query_refused"


class QueryFailedError(TraceError):
    """The query ran and failed (a type error, the time limit, the memory limit)."""

    code = "query_failed"


class QueryUnavailable(TraceError):
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


@dataclass
class QueryOutcome:
    table: Any  # pyarrow.Table
    truncated: bool
    seconds: float
    relations: frozenset[str]
    sql_sha256: str
    export: QueryResult | None = None  # set when the rows went to the object store
    file_rows: int | None = None  # with `to_file`: the rows written there


def query_run(
    *,
    sql: str,
    catalog: Any,
    org_id: int,
    user_id: int | None = None,
    task_id: int | None = None,
    timeout_seconds: float,
    max_rows: int,
    export_format: str | None = None,
    to_file: Path | None = None,
) -> QueryOutcome:
    """Gate, run and audit one query over `catalog` (what the caller may read). With
    `export_format`, a result past the inline caps (`max_rows`, TRACE_QUERY_MAX_BYTES) is
    exported whole in that format instead of truncated; without, it is truncated. With
    `to_file` (a batch job's output), every row up to `max_rows` is written to that local file
    in `export_format`, and none is kept inline."""
    from trace_chain.db import data_engine
    from trace_chain.query.audit import query_audit_record
    from trace_chain.query.engine import Export, Limits, query_execute
    from trace_chain.query.errors import QueryError, QueryRefused, SandboxSetupFailed
    from trace_chain.query.gate import gate, sql_sha256

    began = time.monotonic()
    audit: dict[str, Any] = {
        "org_id": org_id,
        "user_id": user_id,
        "task_id": task_id,
        "sql_sha256": sql_sha256(sql),
        "outcome": "failed",
    }
    try:
        gated = gate(sql, relations=DATASETS)
        audit["relations"] = sorted(gated.relations)
        limits = Limits(
            timeout_seconds=timeout_seconds,
            max_rows=max_rows,
            memory_limit=settings.TRACE_QUERY_MEMORY_LIMIT,
            threads=settings.TRACE_QUERY_THREADS,
            max_bytes=settings.TRACE_QUERY_MAX_BYTES,
        )
        with tempfile.TemporaryDirectory(prefix="trace-query-", dir=_scratch()) as temp:
            export = None
            if to_file is not None:
                export = Export(path=to_file, format=export_format, max_rows=max_rows, always=True)
            elif export_format is not None:
                export = Export(
                    path=Path(temp) / f"result.{export_format}",
                    format=export_format,
                    max_rows=settings.TRACE_QUERY_EXPORT_MAX_ROWS,
                )
            scratch = Path(temp) / "duckdb"
            scratch.mkdir()
            result = query_execute(
                gated.sql,
                catalog=catalog,
                limits=limits,
                temp_dir=scratch,
                export=export,
                s3=_s3_access(catalog),
            )
            record = None
            if result.exported_rows is not None and to_file is None:
                record = _export_store(
                    export, rows=result.exported_rows, truncated=result.truncated, audit=audit
                )
        exported = result.exported_rows is not None
        rows = result.exported_rows if exported else result.table.num_rows
        audit.update(outcome="ok", rows=rows, truncated=result.truncated)
        return QueryOutcome(
            file_rows=result.exported_rows if to_file is not None else None,
            table=result.table,
            truncated=result.truncated,
            seconds=result.seconds,
            relations=gated.relations,
            sql_sha256=audit["sql_sha256"],
            export=record,
        )
    except QueryRefused as exc:
        audit.update(outcome="refused", code=exc.code)
        raise QueryRefusedError(exc.reason, details=[f"sql: {exc.reason} ({exc.code})"]) from None
    except QueryError as exc:
        audit["code"] = exc.code
        if isinstance(exc, SandboxSetupFailed) or not getattr(exc, "user_error", True):
            # The platform's fault (the sandbox, storage, the engine): retry, not rewrite.
            raise QueryUnavailable(exc.reason) from None
        raise QueryFailedError(exc.reason, details=[f"sql: {exc.reason} ({exc.code})"]) from None
    finally:
        audit["duration_ms"] = int((time.monotonic() - began) * 1000)
        query_audit_record(data_engine(), **audit)


def task_query_to_file(
    *, capability_token: str, sql: str, path: Path, format: str, max_rows: int, timeout: float
) -> QueryOutcome:
    """A batch job's query (the duckdb_query operator): what the task's capability token
    grants (its pinned inputs, while its attempt lasts), every row into the local file `path`;
    gated, limited and audited as the task's own query."""
    from trace_chain.db import query_reader_dsn
    from trace_web.orchestration.services.tokens import capability_token_verify
    from trace_web.query.selectors import task_catalog

    capability = capability_token_verify(capability_token)
    return query_run(
        sql=sql,
        catalog=task_catalog(capability=capability, hot_dsn=query_reader_dsn()),
        org_id=capability.org_id,
        task_id=capability.lease.task_id,
        timeout_seconds=min(timeout, settings.TRACE_TASK_QUERY_SECONDS),
        max_rows=max_rows,
        export_format=format,
        to_file=path,
    )


def _export_store(export: Any, *, rows: int, truncated: bool, audit: dict) -> QueryResult:
    """Upload the export file and record it. The record is written after the upload, so a
    record always names a whole file; a failed upload leaves at most an orphan object, which
    the retention pass removes with the prefix."""
    from trace_chain.object_store import object_store_from_env

    result_id = uuid.uuid4()
    key = f"{RESULTS_PREFIX}/{audit['org_id']}/{result_id}.{export.format}"
    object_store_from_env().put_file(export.path, key)
    return QueryResult.objects.create(
        id=result_id,
        org_id=audit["org_id"],
        user_id=audit["user_id"],
        task_id=audit["task_id"],
        sql_sha256=audit["sql_sha256"],
        format=export.format,
        key=key,
        row_count=rows,
        bytes=export.path.stat().st_size,
        truncated=truncated,
        expires_at=timezone.now() + timedelta(seconds=settings.TRACE_QUERY_RESULT_TTL_SECONDS),
    )


RESULTS_PREFIX = "query-results"


def query_result_for(*, result_id: uuid.UUID, org_id: int, user_id=None, task_id=None):
    """An export that exists, has not expired and was made by this user (or task) of this
    org; any other is simply not found."""
    found = QueryResult.objects.filter(
        pk=result_id, org_id=org_id, expires_at__gt=timezone.now()
    ).filter(**({"user_id": user_id} if user_id is not None else {"task_id": task_id}))
    record = found.first() if (user_id is not None or task_id is not None) else None
    if record is None:
        raise NotFound("no such query result (they are kept for a limited time)")
    return record


def query_result_open(record: QueryResult):
    from trace_chain.object_store import ObjectNotFound, object_store_from_env

    try:
        return object_store_from_env().open_stream(record.key)
    except ObjectNotFound:
        raise NotFound("the query result's file is gone") from None


def query_results_prune(*, batch_size: int = 500) -> int:
    """Delete one batch of expired exports, their files first; returns how many."""
    from trace_chain.object_store import object_store_from_env

    expired = list(QueryResult.objects.filter(expires_at__lte=timezone.now())[:batch_size])
    store = object_store_from_env()
    for record in expired:
        store.delete_prefix(record.key)
    QueryResult.objects.filter(pk__in=[r.pk for r in expired]).delete()
    return len(expired)


def _s3_access(catalog: Any):
    """S3 credentials for the sandbox when any cold file it may read is on S3: the catalog's
    (backfills) or, with an s3:// object store, the compacted segments the engine adds."""
    on_s3 = settings.TRACE_OBJECT_STORE_URL.startswith("s3://") or any(
        f.path.startswith("s3://") for f in catalog.cold
    )
    if not on_s3:
        return None
    from trace_chain.query.s3_access import s3_access_from_env

    return s3_access_from_env()


def _scratch() -> Path:
    path = Path(settings.TRACE_HOME) / "query-scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def task_query_rows(*, capability_token: str, sql: str) -> dict[str, Any]:
    """A user handler's query (the udf operator's channel): what the task's capability token
    grants, gated, limited and audited as `POST /v1/task/query`, answered inline as
    `{"columns": [name, ...], "rows": [[...], ...], "truncated": bool}`."""
    from trace_chain.db import query_reader_dsn
    from trace_web.orchestration.services.tokens import capability_token_verify
    from trace_web.query.selectors import task_catalog

    capability = capability_token_verify(capability_token)
    outcome = query_run(
        sql=sql,
        catalog=task_catalog(capability=capability, hot_dsn=query_reader_dsn()),
        org_id=capability.org_id,
        task_id=capability.lease.task_id,
        timeout_seconds=settings.TRACE_TASK_QUERY_SECONDS,
        max_rows=settings.TRACE_QUERY_MAX_ROWS,
    )
    return _inline(outcome)


def org_query_rows(*, org, sql: str) -> dict[str, Any]:
    """A query over every dataset of `org`, as its admin would run it (`trace udf test`: a
    handler tried locally before it is deployed, so before any task grants it inputs), gated,
    limited and audited like `POST /v1/query`, answered as `task_query_rows` answers."""
    from trace_chain.db import query_reader_dsn
    from trace_web.orgs.models import Role
    from trace_web.query.selectors import query_catalog

    outcome = query_run(
        sql=sql,
        catalog=query_catalog(org=org, role=Role.ADMIN, hot_dsn=query_reader_dsn()),
        org_id=org.pk,
        timeout_seconds=settings.TRACE_TASK_QUERY_SECONDS,
        max_rows=settings.TRACE_QUERY_MAX_ROWS,
    )
    return _inline(outcome)


def _inline(outcome) -> dict[str, Any]:
    from trace_web.query import results

    return {
        "columns": [column["name"] for column in results.columns_of(outcome.table)],
        "rows": results.json_rows(outcome.table),
        "truncated": outcome.truncated,
    }

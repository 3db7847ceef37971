"""Running a query for a person or a task: gate the SQL, build what the caller may read, run it
in the sandboxed engine within its limits, and audit it (hash, relations, rows, outcome)
whatever happens. Refusals and failures become TraceErrors the API answers with."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from rest_framework import status

from trace_chain.chain_schema import DATASETS
from trace_web.errors import TraceError


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


def query_run(
    *,
    sql: str,
    catalog: Any,
    org_id: int,
    user_id: int | None = None,
    task_id: int | None = None,
    timeout_seconds: float,
    max_rows: int,
) -> QueryOutcome:
    """Gate, run and audit one query over `catalog` (what the caller may read)."""
    from trace_chain.db import data_engine
    from trace_chain.query.audit import query_audit_record
    from trace_chain.query.engine import Limits, query_execute
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
        )
        with tempfile.TemporaryDirectory(prefix="trace-query-", dir=_scratch()) as temp:
            result = query_execute(gated.sql, catalog=catalog, limits=limits, temp_dir=Path(temp))
        audit.update(outcome="ok", rows=result.table.num_rows, truncated=result.truncated)
        return QueryOutcome(
            table=result.table,
            truncated=result.truncated,
            seconds=result.seconds,
            relations=gated.relations,
            sql_sha256=audit["sql_sha256"],
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


def _scratch() -> Path:
    path = Path(settings.TRACE_HOME) / "query-scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path

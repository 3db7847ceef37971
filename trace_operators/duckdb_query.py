"""duckdb_query: a batch SQL query in a DAG. One SELECT over the chain relations the task may
read (its pinned inputs: the datasets its job's `inputs` name), every row written to a file
(Parquet, CSV or JSON lines) published as the job's output dataset.

The query goes through the same SQL gate, sandbox, limits and audit as `POST /v1/task/query`
(the platform runtime supplies `ctx.query_to_file`); the gate already runs when the DAG is
deployed, so a refused query is a config error naming `config.sql`, not a failed run.

Each attempt writes under its own prefix, `orgs/{org}/{dag}/{job}/{partition}/{task}-{attempt}/`
(`result.{ext}`, `manifest.json` with the file's sha256, then `_SUCCESS`), and the fenced
completion commits that location as the partition's version: a superseded attempt's files are
never committed (they stay as orphans under its own prefix), and a re-run replaces the
partition with its own.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from trace_chain import cold_layout
from trace_chain.object_store import object_store_from_env, trace_home
from trace_operators.context import ConfigError, PermanentError, TaskContext
from trace_operators.validation import StrictModel, validate

EXTENSIONS = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}


class QueryConfig(StrictModel):
    sql: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    max_rows: Annotated[int, Field(ge=1, le=100_000_000)] = 10_000_000
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 300.0


# It reads through the platform's query service (in-process), which a user runtime has not.
RUNTIMES = ("platform",)


def _sql_rules(raw: dict[str, Any]):
    from trace_chain.chain_schema import DATASETS
    from trace_chain.query.errors import QueryRefused
    from trace_chain.query.gate import gate

    sql = raw.get("sql")
    if isinstance(sql, str) and sql.strip():
        try:
            gate(sql, relations=DATASETS)
        except QueryRefused as exc:
            yield "sql", f"{exc.reason} ({exc.code})"


def config_parse(config: dict[str, Any]) -> QueryConfig:
    return validate(QueryConfig, config, rules=_sql_rules, prefix="config", error=ConfigError)


def run(ctx: TaskContext) -> dict[str, Any]:
    config = config_parse(ctx.config)
    if ctx.query_to_file is None:
        raise PermanentError("duckdb_query runs only in the platform runtime")
    partition_key = ctx.scope.partition_key or f"task-{ctx.task_id}"
    name = f"result.{EXTENSIONS[config.format]}"
    staging = _staging()
    try:
        path = staging / name
        rows = ctx.query_to_file(
            sql=config.sql,
            path=path,
            format=config.format,
            max_rows=config.max_rows,
            timeout=config.timeout_seconds,
        )
        ctx.check_lease()
        prefix = (
            f"orgs/{ctx.org_id}/{ctx.dag_name}/{ctx.job_name}/{_segment(partition_key)}/"
            f"{ctx.task_id}-{ctx.attempt}/"
        )
        manifest = {
            "format": config.format,
            "row_count": rows,
            "bytes": path.stat().st_size,
            "files": [
                {
                    "name": name,
                    "rows": rows,
                    "bytes": path.stat().st_size,
                    "sha256": cold_layout.file_sha256(path),
                }
            ],
            "schema": _schema(path) if config.format == "parquet" else [],
            "query_sha256": _sha256(config.sql),
            "producer": {
                "operator": "duckdb_query",
                "task_id": ctx.task_id,
                "attempt": ctx.attempt,
            },
        }
        store = object_store_from_env()
        store.put_file(path, prefix + name)
        store.put_bytes(cold_layout.manifest_bytes(manifest), prefix + "manifest.json")
        ctx.check_lease()
        store.put_bytes(b"", prefix + "_SUCCESS")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.outputs = [
        {
            "output": 0,
            "partition_key": partition_key,
            "range_start": ctx.scope.range_start,
            "range_end": ctx.scope.range_end,
            "publication": {
                "location": store.uri(prefix),
                "row_count": rows,
                "bytes": manifest["bytes"],
                "manifest": manifest,
            },
        }
    ]
    return manifest


def _staging() -> Path:
    root = Path(os.environ.get("TRACE_STAGING_DIR") or trace_home() / "staging") / "duckdb_query"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="q-", dir=root))


def _segment(partition_key: str) -> str:
    """A partition key as one safe store key segment (keys may hold `/`, `..` or spaces)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.=-]", "_", partition_key).strip(".") or "_"
    return cleaned[:100] + ("-" + _sha256(partition_key)[:12] if cleaned != partition_key else "")


def _sha256(text: str) -> str:
    return cold_layout.sha256_hex(text.encode("utf-8"))


def _schema(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return cold_layout.arrow_schema_fields(pq.read_schema(path))

"""udf: a user's handler, run from its job's pinned bundle in the sandbox (trace_tasks.sandbox).
The bundle is fetched and checked against its manifest before every run (any mismatch fails
for good); the handler reads only through the task query API with this attempt's capability
token, and its returned rows are buffer-published (a JSONL batch in the object store and a
pointer) and committed as the job's output at completion.

Config: `params` (handed to the handler as `ctx.params`) and optional `limits` (fields of
the sandbox's SandboxLimits, e.g. a lower wall-clock limit). The handler's `ctx.range` is the
task's block range, end-exclusive `[start, end)` as everywhere in the API.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from django.conf import settings
from pydantic import Field

from trace_operators.context import (
    ConfigError,
    PermanentError,
    TaskApiRefused,
    TaskContext,
)
from trace_operators.validation import StrictModel, validate

# User code: never in the trusted pools.
RUNTIMES = ("udf",)


class UdfConfig(StrictModel):
    params: dict[str, Any] = {}
    limits: Annotated[dict[str, int | float], Field(max_length=32)] = {}


def config_parse(config: dict[str, Any]) -> UdfConfig:
    return validate(UdfConfig, config, prefix="config", error=ConfigError)


class _Channel:
    """The sandbox's one way out (its TaskChannel): this attempt's queries and heartbeats,
    through the in-process task API that holds the capability token."""

    def __init__(self, ctx: TaskContext, channel_error: type[Exception]) -> None:
        self._ctx = ctx
        self._channel_error = channel_error

    def query(self, sql: str) -> dict[str, Any]:
        self._ctx.check_lease()
        try:
            return self._ctx.task_api.query(sql)
        except TaskApiRefused as exc:
            raise self._channel_error(exc.code, exc.message) from None

    def heartbeat(self) -> None:
        self._ctx.check_lease()
        self._ctx.task_api.heartbeat()


def run(ctx: TaskContext) -> dict[str, Any]:
    config = config_parse(ctx.config)
    if ctx.task_api is None:
        raise PermanentError("the udf operator runs only in the udf runtime of a worker")
    try:
        from trace_tasks import sandbox
    except ImportError as exc:
        raise PermanentError(
            f"sandbox unavailable: {exc}; user code never runs unsandboxed"
        ) from None
    try:
        limits = sandbox.SandboxLimits(**config.limits)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"config.limits: {exc}") from None
    scope = ctx.scope
    block_range = (
        (scope.range_start, scope.range_end)
        if scope.range_start is not None and scope.range_end is not None
        else None
    )
    with tempfile.TemporaryDirectory(prefix="trace-udf-") as tmp:
        bundle_dir = Path(tmp) / "bundle"
        bundle_dir.mkdir()
        bundle = ctx.task_api.bundle_materialize(bundle_dir)
        bundle_dir.chmod(0o555)
        handler = sandbox.HandlerRun(
            runtime=bundle["runtime"],
            bundle_dir=bundle_dir,
            entrypoint=bundle["entrypoint"],
            params=config.params,
            range=block_range,
            limits=limits,
            slot=ctx.task_api.slot,
        )
        try:
            result = sandbox.run_handler(
                handler, _Channel(ctx, sandbox.ChannelError), stop_event=ctx.stop_event
            )
        except sandbox.SandboxUnavailable as exc:
            raise PermanentError(f"sandbox unavailable: {exc}") from None
        except sandbox.HandlerFailed as exc:
            if exc.code == "killed":
                ctx.check_lease()  # killed because the attempt is gone: LeaseLost, not a failure
            raise PermanentError(f"handler failed ({exc.code}): {exc}") from None
        finally:
            bundle_dir.chmod(0o755)  # so the temporary directory can be removed
    from trace_web.udf.buffer import batch_split

    ctx.check_lease()
    # The sandbox caps the whole output (`output_bytes`); buffer-publish caps one batch, so
    # the rows go in as many batches as they need.
    pointers = [
        ctx.task_api.publish(batch, output=0)
        for batch in batch_split(
            result.rows,
            max_bytes=settings.TRACE_UDF_OUTPUT_MAX_BYTES,
            max_rows=settings.TRACE_UDF_OUTPUT_MAX_ROWS,
        )
    ]
    location = pointers[0]["location"]
    if len(pointers) > 1:
        location = location.rsplit("/", 1)[0] + "/"  # the attempt's directory of batches
    row_count = sum(p["row_count"] for p in pointers)
    ctx.outputs = [
        {
            "output": 0,
            "partition_key": scope.partition_key
            or (None if scope.range_start is not None else f"task-{ctx.task_id}"),
            "range_start": scope.range_start,
            "range_end": scope.range_end,
            "publication": {
                "location": location,
                "row_count": row_count,
                "bytes": sum(p["bytes"] for p in pointers),
                "config_hash": bundle["sha256"],
                "manifest": {
                    "format": "jsonl",
                    "bundle": bundle["sha256"],
                    "batches": pointers,
                },
            },
        }
    ]
    return {"rows": row_count, "batches": len(pointers), "logs": len(result.logs)}

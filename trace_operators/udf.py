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


def handler_run(
    ctx: TaskContext,
    *,
    params: dict[str, Any],
    limits: dict[str, int | float],
    block_range: tuple[int, int] | None,
    bundle_sha256: str | None = None,
    entrypoint: str = "",
) -> tuple[Any, dict[str, Any]]:
    """Run a bundle's handler in the sandbox for this attempt: the job's pinned bundle, or
    `bundle_sha256` of the task's org (an alert definition's handler, at its `entrypoint`
    when set, else the manifest's). Returns the sandbox's
    HandlerResult and the bundle's `{sha256, runtime, entrypoint}`; PermanentError for a
    handler that failed or a sandbox that cannot run, LeaseLost once the attempt is gone."""
    if ctx.task_api is None:
        raise PermanentError("user code runs only in the udf runtime of a worker")
    try:
        from trace_tasks import sandbox
    except ImportError as exc:
        raise PermanentError(
            f"sandbox unavailable: {exc}; user code never runs unsandboxed"
        ) from None
    try:
        sandbox_limits = sandbox.SandboxLimits(**limits)
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"config.limits: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="trace-udf-") as tmp:
        bundle_dir = Path(tmp) / "bundle"
        bundle_dir.mkdir()
        bundle = ctx.task_api.bundle_materialize(
            bundle_dir, sha256=bundle_sha256, entrypoint=entrypoint
        )
        bundle_dir.chmod(0o555)
        handler = sandbox.HandlerRun(
            runtime=bundle["runtime"],
            bundle_dir=bundle_dir,
            entrypoint=bundle["entrypoint"],
            params=params,
            range=block_range,
            limits=sandbox_limits,
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
    return result, bundle


def rows_publish(ctx: TaskContext, rows: list[Any]) -> list[dict[str, Any]]:
    """Buffer-publish `rows` as output 0 in as many batches as the caps need (the sandbox
    caps a handler's whole output, buffer-publish one batch); their pointers, in order."""
    from trace_web.udf.buffer import batch_split

    ctx.check_lease()
    return [
        ctx.task_api.publish(batch, output=0)
        for batch in batch_split(
            rows,
            max_bytes=settings.TRACE_UDF_OUTPUT_MAX_BYTES,
            max_rows=settings.TRACE_UDF_OUTPUT_MAX_ROWS,
        )
    ]


def batches_location(pointers: list[dict[str, Any]]) -> str:
    """Where a publication of `pointers` lies: its one batch, or the attempt's directory."""
    location = pointers[0]["location"]
    return location if len(pointers) == 1 else location.rsplit("/", 1)[0] + "/"


def run(ctx: TaskContext) -> dict[str, Any]:
    config = config_parse(ctx.config)
    scope = ctx.scope
    block_range = (
        (scope.range_start, scope.range_end)
        if scope.range_start is not None and scope.range_end is not None
        else None
    )
    result, bundle = handler_run(
        ctx, params=config.params, limits=config.limits, block_range=block_range
    )
    pointers = rows_publish(ctx, result.rows)
    row_count = sum(p["row_count"] for p in pointers)
    ctx.outputs = [
        {
            "output": 0,
            "partition_key": scope.partition_key
            or (None if scope.range_start is not None else f"task-{ctx.task_id}"),
            "range_start": scope.range_start,
            "range_end": scope.range_end,
            "publication": {
                "location": batches_location(pointers),
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

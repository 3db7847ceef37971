"""The small context an operator runs with: config, scope, pinned inputs, heartbeat and emit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trace_operators.validation import Problems


class PermanentError(Exception):
    """An operator failure that retrying cannot fix (bad config, over a cap): fail for good."""


class ConfigError(Problems, PermanentError):
    """A job config an operator refuses: `errors` are `config.<field>: message` lines, so a DAG
    sync reports them as `jobs[i].config.<field>` before anything runs."""


class TaskApiRefused(Exception):
    """The task API refused a call of the attempt (a query the gate or the grants refuse):
    `code` and `message` are the API's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class LeaseLost(Exception):
    """The attempt lost its lease (canceled, reaped, superseded): stop without reporting."""


@dataclass
class TaskScope:
    partition_key: str | None = None
    range_start: int | None = None
    range_end: int | None = None  # end-exclusive
    cursor: Any = None
    payload: dict[str, Any] = field(default_factory=dict)
    invalidation_id: int | None = None


@dataclass
class TaskContext:
    task_id: int
    attempt: int
    org_id: int
    dag_name: str
    job_name: str
    config: dict[str, Any]
    scope: TaskScope
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs_count: int = 1
    capability_token: str = ""
    # Commit outputs / invalidations now (fenced); used by long-running operators.
    emit_events: Callable[[list[dict[str, Any]]], Any] = lambda events: None
    stop_event: threading.Event = field(default_factory=threading.Event)
    # Outputs to commit at completion; None means "each output once with the task's scope".
    outputs: list[dict[str, Any]] | None = None
    # Run one SQL query over what the task may read (its pinned inputs) into a local file:
    # query_to_file(sql=, path=, format=, max_rows=, timeout=) -> rows written. The platform
    # runtime supplies it (through the same gate, sandbox and audit as /v1/task/query).
    query_to_file: Callable[..., int] | None = None
    # The task API a user handler's runtime needs (the udf operator): the pinned bundle, the
    # task's queries and buffer-publish, all with this attempt's capability token. The worker
    # supplies it (trace_tasks.task_api.InProcessTaskApi).
    task_api: Any = None
    # What the org's queries read from cold, as a query Catalog (trace_chain.query.catalog):
    # every committed partition of its datasets and the chains whose compacted segments it
    # reads. The platform runtime supplies it (trace_operators.iceberg_sync).
    cold_catalog: Callable[[], Any] | None = None
    # The committed Cryo backfill partitions of a chain its queries read, as integrity_check's
    # Partitions (trace_chain.integrity): backfill_partitions(chain_id) -> list. The platform
    # runtime supplies it (trace_operators.integrity_check with `source: backfill`).
    backfill_partitions: Callable[[int], list[Any]] | None = None

    def emit(self, **event: Any) -> Any:
        """Commit one output event immediately (fenced by this attempt's lease)."""
        self.check_lease()
        return self.emit_events([{"type": "output", **event}])

    def invalidate(self, *, output: int = 0, reason: str = "", **scope: Any) -> Any:
        self.check_lease()
        return self.emit_events(
            [{"type": "invalidation", "output": output, "reason": reason, **scope}]
        )

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

    def check_lease(self) -> None:
        if self.stop_event.is_set():
            raise LeaseLost(f"task {self.task_id} attempt {self.attempt} lost its lease")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early (with LeaseLost) if the attempt loses its lease."""
        if self.stop_event.wait(seconds):
            self.check_lease()

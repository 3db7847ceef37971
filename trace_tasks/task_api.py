"""The task API in-process, for the operators a worker runs for user code (udf): the pinned
bundle materialized and checked, the attempt's queries and its buffer-publish, each through
the same service as its `/v1/task/...` endpoint with the attempt's capability token, and each
refusal turned into what the operator acts on (a permanent failure, a lost lease, a refused
query)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trace_operators.context import LeaseLost, PermanentError, TaskApiRefused
from trace_web.errors import StaleAttempt, TraceError
from trace_web.orchestration.services.tasks import ClaimedTask


def worker_slot() -> int:
    """This process's slot in its pool (a prefork child's index; 0 outside a pool): the
    sandbox runs each concurrent slot under its own uid."""
    try:
        from billiard.process import current_process

        return int(getattr(current_process(), "index", 0) or 0)
    except Exception:  # not in a pool
        return 0


class InProcessTaskApi:
    def __init__(self, claimed: ClaimedTask) -> None:
        self.claimed = claimed
        self.slot = worker_slot()

    def bundle_materialize(
        self, dest: Path, *, sha256: str | None = None, entrypoint: str = ""
    ) -> dict[str, Any]:
        """Write a bundle, checked against its manifest, under `dest`: the job's pinned one,
        or `sha256` of the task's own org (an alert definition's handler, run at `entrypoint`
        when it names one, else at the manifest's)."""
        from trace_web.udf.services import BundleCorrupt, bundle_materialize

        task = self.claimed.task
        pinned = (task.job.spec or {}).get("udf") or {}
        udf = pinned if sha256 is None else {"sha256": sha256, "entrypoint": entrypoint}
        sha256 = udf.get("sha256")
        if not sha256:
            raise PermanentError(
                f"job {task.job.name!r} pins no bundle (its DAG version was deployed before "
                "bundles were pinned): deploy it again"
            )
        try:
            checked = bundle_materialize(org_id=task.org_id, sha256=sha256, dest=dest)
        except BundleCorrupt as exc:
            raise PermanentError(f"{exc.code}: {exc.message}") from None
        return {
            "sha256": checked.sha256,
            "runtime": checked.manifest.runtime,
            "entrypoint": udf.get("entrypoint") or checked.manifest.entrypoint,
        }

    def query(self, sql: str) -> dict[str, Any]:
        """`{"columns": [...], "rows": [[...]]}`; TaskApiRefused for a refused query,
        LeaseLost once the attempt is gone."""
        from trace_web.query.services import task_query_rows

        try:
            return task_query_rows(capability_token=self.claimed.capability_token, sql=sql)
        except StaleAttempt as exc:
            raise LeaseLost(exc.message) from None
        except TraceError as exc:
            if exc.http_status >= 500:
                raise
            raise TaskApiRefused(exc.code, exc.message) from None

    def publish(self, rows: Any, *, output: int = 0) -> dict[str, Any]:
        """Buffer-publish `rows` (fenced); a refused batch fails the attempt for good."""
        from trace_web.udf.buffer import buffer_publish

        try:
            return buffer_publish(lease=self.claimed.lease, rows=rows, output=output)
        except StaleAttempt as exc:
            raise LeaseLost(exc.message) from None
        except TraceError as exc:
            if exc.http_status >= 500:
                raise
            raise PermanentError(f"buffer-publish refused ({exc.code}): {exc.message}") from None

    def heartbeat(self) -> None:
        from trace_web.orchestration.services.tasks import task_lease_check

        try:
            task_lease_check(lease=self.claimed.lease)
        except StaleAttempt as exc:
            raise LeaseLost(exc.message) from None

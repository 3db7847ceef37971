"""Buffer publish: a task attempt's output rows as one JSONL batch in the object store under
its job's publication prefix, and a pointer to it (location, rows, bytes, sha256). Fenced by
the attempt like a completion; size-capped; a malformed batch is refused whole. The batch is
written to a staging key, read back and checked, then written to its final key, and only then
is its pointer recorded, so a refusal or a crash leaves nothing a reader could follow."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction

from trace_operators.validation import json_problem
from trace_web.errors import ValidationFailed
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.commits import publication_prefixes
from trace_web.orchestration.services.tasks import task_lock_current
from trace_web.orchestration.services.tokens import Lease
from trace_web.udf.models import OutputBatch

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _line(row: dict[str, Any]) -> bytes:
    line = json.dumps(row, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    return line.encode("utf-8") + b"\n"


def batch_split(rows: list[Any], *, max_bytes: int, max_rows: int) -> list[list[Any]]:
    """`rows` in order, as consecutive batches each within the caps as `batch_encode` counts
    them (always at least one batch). A row that is not JSON, or alone over `max_bytes`, is
    left for `batch_encode` to refuse with its reason."""
    batches: list[list[Any]] = [[]]
    size = 0
    for row in rows:
        try:
            length = len(_line(row))
        except (ValueError, TypeError):
            length = 0
        current = batches[-1]
        if current and (size + length > max_bytes or len(current) >= max_rows):
            batches.append([])
            current, size = batches[-1], 0
        current.append(row)
        size += length
    return batches


def batch_encode(rows: Any, *, max_bytes: int, max_rows: int) -> bytes:
    """`rows` as JSONL bytes, or ValidationFailed naming what is wrong: not a list of JSON
    objects, a value Postgres or JSON cannot hold (NUL, NaN, unpaired surrogates), over the
    caps."""
    if not isinstance(rows, list):
        raise ValidationFailed.one("rows", "must be a list of JSON objects")
    if len(rows) > max_rows:
        raise ValidationFailed.one("rows", f"{len(rows)} rows, over the limit of {max_rows}")
    lines: list[bytes] = []
    size = 0
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValidationFailed.one(f"rows[{index}]", "must be a JSON object")
        if problem := json_problem(row):
            path, message = problem
            raise ValidationFailed.one(f"rows[{index}]{'.' + path if path else ''}", message)
        try:
            encoded = _line(row)
        except (ValueError, TypeError) as exc:  # NaN, a non-JSON type, a surrogate
            raise ValidationFailed.one(f"rows[{index}]", f"not valid JSON ({exc})") from None
        size += len(encoded)
        if size > max_bytes:
            raise ValidationFailed.one(
                "rows", f"the batch is over the limit of {max_bytes} bytes (at rows[{index}])"
            )
        lines.append(encoded)
    return b"".join(lines)


def _store():
    from trace_chain.object_store import object_store_from_url

    return object_store_from_url(settings.TRACE_OBJECT_STORE_URL)


def _attempt_prefix(task: Task, store) -> str:
    """`{job prefix}{partition}/{task}-{attempt}/`, relative to the store's root."""
    root = store.uri()
    root = root if root.endswith("/") else root + "/"
    prefixes = [p for p in publication_prefixes(task) if p.startswith(root)]
    if not prefixes:
        raise ValidationFailed.one("output", f"job {task.job.name!r} may not publish")
    partition = task.partition_key or (
        f"{task.range_start}_{task.range_end}" if task.range_start is not None else "all"
    )
    return f"{prefixes[0][len(root) :]}{_UNSAFE.sub('_', partition)}/{task.pk}-{task.attempt}/"


def buffer_publish(*, lease: Lease, rows: Any, output: int = 0) -> dict[str, Any]:
    """Write `rows` as a batch of the attempt's output `output` and record its pointer.
    StaleAttempt for an attempt that is no longer current; ValidationFailed (nothing written)
    for a malformed or oversized batch."""
    data = batch_encode(
        rows,
        max_bytes=settings.TRACE_UDF_OUTPUT_MAX_BYTES,
        max_rows=settings.TRACE_UDF_OUTPUT_MAX_ROWS,
    )
    sha256 = hashlib.sha256(data).hexdigest()
    store = _store()
    with transaction.atomic():
        task = task_lock_current(lease=lease)
        if not 0 <= output < task.job.outputs:
            raise ValidationFailed.one(
                "output",
                f"{output!r} out of range: job {task.job.name!r} has {task.job.outputs} output(s)",
            )
        prefix = _attempt_prefix(task, store)
        sequence = OutputBatch.objects.filter(task_id=task.pk, attempt=task.attempt).count() + 1
        staging = f"{prefix}_staging/{uuid.uuid4().hex}.jsonl"
        store.put_bytes(data, staging)
        try:
            if hashlib.sha256(store.get_bytes(staging)).hexdigest() != sha256:
                raise ValidationFailed.one("rows", "the staged batch did not read back intact")
            key = f"{prefix}batch-{sequence:05d}-output-{output}.jsonl"
            store.put_bytes(data, key)
        finally:
            store.delete_prefix(f"{prefix}_staging/")
        batch = OutputBatch.objects.create(
            org_id=task.org_id,
            task_id=task.pk,
            attempt=task.attempt,
            output=output,
            sequence=sequence,
            location=store.uri(key),
            row_count=len(rows),
            bytes=len(data),
            sha256=sha256,
        )
    return {
        "batch": batch.sequence,
        "output": batch.output,
        "location": batch.location,
        "row_count": batch.row_count,
        "bytes": batch.bytes,
        "sha256": batch.sha256,
    }

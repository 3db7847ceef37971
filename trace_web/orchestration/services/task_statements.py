"""The lease protocol's hot path, one SQL statement per step: a task's creation, its claim, a
heartbeat and a completion with nothing to publish each take one round trip, writing the task,
its transition (kept for audit) and its outbox row together, fenced exactly as the ORM path in
services.tasks is. services.tasks decides when a statement here applies and falls back to the
ORM path (which locks the row) for everything else.

Statements are composed only of identifiers from the models' metadata and fixed SQL; every value
is a parameter."""
# ruff: noqa: S608 - see above: no value is ever formatted into a statement

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Model

from trace_web.orchestration.models import (
    DagVersion,
    Job,
    Outbox,
    OutboxKind,
    OutboxStatus,
    Task,
    TaskInput,
    TaskStatus,
    TaskTransition,
)
from trace_web.prepared import fetchone_prepared as _fetchone


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model: type[Model]) -> str:
    return _q(model._meta.db_table)


def _columns(model: type[Model], alias: str) -> str:
    return ", ".join(f"{alias}.{_q(f.column)}" for f in model._meta.concrete_fields)


def _from_row(model: type[Model], values: list[Any]) -> Any:
    """A model instance from its concrete columns in field order, converted as the ORM would
    (JSON columns arrive as text)."""
    fields = model._meta.concrete_fields
    converted = [
        f.from_db_value(v, None, connection) if hasattr(f, "from_db_value") else v
        for f, v in zip(fields, values, strict=True)
    ]
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def _transition_insert(source: str) -> str:
    """Insert one transition per row of CTE `source` (its id, attempt and worker_id); the
    statement's parameters are from_status, to_status, reason and time, in that order."""
    return (
        f"INSERT INTO {_table(TaskTransition)} "
        "(task_id, attempt, from_status, to_status, worker_id, reason, at) "
        f"SELECT {source}.id, {source}.attempt, %s, %s, {source}.worker_id, %s, %s FROM {source}"
    )


# The job's lease length, as services.tasks.lease_seconds_for computes it; the parameter is
# the default (TRACE_LEASE_SECONDS).
_LEASE_SECONDS = "coalesce(nullif(j.heartbeat_timeout_seconds, 0)::float8, %s::float8)"


_INPUT_COLUMNS = "dataset_id, dataset_version_id, partition_key, cursor_from, cursor_to"
_INPUT_TYPES = (
    "dataset_id bigint, dataset_version_id bigint, partition_key text, cursor_from bigint, "
    "cursor_to bigint"
)


def task_insert(
    task: Task, *, inputs: list[dict[str, Any]], reason: str, queue: str
) -> tuple[int, int] | None:
    """Insert a Queued `task` (an unsaved instance) with its pinned inputs, its first
    transition and its wake-up row. Returns (task id, outbox id), or None when a task with the
    same dedupe key exists (nothing is written)."""
    fields = _insert_fields()
    values = [f.get_db_prep_save(f.pre_save(task, True), connection) for f in fields]
    now = task.created_at
    params = [
        *values,
        json.dumps(inputs),
        "",
        TaskStatus.QUEUED,
        reason[:2000],
        now,
        OutboxKind.WAKE_TASK,
        queue,
        OutboxStatus.PENDING,
        now,
        now,
    ]
    row = _fetchone(_insert_sql(), params)
    return (row[0], row[1]) if row else None


def _insert_fields() -> list:
    return [f for f in Task._meta.concrete_fields if not f.primary_key]


@functools.cache
def _insert_sql() -> str:
    fields = _insert_fields()
    # A NULL dedupe key never conflicts.
    return (
        f"WITH t AS (INSERT INTO {_table(Task)} ({', '.join(_q(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT (dedupe_key) DO NOTHING "
        "RETURNING id, attempt, worker_id), "
        f"i AS (INSERT INTO {_table(TaskInput)} (task_id, {_INPUT_COLUMNS}) "
        f"SELECT t.id, {_INPUT_COLUMNS} "
        f"FROM t, jsonb_to_recordset(%s::jsonb) AS x({_INPUT_TYPES})), "
        f"r AS ({_transition_insert('t')}), "
        f"o AS (INSERT INTO {_table(Outbox)} "
        "(kind, payload, status, tries, available_at, last_error, created_at) "
        "SELECT %s, jsonb_build_object('task_id', t.id, 'queue', %s::text), %s, 0, %s, '', %s "
        "FROM t RETURNING id) "
        "SELECT t.id, o.id FROM t, o"
    )


def task_claim_uncapped(
    *, task_id: int, worker_id: str, lease_token: str, now: datetime, lease_default: float
) -> tuple[Task, list[dict[str, Any]]] | None:
    """Queued -> Running under a fresh lease, for a job without max_concurrency (a capped job's
    claim must lock the job: the ORM path). Returns the task (with its job and the job's DAG
    name loaded) and its pinned inputs, or None when nothing was claimed."""
    params = [
        TaskStatus.RUNNING,
        lease_token,
        now,
        lease_default,
        now,
        worker_id,
        now,
        task_id,
        TaskStatus.QUEUED,
        TaskStatus.QUEUED,
        TaskStatus.RUNNING,
        "claimed",
        now,
    ]
    row = _fetchone(_claim_sql(), params)
    if row is None:
        return None
    n_task, n_job = len(Task._meta.concrete_fields), len(Job._meta.concrete_fields)
    task = _from_row(Task, list(row[:n_task]))
    job = _from_row(Job, list(row[n_task : n_task + n_job]))
    dag_id, dag_name, inputs = row[n_task + n_job :]
    job.dag_version = DagVersion.from_db(connection.alias, ["id", "name"], [dag_id, dag_name])
    task.job = job
    return task, json.loads(inputs)


@functools.cache
def _claim_sql() -> str:
    return (
        f"WITH c AS (UPDATE {_table(Task)} t SET status = %s, lease_token = %s, "
        f"lease_expires_at = %s + make_interval(secs => {_LEASE_SECONDS}), "
        "deadline_at = %s + make_interval(secs => nullif(j.timeout_seconds, 0)::float8), "
        "worker_id = %s, started_at = %s, next_retry_at = NULL "
        f"FROM {_table(Job)} j WHERE t.id = %s AND t.status = %s AND j.id = t.job_id "
        f"AND j.max_concurrency IS NULL RETURNING {_columns(Task, 't')}), "
        f"r AS ({_transition_insert('c')}) "
        f"SELECT {_columns(Task, 'c')}, {_columns(Job, 'j')}, d.id, d.name, "
        "(SELECT coalesce(jsonb_agg(jsonb_build_object('dataset_id', i.dataset_id, "
        "'dataset_version_id', i.dataset_version_id, 'partition_key', i.partition_key, "
        "'cursor_from', i.cursor_from, 'cursor_to', i.cursor_to) ORDER BY i.id), '[]') "
        f"FROM {_table(TaskInput)} i WHERE i.task_id = c.id)::text "
        f"FROM c JOIN {_table(Job)} j ON j.id = c.job_id "
        f"JOIN {_table(DagVersion)} d ON d.id = j.dag_version_id"
    )


def task_heartbeat_extend(
    *, task_id: int, attempt: int, lease_token: str, now: datetime, lease_default: float
) -> datetime | None:
    """Extend a current lease by its job's lease length; None when the lease is not current."""
    params = [now, lease_default, task_id, attempt, lease_token, TaskStatus.RUNNING]
    row = _fetchone(_heartbeat_sql(), params)
    return row[0] if row else None


@functools.cache
def _heartbeat_sql() -> str:
    return (
        f"UPDATE {_table(Task)} t SET lease_expires_at = %s + make_interval(secs => "
        f"{_LEASE_SECONDS}) FROM {_table(Job)} j WHERE t.id = %s AND t.attempt = %s "
        "AND t.lease_token = %s AND t.status = %s AND j.id = t.job_id RETURNING t.lease_expires_at"
    )


def task_complete_plain(
    *, task_id: int, attempt: int, lease_token: str, now: datetime, explicit_empty: bool
) -> Task | None:
    """Running -> Completed when there is nothing to commit besides the status: no outputs
    (the report said none, or the job has none), no cursor to advance (not PerUpdate), no
    invalidation to mark, no capacity slot to hand on (no max_concurrency). None when the lease
    is not current or the completion needs the ORM path."""
    params = [
        TaskStatus.COMPLETED,
        now,
        task_id,
        attempt,
        lease_token,
        TaskStatus.RUNNING,
        explicit_empty,
        TaskStatus.RUNNING,
        TaskStatus.COMPLETED,
        "",
        now,
    ]
    row = _fetchone(_complete_sql(), params)
    return _from_row(Task, list(row)) if row else None


@functools.cache
def _complete_sql() -> str:
    # The boolean parameter: the report said "no outputs" (else the job must have none).
    return (
        f"WITH c AS (UPDATE {_table(Task)} t SET status = %s, outputs = '[]'::jsonb, "
        "finished_at = %s, lease_token = NULL, lease_expires_at = NULL "
        f"FROM {_table(Job)} j WHERE t.id = %s AND t.attempt = %s AND t.lease_token = %s "
        "AND t.status = %s AND j.id = t.job_id AND t.invalidation_id IS NULL "
        "AND j.execution_strategy <> 'PerUpdate' AND j.max_concurrency IS NULL "
        "AND (%s OR j.outputs = 0) "
        f"RETURNING {_columns(Task, 't')}), "
        f"r AS ({_transition_insert('c')}) "
        f"SELECT {_columns(Task, 'c')} FROM c"
    )

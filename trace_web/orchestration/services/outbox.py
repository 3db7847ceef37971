"""The transactional outbox: side effects are written as rows in the same transaction as the
state change that causes them, then published by `outbox_drain` with retries and backoff.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus
from trace_web.orchestration.services.backoff import backoff_seconds
from trace_web.prepared import fetchone_prepared

log = logging.getLogger(__name__)


def outbox_add(*, kind: OutboxKind, payload: dict[str, Any]) -> Outbox:
    """Record a side effect; must run inside the transaction of the change that causes it."""
    row = Outbox.objects.create(kind=kind, payload=payload, available_at=timezone.now())
    outbox_publish_after_commit(row.pk, kind, payload)
    return row


def outbox_publish_after_commit(row_id: int, kind: str, payload: dict[str, Any]) -> None:
    """Publish the row right after its transaction commits (the fast path, saving a dispatcher
    tick). If this fails or the process dies first, the row is still Pending and the drain loop
    publishes it. Publishing is bounded (trace_tasks.publisher), so a broker outage costs the
    caller at most one short timeout, after which the breaker skips wake-ups for a while."""
    if settings.TRACE_OUTBOX_FLUSH_ON_COMMIT:
        transaction.on_commit(lambda: _publish_quietly(row_id, kind, payload))


def _publish_quietly(row_id: int, kind: str, payload: dict[str, Any]) -> None:
    try:
        _publish_committed(row_id, kind, payload)
    except Exception:  # the drain loop retries; a failed fast path must not fail the caller
        log.exception("outbox fast-path publish failed; the drain loop will retry")


def _publish_committed(row_id: int, kind: str, payload: dict[str, Any]) -> None:
    """A wake-up is sent from memory, then marked Done in one statement (a row a drainer holds
    is skipped: the drainer publishes it itself, and a second wake-up is harmless). One that
    fails counts a try and backs off like any row. A route event takes the drain's locked
    path, since routing writes to the database. A delivery wake-up is a wake-up like a task's."""
    from trace_tasks import publisher

    if kind not in _WAKE_KINDS:
        outbox_drain(ids=[row_id])
        return
    if not publisher.broker_available():
        return  # not tried: the breaker's pause is on
    try:
        if kind == OutboxKind.WAKE_DELIVERY:
            publisher.send_delivery_wake(delivery_id=payload["delivery_id"])
        else:
            publisher.send_wake(task_id=payload["task_id"], queue=payload["queue"])
    except publisher.BrokerUnavailable:
        return
    except Exception as exc:
        _push_back_by_id(row_id, exc)
        return
    _mark_done([row_id])


# Kinds that only publish to the broker (skipped while its breaker is open).
_WAKE_KINDS = (OutboxKind.WAKE_TASK, OutboxKind.WAKE_DELIVERY)


def _mark_done(ids: list[int]) -> None:
    fetchone_prepared(
        _mark_done_sql(), [OutboxStatus.DONE, timezone.now(), ids, OutboxStatus.PENDING]
    )


@functools.cache
def _mark_done_sql() -> str:
    # Its commit need not wait for the WAL flush (synchronous_commit off for this transaction
    # alone): if a crash loses the mark, the drain loop publishes the row again, and a second
    # wake-up is harmless. The task and its wake-up row were written durably before.
    table = connection.ops.quote_name(Outbox._meta.db_table)
    return (
        f"UPDATE {table} SET status = %s, done_at = %s, tries = tries + 1 "  # noqa: S608
        f"WHERE id IN (SELECT id FROM {table} WHERE id = ANY(%s) AND status = %s "
        "FOR UPDATE SKIP LOCKED) AND set_config('synchronous_commit', 'off', true) <> ''"
    )


def _push_back_by_id(row_id: int, exc: Exception) -> None:
    with transaction.atomic():
        row = (
            Outbox.objects.select_for_update(skip_locked=True)
            .filter(pk=row_id, status=OutboxStatus.PENDING)
            .first()
        )
        if row is not None:
            _push_back(row, exc)
            row.save(update_fields=["status", "tries", "available_at", "last_error"])


def _handlers() -> dict[str, Callable[[Outbox], None]]:
    # Imported here: the routing service itself writes outbox rows.
    from trace_tasks.publisher import send_delivery_wake, send_wake
    from trace_web.alerts.sink import publication_sink
    from trace_web.orchestration.services.routing import route_event

    return {
        OutboxKind.WAKE_TASK: lambda row: send_wake(
            task_id=row.payload["task_id"], queue=row.payload["queue"]
        ),
        OutboxKind.ROUTE_EVENT: lambda row: route_event(event_id=row.pk, payload=row.payload),
        OutboxKind.ALERT_SINK: lambda row: publication_sink(record=row.payload),
        OutboxKind.WAKE_DELIVERY: lambda row: send_delivery_wake(
            delivery_id=row.payload["delivery_id"]
        ),
    }


def outbox_drain(*, limit: int = 200, ids: Iterable[int] | None = None) -> int:
    """Publish due Pending rows; returns how many were published.

    Rows are claimed with SKIP LOCKED so several drainers never publish the same row at once.
    Each row runs in a savepoint: a failing row is pushed back with backoff (and ends Failed,
    visible, after TRACE_OUTBOX_MAX_TRIES) without undoing the rows that succeeded.
    """
    from trace_tasks.publisher import BrokerUnavailable, broker_available

    handlers = _handlers()
    now = timezone.now()
    published = 0
    with transaction.atomic():
        rows = Outbox.objects.select_for_update(skip_locked=True).filter(
            status=OutboxStatus.PENDING, available_at__lte=now
        )
        if ids is not None:
            rows = rows.filter(pk__in=list(ids))
        if not broker_available():
            # A publish failed moments ago: leave wake-ups for a later pass (routing events
            # needs only the database, so those still flow).
            rows = rows.exclude(kind__in=_WAKE_KINDS)
        for row in rows.order_by("id")[:limit]:
            try:
                with transaction.atomic():
                    handlers[row.kind](row)
            except BrokerUnavailable:
                continue  # not tried (the breaker tripped on an earlier row): no try counted
            except Exception as exc:
                _push_back(row, exc)
            else:
                row.status = OutboxStatus.DONE
                row.done_at = timezone.now()
                row.tries += 1
                published += 1
            row.save(update_fields=["status", "done_at", "tries", "available_at", "last_error"])
    return published


def _push_back(row: Outbox, exc: Exception) -> None:
    row.tries += 1
    row.last_error = f"{type(exc).__name__}: {exc}"[:4000]
    if row.tries >= settings.TRACE_OUTBOX_MAX_TRIES:
        row.status = OutboxStatus.FAILED
        log.error("outbox row %s failed for good after %s tries: %s", row.pk, row.tries, exc)
        return
    delay = backoff_seconds(
        tries=row.tries,
        base=settings.TRACE_OUTBOX_BACKOFF_BASE_SECONDS,
        cap=settings.TRACE_OUTBOX_BACKOFF_MAX_SECONDS,
    )
    row.available_at = timezone.now() + timedelta(seconds=delay)
    log.warning("outbox row %s failed (try %s), retry in %.1fs: %s", row.pk, row.tries, delay, exc)

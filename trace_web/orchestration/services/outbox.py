"""The transactional outbox: side effects are written as rows in the same transaction as the
state change that causes them, then published by `outbox_drain` with retries and backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus
from trace_web.orchestration.services.backoff import backoff_seconds

log = logging.getLogger(__name__)


def outbox_add(*, kind: OutboxKind, payload: dict[str, Any]) -> Outbox:
    """Record a side effect; must run inside the transaction of the change that causes it."""
    row = Outbox.objects.create(kind=kind, payload=payload, available_at=timezone.now())
    if settings.TRACE_OUTBOX_FLUSH_ON_COMMIT:
        # Publish right after commit to save a dispatcher tick; if this fails or the process
        # dies first, the row is still Pending and the drain loop publishes it. Publishing is
        # bounded (trace_tasks.publisher), so a broker outage costs the caller at most one
        # short timeout, after which the breaker skips wake-ups for a while.
        transaction.on_commit(lambda: _flush_quietly([row.pk]))
    return row


def _flush_quietly(ids: list[int]) -> None:
    try:
        outbox_drain(ids=ids)
    except Exception:  # the drain loop retries; a failed fast path must not fail the caller
        log.exception("outbox fast-path publish failed; the drain loop will retry")


def _handlers() -> dict[str, Callable[[Outbox], None]]:
    # Imported here: the routing service itself writes outbox rows.
    from trace_tasks.publisher import send_wake
    from trace_web.orchestration.services.routing import route_event

    return {
        OutboxKind.WAKE_TASK: lambda row: send_wake(
            task_id=row.payload["task_id"], queue=row.payload["queue"]
        ),
        OutboxKind.ROUTE_EVENT: lambda row: route_event(event_id=row.pk, payload=row.payload),
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
            rows = rows.exclude(kind=OutboxKind.WAKE_TASK)
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

"""What the outbox promises row by row, each test written for mutants that survived the
outbox's narrow tests (docs/testing.md, "Mutation testing"): tries and errors are counted,
a row fails for good at the limit, the fast path publishes only its own rows, a drainer skips
rows another one holds, and route events still flow after the breaker trips on a wake-up."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.utils import timezone

from trace_tasks.publisher import BrokerUnavailable
from trace_web.orchestration.models import Outbox, OutboxKind, OutboxStatus
from trace_web.orchestration.services.outbox import (
    outbox_add,
    outbox_drain,
    outbox_publish_after_commit,
)


@pytest.fixture(autouse=True)
def _no_fast_path(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def sent(monkeypatch):
    """send_wake and route_event recorded; a task id in `sent.failing` raises, `sent.skipped`
    raises BrokerUnavailable (the breaker's "not tried")."""

    class Sent(list):
        pass

    record = Sent()
    record.failing: dict[int, Exception] = {}
    record.skipped: set[int] = set()

    def send_wake(*, task_id, queue):
        if task_id in record.skipped:
            raise BrokerUnavailable("breaker open")
        if task_id in record.failing:
            raise record.failing[task_id]
        record.append(("wake", task_id))

    def route_event(*, event_id, payload):
        record.append(("route", event_id, payload))
        return []

    monkeypatch.setattr("trace_tasks.publisher.send_wake", send_wake)
    monkeypatch.setattr("trace_web.orchestration.services.routing.route_event", route_event)
    return record


def wake(task_id: int) -> Outbox:
    return outbox_add(kind=OutboxKind.WAKE_TASK, payload={"task_id": task_id, "queue": "platform"})


@contextmanager
def held_by_another_drainer(row: Outbox, *, hold_seconds: float = 60):
    """Another session holds `row` FOR UPDATE (a drainer publishing it) until the block ends or
    `hold_seconds` pass."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                Outbox.objects.select_for_update().get(pk=row.pk)
                locked.set()
                release.wait(timeout=hold_seconds)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=30)
        yield
    finally:
        release.set()
        holder.join(timeout=30)


def make_due(row: Outbox) -> None:
    Outbox.objects.filter(pk=row.pk).update(available_at=timezone.now())


def test_a_row_failing_max_tries_times_ends_failed_with_its_error(db, settings, sent):
    settings.TRACE_OUTBOX_MAX_TRIES = 2
    row = wake(1)
    sent.failing[1] = ValueError("x" * 5000)
    assert outbox_drain() == 0
    row.refresh_from_db()
    assert (row.status, row.tries) == (OutboxStatus.PENDING, 1)  # one try left
    make_due(row)
    assert outbox_drain() == 0
    row.refresh_from_db()
    assert (row.status, row.tries) == (OutboxStatus.FAILED, 2)  # failed for good, visible
    assert row.last_error.startswith("ValueError: xxx")
    assert len(row.last_error) == 4000  # capped, the type name kept
    make_due(row)
    assert outbox_drain() == 0 and sent == []  # a Failed row is not tried again


def test_a_published_row_counts_every_try_and_records_when_it_was_done(db, sent):
    row = wake(1)
    sent.failing[1] = RuntimeError("broker said no")
    outbox_drain()
    del sent.failing[1]
    make_due(row)
    before = timezone.now()
    assert outbox_drain() == 1
    row.refresh_from_db()
    assert (row.status, row.tries) == (OutboxStatus.DONE, 2)  # the failed try counts too
    assert row.done_at is not None and before <= row.done_at <= timezone.now()


def test_the_fast_path_publishes_only_the_rows_its_transaction_added(
    db, settings, sent, django_capture_on_commit_callbacks
):
    older = wake(1)  # due, left for the drain loop
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True
    with django_capture_on_commit_callbacks(execute=True):
        newer = wake(2)
    assert sent == [("wake", 2)]
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, newer.status) == (OutboxStatus.PENDING, OutboxStatus.DONE)


def test_route_events_still_flow_after_the_breaker_skips_a_wakeup(db, sent):
    wake(1)
    sent.skipped.add(1)
    event = outbox_add(kind=OutboxKind.ROUTE_EVENT, payload={"dataset": "blocks", "n": 7})
    assert outbox_drain() == 1
    assert sent == [("route", event.pk, {"dataset": "blocks", "n": 7})]
    skipped = Outbox.objects.get(kind=OutboxKind.WAKE_TASK)
    assert (skipped.status, skipped.tries) == (OutboxStatus.PENDING, 0)  # not tried: no try


@pytest.mark.django_db(transaction=True)
def test_a_drainer_skips_rows_another_drainer_holds(sent):
    held, free = wake(1), wake(2)
    with held_by_another_drainer(held):
        with transaction.atomic():
            with connection.cursor() as cursor:
                # A drainer that waited for the lock instead of skipping the row fails here.
                cursor.execute("SET LOCAL lock_timeout = '5s'")
            assert outbox_drain() == 1
        assert sent == [("wake", 2)]
        assert Outbox.objects.get(pk=held.pk).status == OutboxStatus.PENDING
        assert Outbox.objects.get(pk=free.pk).status == OutboxStatus.DONE


def test_while_the_breaker_is_open_wakeups_take_no_place_in_the_batch(db, sent, monkeypatch):
    """Wake-ups are left out of the claim, not claimed and skipped: a backlog of them cannot
    fill the batch and hold back route events, which need only the database."""
    monkeypatch.setattr("trace_tasks.publisher.broker_available", lambda: False)
    wake(1)
    sent.skipped.add(1)
    event = outbox_add(kind=OutboxKind.ROUTE_EVENT, payload={"n": 1})
    assert outbox_drain(limit=1) == 1
    assert sent == [("route", event.pk, {"n": 1})]


def test_the_fast_path_routes_its_own_event_at_once_and_leaves_other_rows(
    db, settings, sent, django_capture_on_commit_callbacks
):
    older = outbox_add(kind=OutboxKind.ROUTE_EVENT, payload={"n": 1})  # due, for the drain loop
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True
    with django_capture_on_commit_callbacks(execute=True):
        newer = outbox_add(kind=OutboxKind.ROUTE_EVENT, payload={"n": 2})
    assert sent == [("route", newer.pk, {"n": 2})]  # routed, not sent as a wake-up
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, newer.status) == (OutboxStatus.PENDING, OutboxStatus.DONE)


def test_a_failing_fast_path_pushes_back_only_its_own_row(
    db, settings, sent, django_capture_on_commit_callbacks
):
    older = wake(1)
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True
    sent.failing[2] = ConnectionError("broker down")
    with django_capture_on_commit_callbacks(execute=True):
        newer = wake(2)
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, older.tries, older.last_error) == (OutboxStatus.PENDING, 0, "")
    assert (newer.status, newer.tries) == (OutboxStatus.PENDING, 1)
    assert "broker down" in newer.last_error and newer.available_at > timezone.now()


def test_a_failed_fast_path_leaves_alone_a_row_a_drainer_published_meanwhile(
    db, settings, monkeypatch, django_capture_on_commit_callbacks
):
    def published_elsewhere_then_failed(*, task_id, queue):
        # A drainer published and marked the row while this publish was failing.
        Outbox.objects.filter(payload__task_id=task_id).update(status=OutboxStatus.DONE, tries=1)
        raise ConnectionError("broker down")

    monkeypatch.setattr("trace_tasks.publisher.send_wake", published_elsewhere_then_failed)
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True
    with django_capture_on_commit_callbacks(execute=True):
        row = wake(3)
    row.refresh_from_db()
    assert (row.status, row.tries, row.last_error) == (OutboxStatus.DONE, 1, "")


@pytest.mark.django_db(transaction=True)
def test_a_failed_fast_path_skips_a_row_a_drainer_holds(settings, monkeypatch):
    def broker_down(*, task_id, queue):
        raise ConnectionError("broker down")

    monkeypatch.setattr("trace_tasks.publisher.send_wake", broker_down)
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    row = wake(4)
    # Held for 20 s: a fast path that waited for the lock would count a try once it is free.
    with held_by_another_drainer(row, hold_seconds=20):
        settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = True
        outbox_publish_after_commit(row.pk, OutboxKind.WAKE_TASK, row.payload)  # autocommit: now
    row.refresh_from_db()
    assert (row.status, row.tries, row.last_error) == (OutboxStatus.PENDING, 0, "")

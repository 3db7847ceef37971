"""Routing called directly, one committed output's event at a time: what a routed task is
scoped to and pins, its dedupe key, `where` filters over several consumers, PerUpdate cursors,
and the invalidation scanner. Each assertion is a field a downstream job reads."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
from django.db import OperationalError, connection, transaction

from tests.dags import PER_UPDATE, noop_dag
from trace_web.datasets.models import (
    DataInvalidation,
    Dataset,
    DatasetCursor,
    DatasetVersion,
    InvalidationProcessing,
)
from trace_web.orchestration.models import Job, Task, TaskInput
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.routing import invalidations_schedule, route_event
from trace_web.orchestration.services.sources import job_run_manual


@pytest.fixture(autouse=True)
def _no_fast_path(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


def output_of(org, job, *, generation=1, dag="chain"):
    """The dataset of `job`'s output 0 and a version of it, as a commit would have made them."""
    dataset, _ = Dataset.objects.get_or_create(org=org, dag_name=dag, job_name=job, output_index=0)
    version, _ = DatasetVersion.objects.get_or_create(
        dataset=dataset, generation=generation, defaults={"definition_hash": f"{job}-{generation}"}
    )
    return dataset, version


def event(dataset, version, **fields):
    return {
        "dataset_id": dataset.pk,
        "dataset_version_id": version.pk,
        "output": 0,
        "partition_key": None,
        "range_start": None,
        "range_end": None,
        "cursor": None,
        "attributes": {},
        "producer_task_id": 0,
        "producer_attempt": 1,
        "producer_trigger": "manual",
        **fields,
    }


def pins(task):
    return [
        (i.dataset_id, i.dataset_version_id, i.partition_key, i.cursor_from, i.cursor_to)
        for i in TaskInput.objects.filter(task=task).order_by("dataset_id")
    ]


def test_an_event_with_a_range_schedules_one_task_scoped_and_pinned_to_it(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dataset, version = output_of(org, "extract")
    payload = event(dataset, version, partition_key="10_20", range_start=10, range_end=20)
    [task] = route_event(event_id=7, payload=payload)
    job = Job.objects.get(name="transform")
    assert task.job_id == job.pk and task.trigger == "event"
    assert (task.partition_key, task.range_start, task.range_end) == ("10_20", 10, 20)
    assert task.dedupe_key == f"event:7:job:{job.pk}"
    assert pins(task) == [(dataset.pk, version.pk, "10_20", None, None)]


def test_routing_the_same_event_twice_schedules_nothing_the_second_time(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dataset, version = output_of(org, "extract")
    payload = event(dataset, version, partition_key="p1")
    assert len(route_event(event_id=3, payload=payload)) == 1
    assert route_event(event_id=3, payload=payload) == []
    assert Task.objects.filter(job__name="transform").count() == 1
    # Another event of the same output is another task.
    assert len(route_event(event_id=4, payload=payload)) == 1


TWO_INPUTS = """
name: chain
defaults: {update_strategy: replace}
jobs:
  - name: extract
    activation: manual
    operator: noop
  - name: lookup
    activation: manual
    operator: noop
  - name: transform
    activation: reactive
    operator: noop
    inputs: [{from: {job: extract, output: 0}}, {from: {job: lookup, output: 0}}]
"""


def test_a_routed_task_pins_its_other_input_at_its_newest_version_and_no_partition(org):
    dag_sync(org=org, yaml_text=TWO_INPUTS, activate=True)
    dataset, version = output_of(org, "extract")
    lookup, _ = output_of(org, "lookup", generation=1)
    _, newest = output_of(org, "lookup", generation=2)
    [task] = route_event(event_id=1, payload=event(dataset, version, partition_key="5_6"))
    assert pins(task) == [
        (dataset.pk, version.pk, "5_6", None, None),  # the triggering input, once
        (lookup.pk, newest.pk, None, None, None),
    ]


TWO_CONSUMERS = """
name: chain
defaults: {update_strategy: replace}
jobs:
  - name: extract
    activation: manual
    operator: noop
  - name: evens
    activation: reactive
    operator: noop
    inputs: [{from: {job: extract, output: 0}, where: {kind: even}}]
  - name: everything
    activation: reactive
    operator: noop
    inputs: [{from: {job: extract, output: 0}}]
"""


def test_a_where_filter_on_the_first_consumer_does_not_stop_the_second(org):
    dag_sync(org=org, yaml_text=TWO_CONSUMERS, activate=True)
    dataset, version = output_of(org, "extract")
    odd = route_event(event_id=1, payload=event(dataset, version, attributes={"kind": "odd"}))
    assert [t.job.name for t in odd] == ["everything"]
    even = route_event(event_id=2, payload=event(dataset, version, attributes={"kind": "even"}))
    assert sorted(t.job.name for t in even) == ["evens", "everything"]


def test_a_where_filter_reads_the_events_own_fields_and_needs_no_attributes(org):
    yaml_text = TWO_CONSUMERS.replace("where: {kind: even}", "where: {output: 0, kind: even}")
    dag_sync(org=org, yaml_text=yaml_text, activate=True)
    dataset, version = output_of(org, "extract")
    bare = event(dataset, version)
    del bare["attributes"]
    assert [t.job.name for t in route_event(event_id=1, payload=bare)] == ["everything"]
    both = event(dataset, version, attributes={"kind": "even", "output": 9})
    # The event's own `output` wins over an attribute of the same name.
    assert len(route_event(event_id=2, payload=both)) == 2


def test_a_per_update_task_reads_from_the_consumers_cursor_and_folds_only_forward(org):
    dag_sync(org=org, yaml_text=PER_UPDATE, activate=True)
    dataset, first = output_of(org, "produce", dag="stream")
    DatasetCursor.objects.create(
        dataset=dataset, consumer_dag="stream", consumer_job="consume", position=5
    )
    [task] = route_event(event_id=1, payload=event(dataset, first, cursor=9))
    assert task.trigger == "event" and task.dedupe_key is None
    assert task.cursor == {"dataset_id": dataset.pk, "after": 5, "upto": 9}
    assert pins(task) == [(dataset.pk, first.pk, None, 5, 9)]
    # An older position folds nothing; a later one (here a range's end) widens the task.
    assert route_event(event_id=2, payload=event(dataset, first, cursor=7)) == []
    task.refresh_from_db()
    assert task.cursor["upto"] == 9 and pins(task) == [(dataset.pk, first.pk, None, 5, 9)]
    _, second = output_of(org, "produce", dag="stream", generation=2)
    later = event(dataset, second, cursor="not a position", range_start=9, range_end=12)
    assert route_event(event_id=3, payload=later) == []
    task.refresh_from_db()
    assert task.cursor == {"dataset_id": dataset.pk, "after": 5, "upto": 12}
    assert pins(task) == [(dataset.pk, second.pk, None, 5, 12)]
    assert Task.objects.filter(job__name="consume").count() == 1


def test_a_per_update_fold_of_an_unbounded_task_takes_the_first_position(org):
    dag_sync(org=org, yaml_text=PER_UPDATE, activate=True)
    dataset, version = output_of(org, "produce", dag="stream")
    [task] = route_event(event_id=1, payload=event(dataset, version))
    assert task.cursor == {"dataset_id": dataset.pk, "after": 0, "upto": None}
    assert route_event(event_id=2, payload=event(dataset, version, cursor=4)) == []
    task.refresh_from_db()
    assert task.cursor["upto"] == 4 and pins(task)[0][3:] == (0, 4)


def invalidation(dataset, **fields):
    return DataInvalidation.objects.create(dataset=dataset, kind="row_range", **fields)


def test_the_scanner_schedules_each_invalidation_once_per_dependent_job(org):
    dag_sync(org=org, yaml_text=TWO_CONSUMERS, activate=True)
    dataset, _ = output_of(org, "extract")
    wrong = invalidation(dataset, range_start=10, range_end=20, partition_key="10_20")
    assert invalidations_schedule() == 1
    tasks = Task.objects.filter(invalidation=wrong).select_related("job").order_by("job_id")
    assert [t.job.name for t in tasks] == ["evens", "everything"]  # no `where` applies
    for task in tasks:
        assert task.trigger == "invalidation"
        assert task.dedupe_key == f"invalidation:{wrong.pk}:job:{task.job_id}"
        assert (task.partition_key, task.range_start, task.range_end) == ("10_20", 10, 20)
        assert pins(task) == [(dataset.pk, None, None, None, None)]
    processing = InvalidationProcessing.objects.filter(invalidation=wrong)
    assert sorted(processing.values_list("dag_name", "job_name")) == [
        ("chain", "evens"),
        ("chain", "everything"),
    ]
    wrong.refresh_from_db()
    assert wrong.scheduled_at is not None
    assert invalidations_schedule() == 0  # scheduled ones are not scanned again
    assert Task.objects.filter(invalidation=wrong).count() == 2


def test_the_scanner_takes_at_most_its_limit_and_counts_invalidations_without_consumers(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dataset, _ = output_of(org, "extract")
    orphan, _ = output_of(org, "transform")  # nothing reads it
    invalidation(orphan, partition_key="a")
    invalidation(dataset, partition_key="b")
    assert invalidations_schedule(limit=1) == 1
    assert DataInvalidation.objects.filter(scheduled_at__isnull=True).count() == 1
    assert invalidations_schedule(limit=1) == 1
    assert not DataInvalidation.objects.filter(scheduled_at__isnull=True).exists()
    [task] = Task.objects.filter(trigger="invalidation")
    assert task.partition_key == "b" and task.range_start is None


@contextmanager
def held_by_another_session(model, pk, *, no_key=False):
    """Another session holds the row FOR UPDATE (FOR NO KEY UPDATE with `no_key`) until the
    block ends (data must be committed: the tests using it run with transaction=True)."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                model.objects.select_for_update(no_key=no_key).get(pk=pk)
                locked.set()
                release.wait(timeout=60)
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


def with_lock_timeout(call):
    """Run `call` in a transaction that fails, instead of waiting, on a lock another holds."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '300ms'")
        return call()


def test_the_cursor_read_is_the_consumers_own_over_this_dataset(org):
    dag_sync(org=org, yaml_text=PER_UPDATE, activate=True)
    dataset, version = output_of(org, "produce", dag="stream")
    other, _ = output_of(org, "other", dag="stream")
    # Decoys first (lower ids): another dataset, another DAG, another job of the same DAG.
    for decoy in (
        {"dataset": other, "consumer_dag": "stream", "consumer_job": "consume"},
        {"dataset": dataset, "consumer_dag": "elsewhere", "consumer_job": "consume"},
        {"dataset": dataset, "consumer_dag": "stream", "consumer_job": "other"},
    ):
        DatasetCursor.objects.create(position=50, **decoy)
    DatasetCursor.objects.create(
        dataset=dataset, consumer_dag="stream", consumer_job="consume", position=5
    )
    [task] = route_event(event_id=1, payload=event(dataset, version, cursor=9))
    assert task.cursor["after"] == 5


def test_a_per_update_fold_joins_only_a_queued_event_task_of_the_same_job(org):
    yaml_text = PER_UPDATE + PER_UPDATE[PER_UPDATE.index("  - name: consume") :].replace(
        "consume", "audit"
    )
    dag_sync(org=org, yaml_text=yaml_text, activate=True)
    dataset, version = output_of(org, "produce", dag="stream")
    manual = job_run_manual(org=org, dag_name="stream", job_name="consume")  # pins the dataset
    routed = route_event(event_id=1, payload=event(dataset, version, cursor=4))
    assert sorted(t.job.name for t in routed) == ["audit", "consume"]  # one per consumer
    assert manual.pk not in {t.pk for t in routed}
    assert route_event(event_id=2, payload=event(dataset, version, cursor=6)) == []
    for task in routed:
        task.refresh_from_db()
        assert task.cursor["upto"] == 6
    manual.refresh_from_db()
    assert manual.cursor is None and TaskInput.objects.get(task=manual).cursor_to is None


def test_a_repeated_position_changes_nothing_not_even_the_pinned_version(org):
    dag_sync(org=org, yaml_text=PER_UPDATE, activate=True)
    dataset, first = output_of(org, "produce", dag="stream")
    [task] = route_event(event_id=1, payload=event(dataset, first, cursor=9))
    _, second = output_of(org, "produce", dag="stream", generation=2)
    assert route_event(event_id=2, payload=event(dataset, second, cursor=9)) == []
    assert pins(task) == [(dataset.pk, first.pk, None, 0, 9)]


TWO_INPUT_STREAM = """
name: stream
jobs:
  - name: produce
    activation: manual
    operator: noop
    update_strategy: replace
  - name: side
    activation: manual
    operator: noop
    update_strategy: replace
  - name: consume
    activation: reactive
    operator: noop
    outputs: 0
    execution_strategy: PerUpdate
    inputs: [{from: {job: produce, output: 0}}, {from: {job: side, output: 0}}]
"""


def test_a_per_update_consumer_of_two_inputs_folds_per_input(org):
    dag_sync(org=org, yaml_text=TWO_INPUT_STREAM, activate=True)
    Dataset.objects.filter(job_name="side").delete()  # not published yet
    produced, version = output_of(org, "produce", dag="stream")
    [task] = route_event(event_id=1, payload=event(produced, version, cursor=3))
    assert pins(task) == [(produced.pk, version.pk, None, 0, 3)]
    side, side_version = output_of(org, "side", dag="stream")
    # A queued task that does not read the side input takes none of its events.
    [other] = route_event(event_id=2, payload=event(side, side_version, cursor=8))
    assert other.pk != task.pk
    assert pins(other) == [
        (produced.pk, version.pk, None, None, None),
        (side.pk, side_version.pk, None, 0, 8),
    ]
    assert route_event(event_id=3, payload=event(side, side_version, cursor=10)) == []
    assert pins(other)[1] == (side.pk, side_version.pk, None, 0, 10)
    assert pins(task) == [(produced.pk, version.pk, None, 0, 3)]


@pytest.mark.django_db(transaction=True)
def test_per_update_coalescing_waits_for_the_consumers_lock(org):
    dag_sync(org=org, yaml_text=PER_UPDATE, activate=True)
    dataset, version = output_of(org, "produce", dag="stream")
    consumer = Job.objects.get(name="consume")
    # Another session deciding for the same consumer: this one waits (here: times out)
    # instead of queueing a second task beside the one the other is about to queue. NO KEY
    # UPDATE: a new task's foreign key to the job (KEY SHARE) does not wait for it, only the
    # coalescing lock does.
    with (
        held_by_another_session(Job, consumer.pk, no_key=True),
        pytest.raises(OperationalError, match="lock timeout"),
    ):
        with_lock_timeout(lambda: route_event(event_id=1, payload=event(dataset, version)))
    assert not Task.objects.filter(job=consumer).exists()


@pytest.mark.django_db(transaction=True)
def test_the_scanner_skips_an_invalidation_another_scanner_holds(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dataset, _ = output_of(org, "extract")
    held, free = invalidation(dataset, partition_key="a"), invalidation(dataset, partition_key="b")
    with held_by_another_session(DataInvalidation, held.pk):
        assert with_lock_timeout(invalidations_schedule) == 1
    assert list(DataInvalidation.objects.filter(scheduled_at__isnull=True)) == [held]
    assert Task.objects.get(trigger="invalidation").invalidation_id == free.pk


def test_the_scanner_counts_every_invalidation_it_scheduled(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    dataset, _ = output_of(org, "extract")
    for key in ("a", "b", "c"):
        invalidation(dataset, partition_key=key)
    assert invalidations_schedule() == 3

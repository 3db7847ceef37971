"""What a fenced completion commits, field by field: a partition's publication (once, and a
loud conflict on a different one), the event routed for it, invalidations with their kind and
scope, their cascade through a replace-style job, and a PerUpdate cursor that never goes back."""

from __future__ import annotations

import pytest

from tests.dags import noop_dag
from trace_operators import cryo_ingest, parquet_compact
from trace_web.datasets.models import (
    DataInvalidation,
    DatasetCursor,
    DatasetVersion,
    InvalidationProcessing,
    PartitionVersion,
)
from trace_web.errors import Conflict, ValidationFailed
from trace_web.orchestration.models import Outbox, Task, TaskInput
from trace_web.orchestration.services.commits import per_update_cursor_advance
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.routing import invalidations_schedule
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import (
    TaskScope,
    task_claim,
    task_complete,
    task_events,
)

# An append job of two outputs: its definition (strategy, key, output) is what names a version.
LEDGER_DAG = """
name: ledger
jobs:
  - name: extract
    activation: manual
    operator: noop
    outputs: 2
    update_strategy: append
    unique_key: [tx_hash]
"""
CRYO_CONFIG = {"chain_id": 31337, "dataset": "blocks", "rpc_pool": "devchain"}
# Operators that declare their own prefixes: cryo_ingest its range's partition, parquet_compact
# one version prefix per dataset.
BACKFILL_DAG = """
name: backfill
jobs:
  - name: blocks
    activation: manual
    operator: cryo_ingest
    config: {chain_id: 31337, dataset: blocks, rpc_pool: devchain}
  - name: compact
    activation: manual
    operator: parquet_compact
    config: {chain_id: 31337}
"""


@pytest.fixture(autouse=True)
def _no_fast_path(settings):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False


@pytest.fixture
def claimed(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    return task_claim(task_id=task.pk, worker_id="w1")


def store_root(settings):
    from trace_chain.object_store import object_store_from_url

    root = object_store_from_url(settings.TRACE_OBJECT_STORE_URL).uri()
    return root if root.endswith("/") else root + "/"


def own_prefix(org, settings):
    return f"{store_root(settings)}orgs/{org.pk}/chain/extract/"


def routed_events():
    return [row.payload for row in Outbox.objects.filter(kind="route_event").order_by("id")]


def test_a_range_publication_commits_its_partition_and_routes_its_event(org, claimed, settings):
    location = own_prefix(org, settings) + "10_20/"
    publication = {
        "location": location,
        "row_count": 7,
        "bytes": 512,
        "config_hash": "c1",
        "schema_hash": "s1",
        "manifest": {"files": ["a.parquet"]},
    }
    output = {"output": 0, "range_start": 10, "range_end": 20, "publication": publication}
    output |= {"attributes": {"kind": "swap"}}
    [event] = task_events(lease=claimed.lease, events=[output])
    part = PartitionVersion.objects.get()
    assert part.partition_key == "10_20"  # derived from the range
    assert (part.range_start, part.range_end, part.location) == (10, 20, location)
    assert (part.row_count, part.bytes, part.config_hash, part.schema_hash) == (7, 512, "c1", "s1")
    assert part.manifest == {"files": ["a.parquet"]}
    assert (part.task_id, part.attempt) == (claimed.lease.task_id, claimed.lease.attempt)
    assert routed_events() == [event]
    assert event["dataset_id"] == part.dataset_version.dataset_id
    assert event["dataset_version_id"] == part.dataset_version_id
    assert event["generation"] == part.dataset_version.generation
    assert (event["partition_key"], event["range_start"], event["range_end"]) == ("10_20", 10, 20)
    assert event["attributes"] == {"kind": "swap"}
    assert (event["producer_task_id"], event["producer_attempt"]) == (claimed.lease.task_id, 1)
    assert event["producer_trigger"] == "manual" and event["output"] == 0


def test_the_same_publication_commits_once_and_a_different_one_is_a_conflict(
    org, claimed, settings
):
    location = own_prefix(org, settings) + "p/"
    same = {"output": 0, "partition_key": "p", "publication": {"location": location}}
    task_events(lease=claimed.lease, events=[same])
    task_events(lease=claimed.lease, events=[same])
    assert PartitionVersion.objects.count() == 1
    moved = {**same, "publication": {"location": location + "other/"}}
    with pytest.raises(Conflict, match="already committed"):
        task_events(lease=claimed.lease, events=[moved])
    rehashed = {**same, "publication": {"location": location, "config_hash": "other"}}
    with pytest.raises(Conflict, match="already committed"):
        task_events(lease=claimed.lease, events=[rehashed])
    assert PartitionVersion.objects.get().location == location


def test_a_completion_without_outputs_commits_each_output_in_the_tasks_scope(org):
    dag_sync(org=org, yaml_text=noop_dag(), activate=True)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    Task.objects.filter(pk=task.pk).update(partition_key="k", range_start=3, range_end=4)
    task_complete(lease=task_claim(task_id=task.pk, worker_id="w").lease)
    [event] = routed_events()
    assert (event["partition_key"], event["range_start"], event["range_end"]) == ("k", 3, 4)


def test_invalidations_are_recorded_with_their_kind_scope_reason_and_source(org, claimed):
    events = [
        {"type": "invalidation", "output": 0, "range_start": 5, "range_end": 9, "reason": "reorg"},
        {"type": "invalidation", "output": 0, "partition_key": "p7"},
    ]
    accepted = task_events(lease=claimed.lease, events=events)
    ranged, keyed = DataInvalidation.objects.order_by("id")
    assert (ranged.kind, ranged.range_start, ranged.range_end) == ("row_range", 5, 9)
    assert (ranged.partition_key, ranged.reason) == (None, "reorg")
    assert (keyed.kind, keyed.partition_key, keyed.range_start) == ("partition", "p7", None)
    assert {ranged.source_task_id, keyed.source_task_id} == {claimed.lease.task_id}
    assert ranged.dataset.job_name == "extract" and ranged.dataset.output_index == 0
    assert accepted == [
        {"type": "invalidation", "invalidation_id": ranged.pk, "dataset_id": ranged.dataset_id},
        {"type": "invalidation", "invalidation_id": keyed.pk, "dataset_id": keyed.dataset_id},
    ]
    assert not routed_events()  # an invalidation is not an output


def test_a_replace_job_processing_an_invalidation_passes_it_on_to_its_outputs(org, claimed):
    wrong = {"type": "invalidation", "output": 0, "range_start": 5, "range_end": 9}
    task_events(lease=claimed.lease, events=[{**wrong, "partition_key": "5_9"}])
    assert invalidations_schedule() == 1
    repair = Task.objects.get(trigger="invalidation")
    # Processing rows of another invalidation, DAG or job: not this completion's.
    elsewhere = DataInvalidation.objects.create(
        dataset=repair.invalidation.dataset, kind="partition"
    )
    decoys = [
        InvalidationProcessing.objects.create(
            invalidation=elsewhere, dag_name="chain", job_name="transform"
        ),
        InvalidationProcessing.objects.create(
            invalidation=repair.invalidation, dag_name="other", job_name="transform"
        ),
        InvalidationProcessing.objects.create(
            invalidation=repair.invalidation, dag_name="chain", job_name="other"
        ),
    ]
    task_complete(lease=task_claim(task_id=repair.pk, worker_id="w").lease, outputs=[])
    processing = InvalidationProcessing.objects.exclude(pk__in=[d.pk for d in decoys]).get()
    assert processing.task_id == repair.pk and processing.processed_at is not None
    assert not InvalidationProcessing.objects.filter(
        pk__in=[d.pk for d in decoys], processed_at__isnull=False
    ).exists()
    cascade = DataInvalidation.objects.exclude(pk__in=[repair.invalidation_id, elsewhere.pk]).get()
    assert cascade.dataset.job_name == "transform"
    assert (cascade.kind, cascade.range_start, cascade.range_end) == ("row_range", 5, 9)
    assert cascade.partition_key == "5_9"
    assert cascade.reason == f"cascade of invalidation {repair.invalidation_id}"
    assert cascade.source_task_id == repair.pk


def test_a_per_update_cursor_moves_forward_only(org, claimed):
    task_events(lease=claimed.lease, events=[{"output": 0, "partition_key": "p"}])
    dataset_id = routed_events()[0]["dataset_id"]
    consumer = Task.objects.create(
        org=org,
        job=claimed.task.job.dag_version.jobs.get(name="transform"),
        status="Running",
        attempt=1,
        max_attempts=1,
        trigger="event",
    )
    pinned = TaskInput.objects.create(task=consumer, dataset_id=dataset_id, cursor_to=8)
    per_update_cursor_advance(task=consumer)
    cursor = DatasetCursor.objects.get(dataset_id=dataset_id, consumer_job="transform")
    assert (cursor.consumer_dag, cursor.position) == ("chain", 8)
    TaskInput.objects.filter(pk=pinned.pk).update(cursor_to=3)
    per_update_cursor_advance(task=consumer)
    cursor.refresh_from_db()
    assert cursor.position == 8


def test_partitions_are_told_apart_by_key_and_by_dataset_version(org, claimed, settings):
    prefix = own_prefix(org, settings)
    for key in ("p", "q"):  # another partition of the same version is no conflict
        event = {"output": 0, "partition_key": key, "publication": {"location": f"{prefix}{key}/"}}
        task_events(lease=claimed.lease, events=[event])
    task_complete(lease=claimed.lease, outputs=[])
    # A new definition (another config) is a new version: its partition p is its own.
    dag_sync(org=org, yaml_text=noop_dag(extract_config="{depth: 2}"), activate=True)
    task = job_run_manual(org=org, dag_name="chain", job_name="extract")
    lease = task_claim(task_id=task.pk, worker_id="w2").lease
    moved = {"output": 0, "partition_key": "p", "publication": {"location": f"{prefix}p/v2/"}}
    task_events(lease=lease, events=[moved])
    rows = PartitionVersion.objects.order_by("id")
    assert [(r.partition_key, r.location) for r in rows] == [
        ("p", f"{prefix}p/"),
        ("q", f"{prefix}q/"),
        ("p", f"{prefix}p/v2/"),
    ]
    assert rows[0].dataset_version_id != rows[2].dataset_version_id


def test_the_routed_event_carries_the_outputs_cursor(org, claimed):
    [event] = task_events(lease=claimed.lease, events=[{"output": 0, "cursor": 12}])
    assert event["cursor"] == 12 and routed_events()[0]["cursor"] == 12


def test_a_cursor_advances_by_this_tasks_own_positioned_inputs_only(org, claimed):
    task_events(lease=claimed.lease, events=[{"output": 0, "partition_key": "p"}])
    dataset_id = routed_events()[0]["dataset_id"]
    transform = claimed.task.job.dag_version.jobs.get(name="transform")

    def consumer_with(cursor_to):
        task = Task.objects.create(
            org=org, job=transform, status="Running", attempt=1, max_attempts=1, trigger="event"
        )
        TaskInput.objects.create(task=task, dataset_id=dataset_id, cursor_to=cursor_to)
        return task

    consumer_with(20)  # another task's input: not this completion's business
    mine = consumer_with(8)
    TaskInput.objects.create(task=mine, dataset_id=dataset_id)  # pinned without a position
    per_update_cursor_advance(task=mine)
    assert DatasetCursor.objects.get(dataset_id=dataset_id).position == 8


def test_an_output_past_the_jobs_last_is_refused_naming_where_it_was(org, claimed):
    with pytest.raises(ValidationFailed, match=r"events\[0\]\.output: 1 out of range"):
        task_events(lease=claimed.lease, events=[{"output": 1, "partition_key": "p"}])
    assert not routed_events()


def test_a_location_outside_the_prefix_is_refused_naming_the_field(org, claimed, settings):
    with pytest.raises(ValidationFailed, match=r"events\[0\]\.publication\.location: "):
        task_events(
            lease=claimed.lease,
            events=[{"output": 0, "partition_key": "p", "publication": {"location": "s3://x/"}}],
        )
    # Plain key segments, whatever their letters, are inside.
    inside = own_prefix(org, settings) + "X/"
    task_events(
        lease=claimed.lease,
        events=[{"output": 0, "partition_key": "p", "publication": {"location": inside}}],
    )
    assert PartitionVersion.objects.get().location == inside


def test_a_publication_without_a_partition_or_range_is_refused_naming_the_field(
    org, claimed, settings
):
    publication = {"location": own_prefix(org, settings) + "p/"}
    with pytest.raises(
        ValidationFailed, match=r"events\[0\]\.publication: needs a partition_key or a range"
    ):
        task_events(lease=claimed.lease, events=[{"output": 0, "publication": publication}])
    assert not PartitionVersion.objects.exists()


def test_outputs_commit_into_the_versions_their_dag_sync_registered(org):
    dag_sync(org=org, yaml_text=LEDGER_DAG, activate=True)
    registered = {
        v.dataset.output_index: v for v in DatasetVersion.objects.select_related("dataset")
    }
    assert registered[1].definition["update_strategy"] == "append"
    assert registered[1].definition["unique_key"] == ["tx_hash"]
    task = job_run_manual(org=org, dag_name="ledger", job_name="extract")
    lease = task_claim(task_id=task.pk, worker_id="w").lease
    events = [{"output": 1, "partition_key": "p"}, {"output": 0, "partition_key": "p"}]
    accepted = task_events(lease=lease, events=events)
    # The commit's own definition (strategy, key, output) names the same version: no new one.
    assert [e["dataset_version_id"] for e in accepted] == [registered[1].pk, registered[0].pk]
    assert [e["generation"] for e in accepted] == [1, 1]
    assert DatasetVersion.objects.count() == 2


def test_an_operator_publishes_under_its_own_ranges_partition_only(org, settings):
    dag_sync(org=org, yaml_text=BACKFILL_DAG, activate=True)
    scope = TaskScope(range_start=100, range_end=200)
    task = job_run_manual(org=org, dag_name="backfill", job_name="blocks", scope=scope)
    lease = task_claim(task_id=task.pk, worker_id="w").lease
    root = store_root(settings)
    ranged = {"output": 0, "range_start": 100, "range_end": 200}
    [mine] = cryo_ingest.output_prefixes(CRYO_CONFIG, 100, 200)
    [version] = cryo_ingest.output_prefixes(CRYO_CONFIG, None, None)
    [neighbour] = cryo_ingest.output_prefixes(CRYO_CONFIG, 200, 300)
    assert mine.startswith(version) and mine != version
    # Another range of the same version, or the version prefix itself: not this task's.
    for elsewhere in (neighbour, version + "x/"):
        with pytest.raises(ValidationFailed, match=r"events\[0\]\.publication\.location: "):
            publication = {"location": root + elsewhere + "0.parquet"}
            task_events(lease=lease, events=[{**ranged, "publication": publication}])
    # Nor the platform's default prefix for the job.
    default = f"{root}orgs/{org.pk}/backfill/blocks/100_200/"
    with pytest.raises(ValidationFailed, match=r"publication\.location: "):
        task_events(lease=lease, events=[{**ranged, "publication": {"location": default}}])
    location = root + mine + "0.parquet"
    task_events(lease=lease, events=[{**ranged, "publication": {"location": location}}])
    part = PartitionVersion.objects.get()
    assert (part.partition_key, part.location) == ("100_200", location)


def test_a_job_of_several_prefixes_may_publish_under_any_of_them(org, settings):
    dag_sync(org=org, yaml_text=BACKFILL_DAG, activate=True)
    task = job_run_manual(org=org, dag_name="backfill", job_name="compact")
    lease = task_claim(task_id=task.pk, worker_id="w").lease
    prefixes = parquet_compact.output_prefixes({"chain_id": 31337}, None, None)
    assert len(prefixes) > 1
    for key, prefix in enumerate(prefixes):
        location = f"{store_root(settings)}{prefix}{key}/"
        item = {"output": 0, "partition_key": f"k{key}", "publication": {"location": location}}
        task_events(lease=lease, events=[item])
    assert PartitionVersion.objects.count() == len(prefixes)


def test_an_invalidation_past_the_jobs_last_output_is_refused_naming_where_it_was(org, claimed):
    events = [
        {"type": "invalidation", "output": 0, "partition_key": "p"},
        {"type": "invalidation", "output": 1, "partition_key": "p"},
    ]
    with pytest.raises(ValidationFailed, match=r"events\[1\]\.output: 1 out of range"):
        task_events(lease=claimed.lease, events=events)
    assert not DataInvalidation.objects.exists()

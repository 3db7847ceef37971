"""The example integrity DAG (deploy/demo/chain_integrity_dag.yaml) through the control plane,
in-process, over cold data the example compaction DAG made: a clean run records a clean
IntegrityCheck; after a committed cold file is changed, the next run records the mismatch with
its range, rebuilds the range under a new revision (committed through the fenced task API),
invalidates the compacted dataset's range, and the run after passes."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.chain.compaction_helpers import follow_in_process, live
from tests.integration.test_compaction_dag import DAG as COMPACT_DAG
from tests.integration.test_compaction_dag import small
from trace_chain import devchain
from trace_chain.cold_segments import segments_live
from trace_tasks.runner import task_run
from trace_web.datasets.models import DataInvalidation, IntegrityCheck, PartitionVersion
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual, sources_monitor

DAG = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "chain_integrity_dag.yaml"


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def integrity_yaml(url: str) -> str:
    return (
        DAG.read_text()
        .replace("rpc_pool: devchain", f"rpc_url: {url}")
        .replace("finality_depth_blocks: 5", "finality_depth_blocks: 3")
        .replace("repair: true", "repair: true\n      alert_channel: ops")
    )


def check_once(org) -> IntegrityCheck:
    task = job_run_manual(org=org, dag_name="chain-integrity", job_name="check")
    assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
    return IntegrityCheck.objects.get(task_id=task.pk)


def test_the_example_dag_finds_a_changed_file_rebuilds_it_and_then_passes(
    org, fresh_anvil, hot_engine, cold, settings
):
    from trace_web.alerts.models import Channel, Delivery
    from trace_web.alerts.services import _condition_checked
    from trace_web.orchestration.models import Outbox, OutboxKind

    settings.TRACE_OBJECT_STORE_URL = cold.uri()
    url = fresh_anvil.url
    ops = Channel.objects.create(org=org, name="ops", kind="webhook", target="https://ops.test/")
    devchain.generate_traffic(url, blocks=18, txs_per_block=2)
    dag_sync(org=org, yaml_text=small(COMPACT_DAG.read_text()), activate=True)
    dag_sync(org=org, yaml_text=integrity_yaml(url), activate=True)
    assert sources_monitor() == 1
    follow_in_process(url, hot_engine)
    for task in Task.objects.filter(job__name="compact").order_by("pk"):
        assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
    ranges = live(hot_engine)
    assert len(ranges) >= 3

    clean = check_once(org)
    assert (clean.status, clean.mismatches, clean.kinds) == ("clean", 0, [])
    assert (clean.range_start, clean.range_end) == (ranges[0][0], ranges[-1][1])
    assert clean.blocks_checked == ranges[-1][1] - ranges[0][0]
    assert not Delivery.objects.exists()  # a clean check alerts nobody

    with hot_engine.connect() as conn:
        segment = next(s for s in segments_live(conn, chain_id=31337, dataset="blocks"))
    path = cold.root / (segment.location.removeprefix(cold.uri()) + segment.files[0]["name"])
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # block `range_start` dropped from the file

    found = check_once(org)
    damaged = ["blocks", segment.range_start, segment.range_end]
    assert found.status == "repaired" and found.affected == [damaged]
    assert found.kinds == ["checksum", "coverage"]
    assert found.details["coverage"]["first"][0]["block"] == segment.range_start
    assert [r[:3] for r in found.repaired] == [damaged]
    rebuilt = PartitionVersion.objects.get(
        dataset_version__dataset__job_name="check", location=found.repaired[0][3]
    )
    assert rebuilt.location != segment.location and rebuilt.manifest["row_count"] == 5
    compacted = DataInvalidation.objects.get(dataset__job_name="compact")
    assert (compacted.range_start, compacted.range_end) == tuple(damaged[1:])
    assert DataInvalidation.objects.filter(
        dataset__job_name="check", range_start=segment.range_start
    ).exists()

    # The ops channel is told once, through the delivery path (a delivery and its wake-up).
    (delivery,) = Delivery.objects.filter(channel=ops)
    assert delivery.event.payload["affected"] == [damaged]
    assert delivery.event.definition.name == "ops-integrity-check"
    assert not delivery.event.definition.enabled
    assert _condition_checked(delivery.event.definition.condition)[0] == []  # valid, inert
    assert Outbox.objects.filter(
        kind=OutboxKind.WAKE_DELIVERY, payload__delivery_id=delivery.pk
    ).exists()

    after = check_once(org)
    assert (after.status, after.mismatches) == ("clean", 0)
    assert Delivery.objects.count() == 1

"""The example compaction DAG (deploy/demo/chain_compact_dag.yaml) through the control plane,
in-process: a real follower's announcements route to parquet_compact tasks (PerPartition),
the worker wrapper runs them, each partition is a fenced commit into partition_versions under
the declared prefixes, and the org's query over hot and cold equals the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chain.compaction_helpers import PER_RANGE, follow_in_process, hot_low, live, node_totals
from trace_chain import chain_schema, devchain
from trace_tasks.runner import task_run
from trace_web.datasets.models import PartitionVersion
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import sources_monitor

DAG = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "chain_compact_dag.yaml"


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def small(yaml_text: str) -> str:
    """The example with test-sized ranges: announcements and partitions of 5 blocks."""
    return (
        yaml_text.replace("emit_every_blocks: 50", "emit_every_blocks: 5")
        .replace("finality_depth_blocks: 5", "finality_depth_blocks: 3")
        .replace("hot_window_blocks: 100", "hot_window_blocks: 4")
        .replace("chunk_blocks: 50", "chunk_blocks: 5")
    )


def test_the_example_dag_compacts_through_the_control_plane(
    org, fresh_anvil, hot_engine, cold, settings, tmp_path
):
    from trace_web.query.selectors import query_catalog
    from trace_web.query.services import query_run

    settings.TRACE_OBJECT_STORE_URL = cold.uri()
    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=18, txs_per_block=2)
    dag_sync(org=org, yaml_text=small(DAG.read_text()), activate=True)
    assert sources_monitor() == 1
    follower = follow_in_process(url, hot_engine)  # each announcement routed to compaction
    compactions = Task.objects.filter(job__name="compact").order_by("pk")
    assert compactions.count() == (follower.tip + 1) // 5
    for task in compactions:
        assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
    assert hot_low(hot_engine) > 10
    committed = PartitionVersion.objects.filter(dataset_version__dataset__job_name="compact")
    assert committed.count() == len(chain_schema.DATASETS) * len(
        live(hot_engine)
    )  # per dataset, range
    assert all(p.location.startswith(cold.uri()) and p.manifest["files"] for p in committed)
    catalog = query_catalog(org=org, role="admin", hot_dsn=_reader())
    outcome = query_run(
        sql=PER_RANGE, catalog=catalog, org_id=org.pk, timeout_seconds=60, max_rows=1000
    )
    got = {row.pop("r"): row for row in outcome.table.to_pylist()}
    assert got == node_totals(url, follower.tip)


def _reader() -> str:
    from trace_chain.db import query_reader_dsn

    return query_reader_dsn()

"""The example Iceberg DAG (deploy/demo/chain_iceberg_dag.yaml) through the control plane,
in-process: compaction's commits route to iceberg_sync tasks, the worker wrapper runs them
with the org's committed cold files, and the tables hold exactly the rows the org's own query
reads from cold."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.chain.compaction_helpers import follow_in_process, hot_low
from tests.chain.test_iceberg import _duckdb_rows
from tests.integration.test_compaction_dag import small
from trace_chain import chain_schema, devchain, iceberg
from trace_tasks.runner import task_run
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_drain
from trace_web.orchestration.services.sources import sources_monitor

DAG = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "chain_iceberg_dag.yaml"


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def test_compaction_commits_wake_the_sync_and_the_tables_hold_what_the_org_reads(
    org, fresh_anvil, hot_engine, cold, settings, monkeypatch
):
    from trace_chain.db import query_reader_dsn
    from trace_web.query.selectors import query_catalog
    from trace_web.query.services import query_run

    settings.TRACE_OBJECT_STORE_URL = cold.uri()
    monkeypatch.setenv(iceberg.NAMESPACE_ENV, f"t{uuid.uuid4().hex[:12]}")
    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=12, txs_per_block=2)
    dag_sync(org=org, yaml_text=small(DAG.read_text()), activate=True)
    assert sources_monitor() == 1
    follow_in_process(url, hot_engine)
    for task in Task.objects.filter(job__name="compact").order_by("pk"):
        assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
    outbox_drain()  # compaction's commits routed to the sync job
    line = hot_low(hot_engine)
    assert line is not None and line >= 5
    syncs = Task.objects.filter(job__name="iceberg")
    assert syncs.exists()  # woken by compaction's commits
    for task in syncs.order_by("pk"):
        assert task_run(task_id=task.pk, worker_id="platform").status == "completed"
    tables = iceberg.iceberg_settings_from_env()
    catalog = query_catalog(org=org, role="admin", hot_dsn=query_reader_dsn())
    for dataset in ("blocks", "transactions", "logs"):
        columns = ", ".join(chain_schema.column_names(dataset))
        sql = f"SELECT {columns} FROM {dataset} WHERE block_number < {line}"  # noqa: S608
        outcome = query_run(
            sql=sql, catalog=catalog, org_id=org.pk, timeout_seconds=60, max_rows=10_000
        )
        expected = sorted(tuple(row.values()) for row in outcome.table.to_pylist())
        identifier = iceberg.table_identifier(
            tables, org_id=org.pk, chain_id=31337, dataset=dataset
        )
        table = iceberg.iceberg_catalog(tables).load_table(identifier)
        assert expected and _duckdb_rows(dataset, table.metadata_location) == expected

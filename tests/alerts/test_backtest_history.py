"""A backtest over history that compaction has moved into cold Parquet: the chain followed
into the hot tables, its finalized ranges compacted by the example compaction DAG (fenced
commits into partition_versions, the hot rows deleted), live alert tasks evaluating as blocks
arrive. A backtest over the whole chain, most of it cold by then, finds exactly the node's
matching transactions, and over the blocks live evaluation saw, exactly what it found."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.alerts.test_pipeline import events_of, node_transfers
from tests.chain.compaction_helpers import follow_in_process, hot_low
from tests.integration.test_compaction_dag import small
from trace_chain import devchain
from trace_tasks.runner import task_run
from trace_web.alerts.models import AlertDefinition
from trace_web.datasets.models import DatasetCursor, PartitionVersion
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.outbox import outbox_drain
from trace_web.orchestration.services.sources import job_run_manual, sources_monitor
from trace_web.orchestration.services.tasks import TaskScope

DAG = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "chain_compact_dag.yaml"
ALERT_JOB = """
  - name: evaluate
    activation: reactive
    runtime: udf
    operator: alert_evaluate
    execution_strategy: PerUpdate
    scaling: {max_concurrency: 1}
    config: {chain_id: 31337}
    inputs: [{from: {job: follow, output: 0}}]
"""


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def completed(task) -> None:
    outcome = task_run(task_id=task.pk, worker_id="worker")
    task.refresh_from_db()
    assert outcome.status == "completed", task.error
    outbox_drain()  # the sink, on the task's commit


def test_a_backtest_over_compacted_history_finds_what_live_evaluation_found(
    org, fresh_anvil, hot_engine, cold, settings
):
    settings.TRACE_OBJECT_STORE_URL = cold.uri()
    url = fresh_anvil.url
    devchain.generate_traffic(url, blocks=18, txs_per_block=2)
    definition = AlertDefinition.objects.create(
        org=org,
        name="any-value",
        chain_id=devchain.ANVIL_CHAIN_ID,
        condition={"match": "transaction", "where": "value > 0"},
    )
    dag_sync(org=org, yaml_text=small(DAG.read_text()) + ALERT_JOB, activate=True)
    assert sources_monitor() == 1
    live = Task.objects.filter(job__name="evaluate", trigger="event")

    def evaluate_live():  # live evaluation as blocks arrive
        for task in live.filter(status="Queued"):
            completed(task)

    follower = follow_in_process(url, hot_engine, after_announce=evaluate_live)
    tip = follower.tip
    assert live.filter(status="Completed").count() >= 3
    for task in Task.objects.filter(job__name="compact").order_by("pk"):
        completed(task)
    line = hot_low(hot_engine)
    assert (
        line > 10
        and PartitionVersion.objects.filter(dataset_version__dataset__job_name="compact").exists()
    )  # most of the chain is cold now, its hot rows gone

    live_events = events_of(definition, backtest=False)
    first_live = min(block for block, _, _ in live_events)
    backtest = job_run_manual(
        org=org,
        dag_name="chain-compact",
        job_name="evaluate",
        scope=TaskScope(range_start=0, range_end=tip + 1),
        payload={"backtest": True, "deliver": False, "definitions": [definition.pk]},
    )
    completed(backtest)
    history = events_of(definition, backtest=True)
    assert history == node_transfers(url, 0, tip + 1)
    assert any(block < line for block, _, _ in history)  # cold rows matched too
    evaluated_to = DatasetCursor.objects.get(consumer_job="evaluate").position
    assert {e for e in history if first_live <= e[0] < evaluated_to} == live_events

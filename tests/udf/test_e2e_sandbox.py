"""A udf job end to end on anvil data: its bundle's handler, run in the sandbox by the worker's
runner, queries the dataset its task was granted (a follower's hot blocks) for the task's
range and returns rows, which are buffer-published as one JSONL batch and committed as the
job's output, holding exactly the node's blocks of that range; a handler past a limit fails
its task for good with the sandbox's message and publishes nothing."""

# ruff: noqa: S608 - the SQL is built from the test's own block numbers

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.query import test_query_api
from tests.udf_bundles import bundle
from trace_chain.object_store import object_store_from_url
from trace_chain.rpc import RpcPool
from trace_tasks.runner import task_run
from trace_web.datasets.models import Dataset, PartitionVersion
from trace_web.orchestration.models import Task
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import TaskScope
from trace_web.udf.models import OutputBatch
from trace_web.udf.services import bundle_upload

world = test_query_api.world  # acme's follower hot rows and backfill of one anvil chain

BLOCKS_HANDLER = """
def handle(ctx):
    start, end = ctx.range
    answer = ctx.query(
        f"SELECT block_number, block_hash FROM blocks "
        f"WHERE block_number >= {start} AND block_number < {end} ORDER BY 1"
    )
    ctx.log(f"{len(answer['rows'])} blocks of [{start}, {end})")
    return [{"number": number, "hash": block_hash} for number, block_hash in answer["rows"]]
"""

CPU_HANDLER = """
def handle(ctx):
    while True:
        pass
"""


def udf_dag(limits: str = "{}") -> str:
    return f"""
name: copy
jobs:
  - name: blocks
    activation: manual
    runtime: udf
    operator: udf
    update_strategy: replace
    udf: {{bundle: "blocks@1.0.0", entrypoint: main}}
    config: {{params: {{}}, limits: {limits}}}
    inputs: [{{from: {{dataset: chain.hot}}}}]
"""


# Committed data (transactional_db): the runner's heartbeat thread has a connection of its own,
# and a handler's run in the sandbox outlasts the first heartbeat.


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


def deploy(org, handler: str, limits: str = "{}") -> None:
    files = {"main.py": handler.encode()}
    bundle_upload(org=org, data=bundle(files, name="blocks", version="1.0.0"))
    dag_sync(org=org, yaml_text=udf_dag(limits), activate=True)


def test_a_handler_reads_its_granted_blocks_and_publishes_them(
    transactional_db, world, org, hot_engine, settings
):
    deploy(org, BLOCKS_HANDLER)
    start, end = world["line"] + 1, world["tip"]  # a range inside the hot rows, end-exclusive
    task = job_run_manual(
        org=org,
        dag_name="copy",
        job_name="blocks",
        scope=TaskScope(range_start=start, range_end=end),
    )
    outcome = task_run(task_id=task.pk, worker_id="udf")
    task.refresh_from_db()
    assert outcome.status == "completed", task.error
    assert task.status == "Completed"

    # The node's own blocks of [start, end), read over JSON-RPC.
    with RpcPool("node", [world["url"]]) as rpc:
        node = [rpc.call("eth_getBlockByNumber", [hex(n), False]) for n in range(start, end)]
    expected = [{"number": int(b["number"], 16), "hash": b["hash"]} for b in node]
    assert len(expected) == end - start > 0

    (batch,) = OutputBatch.objects.filter(task_id=task.pk)
    assert batch.row_count == len(expected) and batch.org_id == org.pk
    store = object_store_from_url(settings.TRACE_OBJECT_STORE_URL)
    key = batch.location.split("/objects/", 1)[1]
    lines = store.get_bytes(key).decode().splitlines()
    assert [json.loads(line) for line in lines] == expected

    dataset = Dataset.objects.get(org=org, dag_name="copy", job_name="blocks")
    (partition,) = PartitionVersion.objects.filter(dataset_version__dataset=dataset)
    assert partition.location == batch.location and partition.row_count == len(expected)
    assert (partition.range_start, partition.range_end) == (start, end)
    assert partition.manifest["format"] == "jsonl"
    with hot_engine.connect() as conn:  # and the hot rows the handler read say the same
        hot = conn.execute(
            sa.text(
                "SELECT block_number, block_hash FROM hot_blocks "
                f"WHERE block_number >= {start} AND block_number < {end} ORDER BY 1"
            )
        ).all()
    assert [{"number": n, "hash": h} for n, h in hot] == expected


def test_a_handler_past_its_cpu_limit_fails_for_good_with_the_sandboxs_message(
    transactional_db, world, org
):
    deploy(org, CPU_HANDLER, limits="{cpu_seconds: 1, wall_seconds: 20}")
    task = job_run_manual(
        org=org,
        dag_name="copy",
        job_name="blocks",
        scope=TaskScope(range_start=world["line"], range_end=world["tip"]),
    )
    assert task_run(task_id=task.pk, worker_id="udf").status == "failed"
    task = Task.objects.get(pk=task.pk)
    assert task.status == "Failed" and task.next_retry_at is None  # not retried
    assert "handler failed (cpu_limit)" in task.error, task.error
    assert not OutputBatch.objects.filter(task_id=task.pk).exists()
    assert not PartitionVersion.objects.filter(dataset_version__dataset__dag_name="copy").exists()

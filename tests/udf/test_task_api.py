"""The in-process task API a handler's channel goes through, over a follower's hot rows of an
anvil chain: a query reads exactly the attempt's pinned inputs through the same gate and
audit as `POST /v1/task/query`, a refused one comes back as the API's code, and a finished
attempt reads nothing."""

# ruff: noqa: S608 - the SQL is built from the test's own block numbers

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.query import test_query_api
from trace_operators.context import LeaseLost, TaskApiRefused
from trace_tasks.task_api import InProcessTaskApi
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import task_claim, task_complete

world = test_query_api.world  # the follower's hot rows and a backfill of one anvil chain

READER = """
name: reader
jobs:
  - name: read
    activation: manual
    operator: noop
    outputs: 0
    inputs: [{from: {dataset: chain.hot}}]
"""


@pytest.fixture
def api(world, org):
    dag_sync(org=org, yaml_text=READER, activate=True)
    task = job_run_manual(org=org, dag_name="reader", job_name="read")
    return InProcessTaskApi(task_claim(task_id=task.pk, worker_id="udf"))


def test_a_handlers_query_reads_its_pinned_inputs_as_a_direct_query_does(api, world, hot_engine):
    low, high = world["line"], world["line"] + 3
    sql = (
        "SELECT block_number, transaction_hash FROM transactions "
        f"WHERE block_number BETWEEN {low} AND {high} ORDER BY 1, 2"
    )
    answer = api.query(sql)
    assert answer["columns"] == ["block_number", "transaction_hash"]
    with hot_engine.connect() as conn:
        direct = conn.execute(
            sa.text(
                "SELECT block_number, transaction_hash FROM hot_transactions "
                "WHERE block_number BETWEEN :low AND :high ORDER BY 1, 2"
            ),
            {"low": low, "high": high},
        ).all()
    assert len(direct) > 0
    assert [tuple(row) for row in answer["rows"]] == [
        (number, tx_hash) for number, tx_hash in direct
    ]
    # The backfill below the line is not pinned: none of it is read.
    assert api.query(f"SELECT count(*) FROM blocks WHERE block_number < {low}")["rows"] == [[0]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM hot_transactions",  # the data DB's own table, not a granted relation
        "SELECT * FROM read_parquet('/etc/passwd')",
        "DELETE FROM blocks",
    ],
)
def test_a_refused_query_reaches_the_handler_as_the_apis_code(api, sql):
    with pytest.raises(TaskApiRefused) as refused:
        api.query(sql)
    assert refused.value.code.startswith("query_") or refused.value.code == "invalid"
    assert refused.value.message


def test_a_finished_attempt_reads_nothing(api):
    task_complete(lease=api.claimed.lease)
    with pytest.raises(LeaseLost):
        api.query("SELECT 1")
    with pytest.raises(LeaseLost):
        api.heartbeat()

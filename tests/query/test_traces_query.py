"""The `traces` relation: through the SQL gate like the other chain relations, and through
POST /v1/query and /v1/task/query, answering exactly the internal calls a traces-enabled
follower stored for the org whose dataset they are, and nothing to a role it excludes."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.chain.test_block_follower import Recorder, catch_up, hot_rows, make_follower
from trace_chain import chain_schema, devchain
from trace_chain.devchain_calls import generate_call_traffic
from trace_chain.hot_schema import hot_traces
from trace_chain.query.errors import QueryRefused
from trace_chain.query.gate import gate
from trace_web.datasets.models import Dataset
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orgs.models import Role

CHAIN = devchain.ANVIL_CHAIN_ID
FOLLOW = f"""
name: follow
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {CHAIN}, rpc_pool: devchain, traces: true}}
publish:
  chain.hot: {{job: follow, read_roles: [admin, member]}}
"""
ROWS = (
    "SELECT block_number, transaction_index, trace_address, trace_type, from_address, "
    "to_address, value, error, created_address FROM traces "
    "ORDER BY block_number, transaction_index, trace_address"
)


def test_the_gate_accepts_traces_and_refuses_its_hot_table_by_name():
    gated = gate(
        "WITH inner_calls AS (SELECT * FROM traces WHERE trace_address <> '') "
        "SELECT to_address, count(*) FROM inner_calls GROUP BY 1",
        relations=chain_schema.DATASETS,
    )
    assert gated.relations == frozenset({"traces"})
    with pytest.raises(QueryRefused) as qualified:
        gate("SELECT * FROM hot.public.hot_traces", relations=chain_schema.DATASETS)
    assert qualified.value.code == "qualified_name"
    with pytest.raises(QueryRefused) as unknown:
        gate("SELECT * FROM traces", relations=("blocks", "transactions", "logs"))
    assert unknown.value.code == "unknown_relation"


@pytest.fixture
def traced(org, fresh_anvil, hot_engine, settings):
    """acme follows the chain with traces on; its blocks hold relays, factory creates and
    reverting inner calls."""
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    calls = generate_call_traffic(fresh_anvil.url, blocks=3)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), org_id=org.pk, traces=True)
    catch_up(follower)
    dag_sync(org=org, yaml_text=FOLLOW, activate=True)
    order = [hot_traces.c.block_number, hot_traces.c.transaction_index, hot_traces.c.trace_address]
    stored = hot_rows(hot_engine, hot_traces, order)
    expected = [
        [
            r["block_number"],
            r["transaction_index"],
            r["trace_address"],
            r["trace_type"],
            r["from_address"],
            r["to_address"],
            str(r["value"]),  # wei: exact, as text
            r["error"],
            r["created_address"],
        ]
        for r in stored
    ]
    return {"calls": calls, "expected": expected}


def query(client, sql):
    return client.post("/v1/query", {"sql": sql}, format="json")


def test_a_member_reads_every_stored_trace_and_can_find_the_internal_calls(traced, org, client_for):
    member = client_for(org, Role.MEMBER)
    response = query(member, ROWS)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["relations"] == ["traces"]
    assert body["rows"] == traced["expected"] and len(body["rows"]) > 12
    calls = traced["calls"]
    failed = query(
        member,
        "SELECT count(*) FROM traces WHERE trace_address <> '' AND error IS NOT NULL",
    ).json()
    assert failed["rows"] == [[3]]  # one reverting inner call per tryFail
    # S608: the address is our own contract's, not input.
    sql = f"SELECT count(DISTINCT created_address) FROM traces WHERE trace_type = 'create' AND from_address = '{calls.caller}'"  # noqa: S608, E501
    created = query(member, sql).json()
    assert created["rows"] == [[6]]  # spawn and nest, three blocks each


def test_a_role_the_dataset_excludes_and_another_org_see_no_traces(
    traced, org, other_org, client_for
):
    for client in (client_for(org, Role.VIEWER), client_for(other_org, Role.ADMIN)):
        assert query(client, "SELECT count(*) FROM traces").json()["rows"] == [[0]]


def test_a_task_reads_the_traces_of_its_pinned_follower(traced, org):
    from trace_web.orchestration.services.tasks import PinnedInput, task_claim, task_create

    hot = Dataset.objects.get(org=org, published_name="chain.hot")
    consumer = dag_sync(
        org=org,
        activate=True,
        yaml_text="""
name: reader
jobs:
  - {name: read, activation: manual, operator: noop, outputs: 0}
""",
    ).version.jobs.get()
    task, _ = task_create(
        job=consumer,
        trigger="manual",
        inputs=[PinnedInput(dataset_id=hot.pk, dataset_version_id=hot.versions.get().pk)],
    )
    claimed = task_claim(task_id=task.pk, worker_id="w")
    runtime = APIClient()
    runtime.credentials(HTTP_AUTHORIZATION=f"Bearer {claimed.capability_token}")
    answer = runtime.post("/v1/task/query", {"sql": ROWS}, format="json")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["rows"] == traced["expected"]

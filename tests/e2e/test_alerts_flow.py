"""Alerting end to end on real processes: anvil mining, the follower on the stream pool,
alert_evaluate on the udf pool, the sink and routing on commit, the delivery pool sending to a
real HTTP receiver on loopback. A matching transaction is told exactly once, by one signed
webhook; a transaction that does not match is never told. Once with a declarative condition,
once with a UDF handler run in the sandbox."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from pytest_httpserver import HTTPServer

from tests.udf_bundles import bundle
from tests.waiting import wait_for
from trace_chain import devchain
from trace_chain.rpc import RpcPool
from trace_web.alerts.models import AlertDefinition, AlertEvent, Channel, Delivery
from trace_web.datasets.models import DatasetCursor
from trace_web.orchestration.services.dags import dag_sync
from trace_web.udf.services import bundle_upload

pytestmark = pytest.mark.celery

CHAIN = devchain.ANVIL_CHAIN_ID
DAGS = f"""
name: watch
jobs:
  - name: follow
    activation: source
    source: {{kind: always_on}}
    operator: block_follower
    config: {{chain_id: {CHAIN}, rpc_pool: devchain}}
  - name: evaluate
    activation: reactive
    runtime: udf
    operator: alert_evaluate
    execution_strategy: PerUpdate
    scaling: {{max_concurrency: 1}}
    config: {{chain_id: {CHAIN}}}
    inputs: [{{from: {{job: follow, output: 0}}}}]
"""
ONE_ETH = 10**18
HANDLER = """
def handle(ctx):
    start, end = ctx.range
    answer = ctx.query(
        "SELECT block_number, block_hash, transaction_hash, value FROM transactions "
        f"WHERE block_number >= {start} AND block_number < {end} "
        f"AND from_address = '{ctx.params['sender']}' AND value > {ctx.params['min_wei']}"
    )
    return [
        {"block_number": n, "block_hash": h, "tx_hash": tx, "payload": {"value": str(v)}}
        for n, h, tx, v in answer["rows"]
    ]
"""


@pytest.fixture
def chain(monkeypatch):
    with devchain.Anvil(block_time=0.5) as node:
        monkeypatch.setenv("TRACE_RPC_POOL_DEVCHAIN", node.url)  # inherited by the workers
        monkeypatch.setenv("TRACE_DELIVERY_ALLOW_PRIVATE", "1")  # the receiver is on loopback
        yield node


def send(url: str, sender: str, to: str, value: int) -> str:
    with RpcPool("send", [url]) as rpc:
        return rpc.call(
            "eth_sendTransaction", [{"from": sender, "to": to, "value": hex(value)}]
        ).lower()


def mined_block(url: str, tx_hash: str) -> int:
    with RpcPool("check", [url]) as rpc:
        receipt = wait_for(
            lambda: rpc.call("eth_getTransactionReceipt", [tx_hash]), timeout=30, what="mined"
        )
    return int(receipt["blockNumber"], 16)


def evaluated_past(org, block: int) -> bool:
    cursor = DatasetCursor.objects.filter(
        dataset__org=org, consumer_dag="watch", consumer_job="evaluate"
    ).first()
    return cursor is not None and cursor.position > block


@pytest.mark.parametrize("kind", ["condition", "handler"])
def test_a_matching_transaction_is_told_once_and_a_non_matching_one_never(
    services, org, chain, hot_engine, httpserver: HTTPServer, kind
):
    with RpcPool("accounts", [chain.url]) as rpc:
        sender, receiver, other = [a.lower() for a in rpc.call("eth_accounts")[:3]]
    channel = Channel.objects.create(
        org=org, name="hook", kind="webhook", target=httpserver.url_for("/hook"), secret="s3cret"
    )
    fields = {"org": org, "name": "big", "chain_id": CHAIN, "severity": "high"}
    if kind == "condition":
        fields["condition"] = {
            "match": "transaction",
            "from": [sender],
            "where": f"value > {ONE_ETH}",
        }
    else:
        uploaded = bundle_upload(
            org=org, data=bundle({"main.py": HANDLER.encode()}, name="big", version="1.0.0")
        )
        fields.update(bundle=uploaded.bundle, params={"sender": sender, "min_wei": ONE_ETH})
    definition = AlertDefinition.objects.create(**fields)
    definition.channels.set([channel])
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")

    dag_sync(org=org, yaml_text=DAGS, activate=True)
    services.worker("w1", concurrency=2)  # platform, udf and delivery queues
    services.stream_worker()
    services.dispatcher()
    services.beat()
    wait_for(lambda: evaluated_past(org, 0), timeout=90, what="the alert job evaluating blocks")

    small = send(chain.url, sender, receiver, ONE_ETH // 2)  # under the threshold
    stranger = send(chain.url, other, receiver, 3 * ONE_ETH)  # not from the watched address
    big = send(chain.url, sender, receiver, 2 * ONE_ETH)
    last = max(mined_block(chain.url, tx) for tx in (small, stranger, big))
    wait_for(lambda: httpserver.log, timeout=60, what="the webhook")
    wait_for(lambda: evaluated_past(org, last + 3), timeout=60, what="blocks after the match")
    wait_for(
        lambda: not Delivery.objects.exclude(status="delivered").exists(),
        timeout=30,
        what="every delivery done",
    )

    (event,) = AlertEvent.objects.filter(definition=definition)
    assert event.tx_hash == big and event.block_number == mined_block(chain.url, big)
    (delivery,) = Delivery.objects.all()
    assert delivery.status == "delivered" and delivery.attempt == 1
    assert len(httpserver.log) == 1  # once: no retry, no second wake-up sent it again
    request, _ = httpserver.log[0]
    body = request.get_data()
    assert json.loads(body)["event"]["tx_hash"] == big
    timestamp = request.headers["X-Trace-Timestamp"]
    expected = hmac.new(b"s3cret", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert request.headers["X-Trace-Signature"] == f"sha256={expected}"
    assert request.headers["Idempotency-Key"] == str(delivery.pk)

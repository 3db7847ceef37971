"""`match: trace` on a real anvil with internal calls (trace_chain.devchain_calls: a contract
calling another, a factory create, a create two frames deep, a reverting inner call): the
condition's query over the follower's hot traces finds exactly the frames the node's
trace_block reports, and through alert_evaluate and the sink two matching frames of one
transaction are two events, each keyed by its trace address."""

from __future__ import annotations

import pytest

from tests.alerts.test_pipeline import ALERTS, FOLLOW, run_and_sink
from tests.chain.test_block_follower import Recorder, catch_up, make_follower
from trace_chain import devchain
from trace_chain.devchain_calls import generate_call_traffic
from trace_chain.rpc import RpcPool
from trace_web.alerts.conditions import condition_matches, condition_parse, condition_sql
from trace_web.alerts.conditions.matches import trace_key
from trace_web.alerts.models import AlertDefinition, AlertEvent
from trace_web.orchestration.services.dags import dag_sync
from trace_web.orchestration.services.sources import job_run_manual
from trace_web.orchestration.services.tasks import TaskScope
from trace_web.query.services import org_query_rows

CHAIN = devchain.ANVIL_CHAIN_ID


@pytest.fixture(autouse=True)
def _no_broker(settings, monkeypatch):
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    monkeypatch.setattr("trace_tasks.publisher.send_wake", lambda **kwargs: None)


@pytest.fixture
def calls(transactional_db, org, fresh_anvil, hot_engine):
    traffic = generate_call_traffic(fresh_anvil.url, blocks=2)
    follower = make_follower(fresh_anvil.url, hot_engine, Recorder(), org_id=org.pk, traces=True)
    catch_up(follower)
    dag_sync(org=org, yaml_text=FOLLOW, activate=True)
    dag_sync(org=org, yaml_text=ALERTS, activate=True)
    return {"url": fresh_anvil.url, "traffic": traffic, "end": follower.tip + 1, "org": org}


def node_frames(url: str, end: int) -> list[dict]:
    """Every frame trace_block reports for [0, end): block, tx, trace address and action."""
    frames = []
    with RpcPool("node", [url]) as rpc:
        for number in range(end):
            for t in rpc.call("trace_block", [hex(number)]):
                if t.get("transactionHash") is None:
                    continue  # a block reward
                frames.append(
                    {
                        "block_number": number,
                        "tx_hash": t["transactionHash"].lower(),
                        "trace_address": "_".join(map(str, t["traceAddress"])),
                        "type": t["type"],
                        "from": t["action"].get("from", "").lower(),
                        "to": (t["action"].get("to") or "").lower() or None,
                        "error": t.get("error"),
                    }
                )
    return frames


def found(calls, condition: dict) -> set[tuple[str, str]]:
    cond = condition_parse(condition)
    sql = condition_sql(cond, chain_id=CHAIN, range_start=0, range_end=calls["end"])
    answer = org_query_rows(org=calls["org"], sql=sql)
    return {
        (m["tx_hash"], m["payload"]["trace_address"])
        for m in condition_matches(cond, answer["columns"], answer["rows"])
    }


def test_trace_conditions_find_exactly_the_nodes_frames(calls):
    frames = node_frames(calls["url"], calls["end"])
    caller = calls["traffic"].caller
    creates = {
        (f["tx_hash"], f["trace_address"])
        for f in frames
        if f["type"] == "create" and f["from"] == caller
    }
    assert len(creates) == 4  # spawn's and nest's (two frames deep), in each of two blocks
    assert any(address == "0_0" for _, address in creates)
    got = found(calls, {"match": "trace", "from": [caller], "where": "trace_type == 'create'"})
    assert got == creates
    failed = {(f["tx_hash"], f["trace_address"]) for f in frames if f["error"]}
    assert failed and all(address for _, address in failed)  # inner calls only
    assert found(calls, {"match": "trace", "where": "error != None"}) == failed


def test_two_matching_frames_of_one_transaction_are_two_events(calls, org):
    traffic = calls["traffic"]
    # Every call into the caller: each transaction's top-level call ('') and, in `nest`, the
    # caller calling its own `spawn` (trace '0').
    condition = condition_parse({"match": "trace", "to": [traffic.caller]})
    definition = AlertDefinition.objects.create(
        org=org, name="into-caller", chain_id=CHAIN, condition=condition.to_json()
    )
    task = job_run_manual(
        org=org,
        dag_name="alerts",
        job_name="evaluate",
        scope=TaskScope(range_start=0, range_end=calls["end"]),
        payload={"backtest": True, "deliver": False, "definitions": [definition.pk]},
    )
    run_and_sink(task)
    events = AlertEvent.objects.filter(definition=definition)
    per_tx: dict[str, set[str]] = {}
    for event in events:
        per_tx.setdefault(event.tx_hash, set()).add(event.payload["trace_address"])
    expected = {
        tx: ({"", "0"} if kind == "nest" else {""})
        for tx, kind in traffic.kinds.items()
        if kind != "transfer"  # to a dev account, not the caller
    }
    assert per_tx == expected
    assert len({e.match_key for e in events}) == events.count() == 2 * 5  # one key per frame


def test_a_long_trace_address_is_keyed_by_its_digest():
    short = trace_key("0_1")
    assert short == "trace:0_1"
    deep = trace_key("_".join(["1"] * 200))
    assert deep.startswith("trace#") and len(deep) == len("trace#") + 64
    assert trace_key("_".join(["1"] * 200)) == deep != trace_key("_".join(["2"] * 200))

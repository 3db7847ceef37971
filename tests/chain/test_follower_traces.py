"""block_follower with `traces: true` against a real anvil: every internal call (a contract
calling another with value, a factory's create, a reverting inner call) is stored in
hot_traces exactly as the node's trace_block reports it, before and after a reorg; off by
default; a node without trace_block is refused at start, naming the method."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.chain.servers import RpcProxy
from tests.chain.test_block_follower import Recorder, catch_up, hot_rows, make_follower
from trace_chain import devchain
from trace_chain.devchain_calls import caller_calldata, generate_call_traffic
from trace_chain.hot_schema import hot_traces, hot_transactions
from trace_chain.rpc import RpcPool
from trace_operators.block_follower import config_parse
from trace_operators.context import ConfigError, PermanentError

ORDER = [hot_traces.c.block_number, hot_traces.c.transaction_index, hot_traces.c.trace_address]


def _int(value):
    return None if value is None else int(value, 16) if isinstance(value, str) else value


def node_traces(url: str, start: int, end: int) -> list[dict]:
    """The node's trace_block answers for [start, end), written out as hot_traces rows by
    the schema's documented mapping (docs/schema.md), independently of the adapter."""
    rows = []
    with RpcPool("check", [url], timeout=10.0) as pool:
        for number in range(start, end):
            for t in pool.call("trace_block", [hex(number)]):
                action, result, kind = t["action"], t.get("result") or {}, t["type"]
                create = kind == "create"
                rows.append(
                    {
                        "chain_id": devchain.ANVIL_CHAIN_ID,
                        "block_number": number,
                        "block_hash": t["blockHash"],
                        "transaction_index": t["transactionPosition"],
                        "transaction_hash": t["transactionHash"],
                        "trace_address": "_".join(map(str, t["traceAddress"])),
                        "trace_type": kind,
                        "call_type": action.get("callType"),
                        "from_address": action["from"],
                        "to_address": None if create else action["to"],
                        "value": _int(action["value"]),
                        "gas": _int(action["gas"]),
                        "gas_used": _int(result.get("gasUsed")),
                        "input": action["init"] if create else action["input"],
                        "output": result.get("code") if create else result.get("output"),
                        "error": t.get("error"),
                        "subtraces": t["subtraces"],
                        "created_address": result.get("address"),
                    }
                )
    return sorted(
        rows, key=lambda r: (r["block_number"], r["transaction_index"], r["trace_address"])
    )


def stored_traces(engine) -> list[dict]:
    return [{**row, "value": int(row["value"])} for row in hot_rows(engine, hot_traces, ORDER)]


def test_every_internal_call_is_stored_as_the_node_reports_it(fresh_anvil, hot_engine):
    url = fresh_anvil.url
    calls = generate_call_traffic(url, blocks=3)
    devchain.generate_traffic(url, blocks=2, txs_per_block=4)  # transfers, logs, a revert
    follower = make_follower(url, hot_engine, Recorder(), traces=True, batch_size=3)
    catch_up(follower)

    stored = stored_traces(hot_engine)
    assert stored == node_traces(url, 0, follower.tip + 1)
    # What an analyst looks for is there, in the schema's words.
    kinds = {h: k for h, k in calls.kinds.items()}
    by_kind = {
        k: [r for r in stored if kinds.get(r["transaction_hash"]) == k] for k in kinds.values()
    }
    relay = [r for r in by_kind["relay"] if r["trace_address"] == "0"]
    assert len(relay) == 3 and all(
        (r["from_address"], r["to_address"], r["call_type"])
        == (calls.caller, calls.emitter, "call")
        and r["value"] > 0
        for r in relay
    )
    creates = [r for r in by_kind["spawn"] if r["trace_type"] == "create"]
    assert len(creates) == 3 and all(
        r["from_address"] == calls.caller and r["created_address"] and r["to_address"] is None
        for r in creates
    )
    failed = [r for r in by_kind["try_fail"] if r["error"] is not None]
    assert [r["trace_address"] for r in failed] == ["0", "0", "0"]
    nested = [(r["trace_address"], r["trace_type"]) for r in by_kind["nest"]]
    assert nested == [("", "call"), ("0", "call"), ("0_0", "create")] * 3
    with hot_engine.connect() as conn:
        succeeded = (
            conn.execute(
                sa.select(hot_transactions.c.success).where(
                    hot_transactions.c.transaction_hash.in_([r["transaction_hash"] for r in failed])
                )
            )
            .scalars()
            .all()
        )
    assert succeeded == [True, True, True]  # the inner call reverted, the transaction did not
    # One top-level frame per transaction, none for blocks without transactions.
    with hot_engine.connect() as conn:
        transactions = conn.execute(sa.select(sa.func.count()).select_from(hot_transactions))
        assert sum(r["trace_address"] == "" for r in stored) == transactions.scalar_one()


def test_a_reorg_replaces_the_orphaned_traces_with_the_new_blocks_ones(fresh_anvil, hot_engine):
    url = fresh_anvil.url
    calls = generate_call_traffic(url, blocks=4)
    recorder = Recorder()
    follower = make_follower(url, hot_engine, recorder, traces=True, window_blocks=2)
    catch_up(follower)
    before = stored_traces(hot_engine)
    assert before == node_traces(url, 0, follower.tip + 1)
    old_tip = follower.tip

    sender = devchain.dev_accounts(url)[7]
    spawn = {
        "from": sender,
        "to": calls.caller,
        "data": caller_calldata("spawn"),
        "value": hex(7),
        "gas": hex(devchain.CALL_GAS),
    }
    devchain.reorg(url, 3, [(spawn, 1)])  # 3 blocks of calls replaced by one spawn
    catch_up(follower)
    follower.step()  # the tip check runs when there is nothing new to fetch
    catch_up(follower)

    after = stored_traces(hot_engine)
    assert after == node_traces(url, 0, follower.tip + 1)
    orphaned = {r["block_hash"] for r in before if r["block_number"] > old_tip - 3}
    assert orphaned and not orphaned & {r["block_hash"] for r in after}
    replaced = [r for r in after if r["block_number"] > old_tip - 3]
    assert [r["trace_type"] for r in replaced] == ["call", "create"]
    assert [(i["range_start"], i["range_end"]) for i in recorder.of_type("invalidation")] == [
        (old_tip - 2, old_tip + 1)
    ]


def test_traces_are_off_by_default(fresh_anvil, hot_engine):
    generate_call_traffic(fresh_anvil.url, blocks=1)
    proxy_methods = []
    with RpcProxy(fresh_anvil.url) as proxy:
        follower = make_follower(proxy.url, hot_engine, Recorder())
        catch_up(follower)
        proxy_methods = proxy.methods()
    assert follower.tip is not None and stored_traces(hot_engine) == []
    assert "trace_block" not in proxy_methods


def test_a_node_without_trace_block_is_refused_at_start_naming_the_method(fresh_anvil, hot_engine):
    def no_traces(body):
        if isinstance(body, dict) and body.get("method") == "trace_block":
            error = {"code": -32601, "message": "Method not found"}
            return 200, {"jsonrpc": "2.0", "id": body["id"], "error": error}
        return None

    with RpcProxy(fresh_anvil.url, hook=no_traces) as proxy:
        with pytest.raises(PermanentError, match=r"config\.traces: .*does not support trace_block"):
            make_follower(proxy.url, hot_engine, Recorder(), traces=True)
        # The same node is fine for a follower that does not ask for traces.
        catch_up(make_follower(proxy.url, hot_engine, Recorder()))


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_traces_must_be_a_boolean_and_the_error_names_the_field(value):
    with pytest.raises(ConfigError, match=r"config\.traces: must be a boolean"):
        config_parse({"chain_id": 31337, "rpc_pool": "devchain", "traces": value})


def test_a_dag_with_a_bad_traces_value_is_refused_naming_its_path():
    from trace_web.orchestration.dag_spec import DagSpecError, parse_dag_yaml

    text = """
name: follow
jobs:
  - name: follow
    activation: source
    source: {kind: always_on}
    operator: block_follower
    config: {chain_id: 31337, rpc_pool: devchain, traces: "on"}
"""
    with pytest.raises(DagSpecError, match=r"jobs\[0\]\.config\.traces: must be a boolean"):
        parse_dag_yaml(text)
    assert parse_dag_yaml(text.replace('"on"', "true"))


def test_traces_of_another_block_are_refused_and_nothing_is_written(fresh_anvil, hot_engine):
    """A node answering trace_block from another fork than the block (a reorg between the two
    requests) must not get its traces stored beside the block: the range is fetched again."""
    generate_call_traffic(fresh_anvil.url, blocks=2)
    stale = {"on": True}

    def other_fork(body, answer):
        items = body if isinstance(body, list) else [body]
        answers = answer if isinstance(answer, list) else [answer]
        for item, reply in zip(items, answers, strict=True):
            if stale["on"] and item.get("method") == "trace_block" and reply.get("result"):
                for trace in reply["result"]:
                    trace["blockHash"] = "0x" + "ab" * 32
        return answer

    with RpcProxy(fresh_anvil.url, transform=other_fork) as proxy:
        follower = make_follower(proxy.url, hot_engine, Recorder(), traces=True)
        assert follower.step() == 0 and follower.tip is None
        assert stored_traces(hot_engine) == [] and hot_rows(hot_engine, hot_transactions, []) == []
        stale["on"] = False  # the node agrees with itself again
        catch_up(follower)
    assert stored_traces(hot_engine) == node_traces(fresh_anvil.url, 0, follower.tip + 1)


# Shapes anvil does not produce here, as parity-style nodes answer them (recorded form).
SUICIDE = {
    "action": {
        "address": "0xA6C3B7F6520A0EF594FC666D3874EC78C561CDBB",
        "balance": "0x2386f26fc100000",
        "refundAddress": "0x245133ea0fb1b77fab5886d7ffb8046dfeff3858",
    },
    "blockHash": "0x" + "11" * 32,
    "blockNumber": 711983,
    "result": None,
    "subtraces": 0,
    "traceAddress": [1, 0],
    "transactionHash": "0x" + "22" * 32,
    "transactionPosition": 4,
    "type": "suicide",
}
REWARD = {
    "action": {"author": "0x" + "33" * 20, "rewardType": "block", "value": "0x1bc16d674ec80000"},
    "blockHash": "0x" + "11" * 32,
    "blockNumber": 711983,
    "result": None,
    "subtraces": 0,
    "traceAddress": [],
    "transactionHash": None,
    "transactionPosition": None,
    "type": "reward",
}


def test_a_selfdestruct_maps_to_its_refund_and_a_block_reward_is_left_out():
    from trace_chain.adapter import ChainDataError, trace_row

    row = trace_row(SUICIDE)
    assert row is not None
    assert (row["trace_type"], row["trace_address"], row["transaction_index"]) == (
        "suicide",
        "1_0",
        4,
    )
    assert (row["from_address"], row["to_address"], row["value"]) == (
        "0xa6c3b7f6520a0ef594fc666d3874ec78c561cdbb",
        "0x245133ea0fb1b77fab5886d7ffb8046dfeff3858",
        0x2386F26FC100000,
    )
    assert row["gas_used"] is None and row["call_type"] is None and row["input"] is None
    assert trace_row(REWARD) is None
    with pytest.raises(ChainDataError, match="unknown type 'vote'"):
        trace_row({**SUICIDE, "type": "vote"})

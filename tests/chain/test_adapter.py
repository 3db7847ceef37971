"""ChainAdapter against a real anvil range with transfers and emitter logs: what it returns must
be what the node answers to single, unbatched requests."""

from __future__ import annotations

import collections
import itertools
import time

import pytest
import requests

from tests.chain.servers import RpcProxy
from trace_chain.adapter import (
    AdaptiveBatchSize,
    BlockNotFound,
    ChainAdapter,
    RangeChanged,
    decode_block,
    decode_log,
    log_row,
)
from trace_chain.devchain import emitter_artifact, free_port
from trace_chain.rpc import RpcPool, RpcUnavailable


def single(url, method, *params):
    """One plain JSON-RPC request, no pool and no batching: the node's own answer."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    answer = requests.post(url, json=body, timeout=10).json()
    assert "error" not in answer, answer
    return answer["result"]


@pytest.fixture(scope="module")
def reference_rows(chain_with_traffic):
    with RpcPool("ref", [chain_with_traffic.url], timeout=10, max_retries=0) as pool:
        return ChainAdapter(pool).block_range_with_receipts(
            chain_with_traffic.start, chain_with_traffic.end_exclusive
        )


def adapter_for(url, **kwargs):
    return ChainAdapter(RpcPool("t", [url], timeout=10, max_retries=0), **kwargs)


def test_head_and_chain_id(anvil):
    adapter = adapter_for(anvil.url)
    assert adapter.chain_id() == 31337
    assert adapter.head_number() == int(single(anvil.url, "eth_blockNumber"), 16)


def test_blocks_equal_single_get_block_by_number_answers(chain_with_traffic):
    c = chain_with_traffic
    adapter = adapter_for(c.url, batch_size=4)  # several batches for 20 blocks
    blocks = adapter.blocks(c.start, c.end_exclusive)
    assert [b["number"] for b in blocks] == list(range(c.start, c.end_exclusive))
    big_values = 0
    for block in blocks:
        raw = single(c.url, "eth_getBlockByNumber", hex(block["number"]), True)
        assert block == decode_block(raw)
        assert block["hash"] == raw["hash"].lower()
        assert block["timestamp"] == int(raw["timestamp"], 16)
        assert [t["hash"] for t in block["transactions"]] == [
            t["hash"] for t in raw["transactions"]
        ]
        for tx, raw_tx in zip(block["transactions"], raw["transactions"], strict=True):
            assert tx["value"] == int(raw_tx["value"], 16)
            assert tx["from"] == raw_tx["from"].lower()
            big_values += tx["value"] > 2**63
    assert big_values > 0  # values above int64 survive as Python ints
    hashes_only = adapter.blocks(c.start, c.start + 2, full_transactions=False)
    assert hashes_only[0]["transactions"] == [t["hash"] for t in blocks[0]["transactions"]]


def test_range_rows_match_the_nodes_receipts_and_logs(chain_with_traffic, reference_rows):
    c, rows = chain_with_traffic, reference_rows
    assert [b["number"] for b in rows.blocks] == list(range(c.start, c.end_exclusive))
    for previous, block in itertools.pairwise(rows.blocks):
        assert block["parent_hash"] == previous["hash"]
    per_block = collections.Counter(t["block_number"] for t in rows.transactions)
    for block in rows.blocks:
        count = single(c.url, "eth_getBlockTransactionCountByNumber", hex(block["number"]))
        assert per_block[block["number"]] == int(count, 16) > 0

    assert {t["hash"] for t in rows.transactions} == set(c.traffic.tx_hashes)
    for tx in rows.transactions:
        receipt = single(c.url, "eth_getTransactionReceipt", tx["hash"])
        raw_tx = single(c.url, "eth_getTransactionByHash", tx["hash"])
        assert tx["success"] is (int(receipt["status"], 16) == 1)
        assert tx["gas_used"] == int(receipt["gasUsed"], 16)
        # The one schema's gas_price is the price paid: the node reports the effective price.
        assert tx["gas_price"] == int(receipt["effectiveGasPrice"], 16)
        assert tx["to"] == raw_tx["to"].lower()
        assert tx["input"] == raw_tx["input"]
        assert tx["nonce"] == int(raw_tx["nonce"], 16)
        assert tx["type"] == int(raw_tx["type"], 16)
        kind = c.traffic.kinds[tx["hash"]]
        assert tx["success"] is (kind != "fail")
        if kind == "transfer_1559":
            assert isinstance(tx["value"], int) and tx["value"] > 2**63
            assert tx["max_fee_per_gas"] is not None
        if kind == "transfer_legacy":
            assert tx["type"] == 0 and tx["max_fee_per_gas"] is None

    # Logs through a different RPC path (eth_getLogs) must be the same rows.
    raw_logs = single(
        c.url,
        "eth_getLogs",
        {"fromBlock": hex(c.start), "toBlock": hex(c.end_exclusive - 1)},
    )
    assert rows.logs == [log_row(decode_log(entry)) for entry in raw_logs]
    events = emitter_artifact()["events"]
    topic0s = {entry["topic0"] for entry in rows.logs}
    assert {events[name]["topic0"] for name in ("Ping", "Triple", "Note")} <= topic0s
    assert None in topic0s  # the anonymous Raw event has no topic0
    assert any(entry["topic3"] is not None for entry in rows.logs)  # Triple fills all four
    assert {entry["address"] for entry in rows.logs} == {c.emitter}
    for entry in rows.logs:
        for key in ("block_hash", "transaction_hash", "address", "topic0", "topic1"):
            value = entry[key]
            assert value is None or value == value.lower()


def test_receipts_fallback_when_forced_gives_the_same_rows(chain_with_traffic, reference_rows):
    c = chain_with_traffic
    with RpcProxy(c.url) as proxy:
        adapter = adapter_for(proxy.url, receipts_mode="transaction")
        rows = adapter.block_range_with_receipts(c.start, c.end_exclusive)
        assert "eth_getBlockReceipts" not in proxy.methods()
        assert "eth_getTransactionReceipt" in proxy.methods()
    assert rows == reference_rows


def test_receipts_fall_back_when_the_node_lacks_get_block_receipts(
    chain_with_traffic, reference_rows
):
    def no_block_receipts(body):
        items = body if isinstance(body, list) else [body]
        if not any(item["method"] == "eth_getBlockReceipts" for item in items):
            return None
        errors = [
            {
                "jsonrpc": "2.0",
                "id": i["id"],
                "error": {
                    "code": -32601,
                    "message": "the method eth_getBlockReceipts does not exist/is not available",
                },
            }
            for i in items
        ]
        return 200, errors if isinstance(body, list) else errors[0]

    c = chain_with_traffic
    with RpcProxy(c.url, hook=no_block_receipts) as proxy:
        adapter = adapter_for(proxy.url)
        assert adapter.uses_block_receipts is None
        rows = adapter.block_range_with_receipts(c.start, c.end_exclusive)
        assert adapter.uses_block_receipts is False
        assert rows == reference_rows
        # Later ranges go straight to the fallback.
        tried = proxy.methods().count("eth_getBlockReceipts")
        adapter.receipts([c.start, c.start + 1])
        assert proxy.methods().count("eth_getBlockReceipts") == tried
    # Without a block list, the fallback fetches the blocks itself.
    by_block = adapter_for(c.url, receipts_mode="transaction").receipts([c.start])
    assert [r["transactionHash"] for r in by_block[c.start]] == [
        t["hash"] for t in reference_rows.transactions if t["block_number"] == c.start
    ]


def _refuse_large_batches(limit, answer):
    def hook(body):
        if isinstance(body, list) and len(body) > limit:
            return answer
        return None

    return hook


@pytest.mark.parametrize(
    "refusal",
    [
        (413, b"request entity too large"),
        (
            200,
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch too large"}},
        ),
    ],
    ids=["http-413", "json-rpc-error"],
)
def test_batches_halve_when_the_node_refuses_their_size(
    chain_with_traffic, reference_rows, refusal
):
    c = chain_with_traffic
    with RpcProxy(c.url, hook=_refuse_large_batches(4, refusal)) as proxy:
        adapter = adapter_for(proxy.url, batch_size=16, max_batch_size=64)
        rows = adapter.block_range_with_receipts(c.start, c.end_exclusive)
        refused = [b for b in proxy.requests if isinstance(b, list) and len(b) > 4]
        assert refused  # it did try big batches first
        assert all(len(b) <= 4 for b in proxy.forwarded if isinstance(b, list))
        assert adapter.batch_sizes["eth_getBlockByNumber"].size <= 8
    assert rows == reference_rows


def test_batches_halve_when_big_batches_time_out(chain_with_traffic, reference_rows):
    c = chain_with_traffic

    def stall_big(body):
        if isinstance(body, list) and len(body) > 8:
            time.sleep(1.0)  # beyond the pool timeout below
        return None

    with RpcProxy(c.url, hook=stall_big) as proxy:
        pool = RpcPool("t", [proxy.url], timeout=0.3, max_retries=0)
        adapter = ChainAdapter(pool, batch_size=32, max_batch_size=32)
        blocks = adapter.blocks(c.start, c.end_exclusive)
        assert adapter.batch_sizes["eth_getBlockByNumber"].size <= 16
    assert [b["hash"] for b in blocks] == [b["hash"] for b in reference_rows.blocks]


def test_refused_connections_do_not_shrink_batches():
    adapter = adapter_for(f"http://127.0.0.1:{free_port()}", batch_size=16)
    with pytest.raises(RpcUnavailable):
        adapter.blocks(0, 10)
    assert adapter.batch_sizes["eth_getBlockByNumber"].size == 16


def test_adaptive_batch_size_halves_and_grows_back():
    size = AdaptiveBatchSize(16, minimum=1, maximum=32, grow_after=2)
    assert size.shrink() and size.size == 8
    assert size.shrink(failed=3) and size.size == 1  # halves below the batch that failed
    assert not size.shrink()
    for _ in range(4):
        size.succeeded()
    assert size.size == 4
    for _ in range(20):
        size.succeeded()
    assert size.size == 32


def test_receipts_of_another_block_mean_the_range_changed(chain_with_traffic):
    def swap_block_hash(request, answer):
        items = request if isinstance(request, list) else [request]
        if any(item["method"] == "eth_getBlockReceipts" for item in items):
            for item in answer if isinstance(answer, list) else [answer]:
                for receipt in item["result"] or []:
                    receipt["blockHash"] = "0x" + "ab" * 32
        return answer

    c = chain_with_traffic
    with RpcProxy(c.url, transform=swap_block_hash) as proxy, pytest.raises(RangeChanged):
        adapter_for(proxy.url).block_range_with_receipts(c.start, c.start + 2)


def test_blocks_past_the_head_are_not_found(anvil):
    adapter = adapter_for(anvil.url)
    head = adapter.head_number()
    with pytest.raises(BlockNotFound) as caught:
        adapter.blocks(head, head + 3)
    assert caught.value.number == head + 1
    assert adapter.block_range_with_receipts(5, 5).blocks == []


def test_concurrent_batches_answered_out_of_order_give_the_rows_in_order(
    chain_with_traffic, reference_rows
):
    """The first batch of blocks is answered last (held until every other batch was
    answered): the rows still come back whole and in chain order."""
    import threading

    c = chain_with_traffic
    others_answered = threading.Event()
    answered: list[int] = []

    def first(body):
        return isinstance(body, list) and body[0]["params"][0] == hex(c.start)

    def hold_the_first(body):
        if first(body) and body[0]["method"] == "eth_getBlockByNumber":
            assert others_answered.wait(10)
        return None

    def note(body, answer):
        answered.append(int(body[0]["params"][0], 16) if isinstance(body, list) else -1)
        if len(answered) >= 7:  # the other 3 block batches and 4 receipt batches
            others_answered.set()
        return answer

    with RpcProxy(c.url, hook=hold_the_first, transform=note) as proxy:
        adapter = adapter_for(proxy.url, concurrency=4)
        rows = adapter.block_range_with_receipts(c.start, c.end_exclusive)
        adapter.close()
        batches = [b for b in proxy.forwarded if isinstance(b, list)]
    assert len(batches) == 8  # 4 of blocks, 4 of receipts, all in flight together
    assert answered[-1] == c.start  # the first range's blocks came back last
    assert rows == reference_rows


def test_a_failed_batch_among_concurrent_ones_fails_the_read(chain_with_traffic):
    c = chain_with_traffic

    def refuse_the_last(body):
        if isinstance(body, list) and any(i["params"][0] == hex(c.end_exclusive - 1) for i in body):
            return 500, b"upstream exploded"
        return None

    with RpcProxy(c.url, hook=refuse_the_last) as proxy:
        adapter = adapter_for(proxy.url, concurrency=4)
        with pytest.raises(RpcUnavailable):
            adapter.block_range_with_receipts(c.start, c.end_exclusive)
        adapter.close()
